//! TURN over TCP for webrtc-rs, which relays only over UDP (docs/decisions/
//! 0008-real-networks.md): a loopback UDP socket that webrtc-rs is told is a
//! `turn:…?transport=udp` server, bridged to the real server over TCP. Each local source
//! (webrtc-rs's socket) gets its own TCP connection, so coturn sees one client per
//! allocation. TURN over TCP carries the same messages as over UDP, back to back (RFC 8656
//! §12): STUN messages are self-delimiting, ChannelData messages are padded to a multiple
//! of four bytes on a stream. Users behind firewalls that drop UDP can call this way.
//! `turns:` servers are bridged the same way over TLS (rustls with the system's
//! certificates), for networks that let only TLS out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use chingu_proto::IceServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::PeerTasks;
use super::ice::lock;

/// The most bytes one message may take (a STUN or ChannelData header's 16-bit length).
const MAX_MESSAGE: usize = 4 + 65_535 + 3;
/// Datagrams queued for one TCP connection; beyond this they are dropped (like UDP).
const QUEUE: usize = 256;
/// How long connecting to the TURN server may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where one message ends in `buf`, if it is all there: `(message length, bytes to
/// consume)`, the difference being a ChannelData message's padding on a stream.
/// `Err` for bytes that are neither STUN nor ChannelData.
pub(crate) fn frame(buf: &[u8]) -> Result<Option<(usize, usize)>, &'static str> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let (message, consumed) = match buf[0] {
        // STUN: the two top bits are zero; 20-byte header, length a multiple of four.
        0x00..=0x3f => (20 + length, 20 + length),
        // ChannelData: channel numbers 0x4000-0x7fff.
        0x40..=0x7f => (4 + length, (4 + length + 3) & !3),
        _ => return Err("neither STUN nor ChannelData"),
    };
    Ok((buf.len() >= consumed).then_some((message, consumed)))
}

/// Where a bridge connects: the server's address, and for TLS the name its certificate
/// must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) address: SocketAddr,
    pub(crate) tls_name: Option<String>,
}

/// `turn:HOST[:PORT]?transport=tcp` (port 3478) or `turns:HOST[:PORT][?transport=tcp]`
/// (port 5349) → where to connect (resolved), for bridging; anything else → `None`.
pub(crate) async fn server_of(url: &str) -> Option<Target> {
    let (tls, rest) = match (url.strip_prefix("turns:"), url.strip_prefix("turn:")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return None,
    };
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    let tcp = query
        .split('&')
        .any(|p| p.eq_ignore_ascii_case("transport=tcp"));
    // TCP, or TLS (which runs over TCP, said or not).
    if !(tcp || tls && query.is_empty()) {
        return None;
    }
    let default_port = if tls { 5349 } else { 3478 };
    // HOST, HOST:PORT, [IPv6] or [IPv6]:PORT.
    let (host, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (host, rest) = v6.split_once(']')?;
            match rest.strip_prefix(':') {
                Some(port) => (host, port.parse().ok()?),
                None if rest.is_empty() => (host, default_port),
                None => return None,
            }
        }
        None => match hostport.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (hostport, default_port),
        },
    };
    // A name that does not resolve quickly must not hold up the call: the bridge is a
    // fallback for networks that block UDP.
    let address = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::net::lookup_host((host, port)),
    )
    .await
    .ok()?
    .ok()?
    .next()?;
    Some(Target {
        address,
        tls_name: tls.then(|| host.to_owned()),
    })
}

/// The TLS client configuration: the system's certificate store (and `SSL_CERT_FILE`);
/// `None` if rustls cannot be set up (then TLS bridges say so and do not connect).
fn tls_config() -> Option<Arc<rustls::ClientConfig>> {
    static CONFIG: std::sync::OnceLock<Option<Arc<rustls::ClientConfig>>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::debug!("a system certificate could not be read: {error}");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "TLS roots for TURN over TLS");
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| tracing::warn!("TURN over TLS unavailable: {e}"))
            .ok()
        })
        .clone()
}

