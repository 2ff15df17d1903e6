//! What ICE is given: the ICE servers in webrtc-rs's form, and the device's addresses
//! (watched during a call for network changes).

use chingu_proto::IceServer;
use webrtc::peer_connection::RTCIceServer;

/// The device's non-loopback IP addresses, sorted: when this changes during a call the
/// network changed (Wi-Fi to cellular, a new DHCP lease) and ICE must restart. Empty if
/// they cannot be listed.
pub fn local_addresses() -> Vec<std::net::IpAddr> {
    let mut addresses: Vec<std::net::IpAddr> = rtc::shared::ifaces::ifaces()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.addr.map(|a| a.ip()))
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(super) fn rtc_ice_servers(servers: &[IceServer]) -> Vec<RTCIceServer> {
    servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone().unwrap_or_default(),
            credential: s.credential.clone().unwrap_or_default(),
        })
        .collect()
}
