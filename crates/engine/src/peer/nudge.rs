//! Waking webrtc-rs's driver while relayed writes would otherwise wait (see
//! [`nudge_driver`] and docs/decisions/0008-real-networks.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use webrtc::peer_connection::PeerConnection;

/// How often the driver is woken while its relayed writes would otherwise wait (see
/// [`nudge_driver`]).
const NUDGE_INTERVAL: Duration = Duration::from_millis(5);
/// After connecting, how long to keep nudging whatever the path (DTLS, SCTP and the data
/// channel's opening happen then).
const NUDGE_AFTER_CONNECT: Duration = Duration::from_secs(2);

/// What [`nudge_driver`] needs to know: set by the handler and by the stats.
#[derive(Debug, Default)]
pub(crate) struct NudgeState {
    connected_at: std::sync::Mutex<Option<Instant>>,
    /// The selected pair's local candidate is a relay: every write goes through TURN.
    pub(crate) local_relay: AtomicBool,
}

impl NudgeState {
    pub(crate) fn connected(&self) {
        let mut at = self
            .connected_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        at.get_or_insert_with(Instant::now);
    }

    /// An ICE restart is a new connection attempt: nudge as while connecting, until the
    /// next `Connected`.
    pub(crate) fn restarting(&self) {
        *self
            .connected_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn wanted(&self) -> bool {
        let at = *self
            .connected_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match at {
            None => true,
            Some(at) => {
                at.elapsed() < NUDGE_AFTER_CONNECT || self.local_relay.load(Ordering::Relaxed)
            }
        }
    }
}

/// Works around webrtc-rs 0.21.1's driver sending a TURN-relayed datagram only on its
/// *next* wake-up: its loop drains the TURN client's queue before the connection's own
/// writes, and a relayed write lands in that queue. Once ICE has connected the driver
/// sleeps until its next timer (a DTLS retransmission, ~400 ms), so each DTLS flight over
/// a relay waited that long: 1.3 s from matched to connected through TURN against 6–30 ms
/// directly (lab measurements, docs/benchmarks.md). Any call that reaches the driver wakes
/// it; re-applying the current configuration is one with no other effect (the driver
/// keeps it for the next gathering, where it is the same). Runs while connecting, for a
/// short while after, and for as long as our side of the path is a relay.
pub(crate) async fn nudge_driver(pc: Arc<dyn PeerConnection>, state: Arc<NudgeState>) {
    loop {
        if state.wanted() {
            tokio::time::sleep(NUDGE_INTERVAL).await;
            let configuration = pc.get_configuration().await;
            if pc.set_configuration(configuration).await.is_err() {
                return;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