/// The ICE servers as webrtc-rs will use them: each `turn:…?transport=tcp` (which it would
/// skip) also becomes a loopback `turn:` over UDP bridged to the server over TCP
/// (this module), with the same credentials. The bridges run in `tasks`.
/// Bridges already running are reused (`bridges`: server URL → loopback address), so
/// fresh credentials reach the same bridge.
pub(crate) async fn bridged(
    servers: &[IceServer],
    tasks: &PeerTasks,
    bridges: &std::sync::Mutex<Vec<(String, SocketAddr)>>,
) -> Vec<IceServer> {
    let mut out = servers.to_vec();
    for server in servers {
        for url in &server.urls {
            let known = lock(bridges)
                .iter()
                .find(|(u, _)| u == url)
                .map(|(_, a)| *a);
            let local = match known {
                Some(local) => local,
                None => {
                    let Some(target) = server_of(url).await else {
                        continue;
                    };
                    match TcpTurnBridge::start(target, |f| tasks.spawn(f)).await {
                        Ok(bridge) => {
                            lock(bridges).push((url.clone(), bridge.local));
                            bridge.local
                        }
                        Err(e) => {
                            tracing::info!(url, "no TURN/TCP bridge: {e}");
                            continue;
                        }
                    }
                }
            };
            out.push(IceServer {
                urls: vec![format!("turn:{local}?transport=udp")],
                username: server.username.clone(),
                credential: server.credential.clone(),
            });
        }
    }
    out
}

/// A running bridge; its address goes into a `turn:` URL for webrtc-rs.
#[derive(Debug)]
pub(crate) struct TcpTurnBridge {
    pub(crate) local: SocketAddr,
}

impl TcpTurnBridge {
    /// Binds the loopback socket; `spawn` runs the bridge (the peer's task set, so it ends
    /// with the call).
    pub(crate) async fn start(
        server: Target,
        spawn: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
    ) -> std::io::Result<Self> {
        let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let local = udp.local_addr()?;
        spawn(Box::pin(run(udp, server)));
        Ok(Self { local })
    }
}

async fn run(udp: Arc<UdpSocket>, server: Target) {
    let mut connections: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match udp.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!("TURN/TCP bridge: {e}");
                continue;
            }
        };
        if connections.get(&from).is_none_or(|tx| tx.is_closed()) {
            let (tx, rx) = mpsc::channel(QUEUE);
            connections.insert(from, tx);
            tasks.spawn(connection(Arc::clone(&udp), from, server.clone(), rx));
        }
        if let Some(tx) = connections.get(&from)
            && tx.try_send(buf[..n].to_vec()).is_err()
        {
            tracing::debug!("TURN/TCP bridge: queue full or connection gone; datagram dropped");
        }
    }
}

/// One local source's TCP (or TLS) connection to the TURN server, both ways, until
/// either ends.
async fn connection(
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    server: Target,
    datagrams: mpsc::Receiver<Vec<u8>>,
) {
    let address = server.address;
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            tracing::info!(%address, "TURN over TCP: cannot connect: {e}");
            return;
        }
        Err(_) => {
            tracing::info!(%address, "TURN over TCP: connecting timed out");
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let Some(name) = server.tls_name else {
        let (reader, writer) = tcp.into_split();
        return pump(udp, local, address, datagrams, reader, writer).await;
    };
    let Some(config) = tls_config() else { return };
    let Ok(name) = rustls::pki_types::ServerName::try_from(name.clone()) else {
        tracing::info!(name, "TURN over TLS: not a server name");
        return;
    };
    let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    let tls = match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%address, "TURN over TLS: handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::info!(%address, "TURN over TLS: handshake timed out");
            return;
        }
    };
    let (reader, writer) = tokio::io::split(tls);
    pump(udp, local, address, datagrams, reader, writer).await
}

/// Datagrams from webrtc-rs onto the stream, messages from the stream back as datagrams.
async fn pump(
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    server: SocketAddr,
    mut datagrams: mpsc::Receiver<Vec<u8>>,
    mut reader: impl tokio::io::AsyncRead + Unpin,
    mut writer: impl tokio::io::AsyncWrite + Unpin,
) {
    let upstream = async move {
        while let Some(mut message) = datagrams.recv().await {
            if let Some(0x40..=0x7f) = message.first() {
                // ChannelData on a stream is padded to a multiple of four bytes.
                message.resize(message.len().div_ceil(4) * 4, 0);
            }
            // One write and a flush per message: over TLS, one record each, sent at once.
            if writer.write_all(&message).await.is_err() || writer.flush().await.is_err() {
                return;
            }
        }
    };
    let downstream = async move {
        let mut buf: Vec<u8> = Vec::with_capacity(8192);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match frame(&buf) {
                Ok(Some((message, consumed))) => {
                    let _ = udp.send_to(&buf[..message], local).await;
                    buf.drain(..consumed);
                    continue;
                }
                Ok(None) if buf.len() < MAX_MESSAGE => {}
                Ok(None) | Err(_) => {
                    tracing::info!(%server, "TURN bridge: the server sent something unreadable");
                    return;
                }
            }
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_where_they_end_and_channel_data_padding_is_skipped() {
        // A STUN binding request: 20-byte header, 8 bytes of attributes.
        let mut stun = vec![0x00, 0x01, 0x00, 0x08];
        stun.extend_from_slice(&[0u8; 24]);
        assert_eq!(frame(&stun), Ok(Some((28, 28))));
        assert_eq!(frame(&stun[..27]), Ok(None), "not all there yet");
        // ChannelData with 5 bytes of data: 9 bytes, padded to 12 on a stream.
        let channel = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        assert_eq!(frame(&channel), Ok(Some((9, 12))));
        assert_eq!(
            frame(&channel[..10]),
            Ok(None),
            "the padding is awaited too"
        );
        assert_eq!(frame(&[0x40, 0x01]), Ok(None));
        assert!(
            frame(&[0x80, 0, 0, 0]).is_err(),
            "RTP-like bytes are not TURN"
        );
    }

    #[tokio::test]
    async fn only_turn_over_tcp_and_tls_urls_are_bridged() {
        let addr = |s: &str| {
            Some(Target {
                address: s.parse().unwrap(),
                tls_name: None,
            })
        };
        let tls = |s: &str, name: &str| {
            Some(Target {
                address: s.parse().unwrap(),
                tls_name: Some(name.into()),
            })
        };
        assert_eq!(
            server_of("turns:203.0.113.1?transport=tcp").await,
            tls("203.0.113.1:5349", "203.0.113.1")
        );
        assert_eq!(
            server_of("turns:127.0.0.1:443").await,
            tls("127.0.0.1:443", "127.0.0.1")
        );
        assert_eq!(
            server_of("turn:203.0.113.1:3478?transport=tcp").await,
            addr("203.0.113.1:3478")
        );
        assert_eq!(
            server_of("turn:203.0.113.1?transport=tcp").await,
            addr("203.0.113.1:3478")
        );
        assert_eq!(
            server_of("turn:[2001:db8::1]:5000?transport=tcp").await,
            addr("[2001:db8::1]:5000")
        );
        assert_eq!(
            server_of("turn:[2001:db8::1]?transport=tcp").await,
            addr("[2001:db8::1]:3478")
        );
        for other in [
            "turn:203.0.113.1:3478?transport=udp",
            "turn:203.0.113.1:3478",
            "turns:203.0.113.1:5349?transport=udp",
            "stun:203.0.113.1:3478",
            "turn:203.0.113.1:notaport?transport=tcp",
        ] {
            assert_eq!(server_of(other).await, None, "{other}");
        }
    }

    #[tokio::test]
    async fn datagrams_cross_to_a_stream_and_back_as_datagrams() {
        // A stand-in TURN server that echoes the stream it receives, in odd-sized pieces.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 7];
            while got.len() < 28 + 12 {
                let n = tcp.read(&mut chunk).await.unwrap();
                got.extend_from_slice(&chunk[..n]);
            }
            for piece in got.chunks(5) {
                tcp.write_all(piece).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        });
        let mut tasks = tokio::task::JoinSet::new();
        let target = Target {
            address: server,
            tls_name: None,
        };
        let bridge = TcpTurnBridge::start(target, |f| {
            tasks.spawn(f);
        })
        .await
        .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut stun = vec![0x00, 0x01, 0x00, 0x08];
        stun.extend_from_slice(&[7u8; 24]);
        let channel = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5];
        client.send_to(&stun, bridge.local).await.unwrap();
        client.send_to(&channel, bridge.local).await.unwrap();
        let mut buf = [0u8; 100];
        let wait = std::time::Duration::from_secs(5);
        let (n, _) = tokio::time::timeout(wait, client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], &stun[..]);
        let (n, _) = tokio::time::timeout(wait, client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], &channel[..], "the padding stays on the stream");
        tasks.abort_all();
    }
}
