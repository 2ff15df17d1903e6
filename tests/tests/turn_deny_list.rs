//! deploy/turnserver.conf keeps the relay from becoming a door into the operator's
//! network: coturn started with exactly that file (addresses, secret and certificate
//! substituted) in the network lab refuses to relay to loopback, private, link-local
//! (cloud metadata) and IPv4-mapped addresses, and relays to a peer on the public side.
//! The TURN client is webrtc-rs's sans-IO one (rtc::turn), driven over a UDP socket
//! inside a lab namespace, with REST credentials made the way chingu-server makes them.
//!
//! Needs root (network namespaces), coturn and openssl; skips with a message otherwise.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chingu_testkit::coturn::{self, Coturn};
use chingu_testkit::netlab::{Access, Lab, in_namespace};
use rtc::sansio::Protocol;
use rtc::shared::{TransportContext, TransportMessage, TransportProtocol};
use rtc::turn::client::{Client, ClientConfig, Event};

const TURN_DOMAIN: &str = "turn.chingu.test";
/// How long the probe waits for any one answer from coturn.
const PATIENCE: Duration = Duration::from_secs(10);

/// deploy/turnserver.conf with the lab's values in place of its placeholders.
fn deploy_config(dir: &Path, secret: &str) -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/turnserver.conf");
    let text = std::fs::read_to_string(&path)?;
    for placeholder in ["PUBLIC_IP", "TURN_DOMAIN", "SECRET"] {
        anyhow::ensure!(
            text.contains(placeholder),
            "{placeholder} is not in {}",
            path.display()
        );
    }
    let (cert, key) = chingu_testkit::tls::certificate(dir, &format!("DNS:{TURN_DOMAIN}"))?;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with("cert=") {
                format!("cert={}", cert.display())
            } else if line.starts_with("pkey=") {
                format!("pkey={}", key.display())
            } else {
                line.replace("PUBLIC_IP", &Lab::SERVICES.to_string())
                    .replace("TURN_DOMAIN", TURN_DOMAIN)
                    .replace("SECRET", secret)
            }
        })
        .collect();
    Ok(lines.join("\n") + "\n")
}

/// What coturn said to each CreatePermission, and what came back through the relay.
#[derive(Debug, Default)]
struct Probe {
    relayed: Option<SocketAddr>,
    /// (peer, Ok(()) granted / Err(why) refused)
    permissions: Vec<(SocketAddr, Result<(), String>)>,
    echoed: Option<Vec<u8>>,
}

/// Allocates on coturn, asks permission for each of `peers` in turn, then sends a
/// datagram through the relay to `echo` (which must be among the granted) and waits
/// for it to come back.
fn probe(
    server: SocketAddr,
    username: String,
    password: String,
    peers: Vec<SocketAddr>,
    echo: SocketAddr,
) -> anyhow::Result<Probe> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect(server)?;
    let local = socket.local_addr()?;
    let provider =
        rtc::crypto::default_provider().map_err(|e| anyhow::anyhow!("crypto provider: {e}"))?;
    let mut client = Client::new(
        ClientConfig {
            turn_serv_addr: server.to_string(),
            local_addr: local,
            transport_protocol: TransportProtocol::UDP,
            username,
            password,
            realm: TURN_DOMAIN.into(),
            ..ClientConfig::default()
        },
        provider,
    )?;
    let mut result = Probe::default();
    let mut pending: Vec<SocketAddr> = peers.into_iter().rev().collect();
    let mut asking = None;
    let mut sent_echo = false;
    client.allocate(Instant::now())?;
    let deadline = Instant::now() + PATIENCE * 3;
    let mut buf = vec![0u8; 2048];
    loop {
        anyhow::ensure!(Instant::now() < deadline, "no progress: {result:?}");
        while let Some(out) = client.poll_write() {
            socket.send(&out.message)?;
        }
        while let Some(event) = client.poll_event() {
            match event {
                Event::AllocateResponse(_, relayed) => result.relayed = Some(relayed),
                Event::AllocateError(_, e) => anyhow::bail!("allocate refused: {e}"),
                Event::TransactionTimeout(_) => anyhow::bail!("coturn did not answer: {result:?}"),
                Event::CreatePermissionResponse(_, peer) => {
                    result.permissions.push((peer, Ok(())));
                    asking = None;
                }
                Event::CreatePermissionError(_, e) => {
                    let peer = asking.take().expect("an answer to a question asked");
                    result.permissions.push((peer, Err(e.to_string())));
                }
                Event::DataIndicationOrChannelData(_, from, data) if from == echo => {
                    result.echoed = Some(data.to_vec());
                    return Ok(result);
                }
                _ => {}
            }
        }
        if let (Some(relayed), None) = (result.relayed, asking) {
            if let Some(peer) = pending.pop() {
                asking = Some(peer);
                client
                    .relay(relayed)?
                    .create_permission(Instant::now(), peer)?;
                continue;
            } else if !sent_echo {
                sent_echo = true;
                client
                    .relay(relayed)?
                    .send_to(Instant::now(), b"through the relay", echo)
                    .map_err(|e| anyhow::anyhow!("sending to {echo}: {e}; so far {result:?}"))?;
            }
        }
        let wait = client
            .poll_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(50))
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
        socket.set_read_timeout(Some(wait))?;
        match socket.recv(&mut buf) {
            Ok(n) => client.handle_read(TransportMessage {
                now: Instant::now(),
                transport: TransportContext {
                    local_addr: local,
                    peer_addr: server,
                    transport_protocol: TransportProtocol::UDP,
                    ecn: None,
                },
                message: BytesMut::from(&buf[..n]),
            })?,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e.into()),
        }
        client.handle_timeout(Instant::now())?;
    }
}

#[test]
fn the_deployed_coturn_relays_to_the_internet_but_never_into_private_networks() {
    let mut lab = match Lab::new() {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!("SKIPPED: no network lab here: {why}");
            return;
        }
    };
    if let Err(why) = coturn::available() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let secret = coturn::fresh_secret();
    let config = match deploy_config(dir.path(), &secret) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED: cannot make a certificate for coturn's TLS listener: {why}");
            return;
        }
    };
    let coturn = Coturn::start(
        lab.command(lab.internet(), coturn::TURNSERVER),
        &config,
        &secret,
    )
    .expect("coturn starts");
    let server = SocketAddr::from((Lab::SERVICES, 3478));
    for port in [3478, 5349] {
        lab.wait_for_tcp(
            lab.internet(),
            SocketAddr::from((Lab::SERVICES, port)),
            PATIENCE,
        )
        .unwrap_or_else(|e| panic!("coturn listens on {port}: {e}\n{}", coturn.log_tail()));
    }

    // A peer on the public side that sends back whatever reaches it.
    let peer_site = lab.site(Access::Public).expect("site");
    let echo = SocketAddr::from((peer_site.address, 40_000));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let namespace = peer_site.namespace.clone();
    let echo_thread = std::thread::spawn(move || {
        in_namespace(&namespace, move || {
            let socket = UdpSocket::bind(echo).expect("bind the echo peer");
            socket
                .set_read_timeout(Some(PATIENCE * 3))
                .expect("timeout");
            let _ = ready_tx.send(());
            let mut buf = [0u8; 1500];
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], from);
            }
        })
    });
    ready_rx
        .recv_timeout(PATIENCE)
        .expect("the echo peer is up");

    let client_site = lab.site(Access::Public).expect("site");
    let config = chingu_server::Config {
        turn_urls: vec![format!("turn:{server}")],
        turn_secret: Some(secret.clone()),
        ..chingu_server::Config::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let turn = chingu_server::turn::ice_servers(&config, "probe", now).remove(0);
    let forbidden: Vec<SocketAddr> = [
        "127.0.0.1:22",
        "10.0.0.1:22",
        "169.254.169.254:80",
        "192.168.1.1:80",
        "172.16.0.1:80",
        "100.64.0.1:80",
        "[::ffff:127.0.0.1]:22",
    ]
    .iter()
    .map(|a| a.parse().expect("address"))
    .collect();
    let mut peers = forbidden.clone();
    peers.push(echo);
    let (username, password) = (
        turn.username.expect("username"),
        turn.credential.expect("password"),
    );
    let result = in_namespace(&client_site.namespace, move || {
        probe(server, username, password, peers, echo)
    })
    .expect("namespace")
    .unwrap_or_else(|e| panic!("TURN probe: {e:#}\n{}", coturn.log_tail()));
    let _ = echo_thread.join();

    eprintln!("relayed address {:?}", result.relayed);
    for (peer, answer) in &result.permissions {
        eprintln!("  permission to {peer:>24}: {answer:?}");
    }
    for peer in &forbidden {
        let answer = result
            .permissions
            .iter()
            .find(|(p, _)| p == peer)
            .map(|(_, a)| a);
        assert!(
            matches!(answer, Some(Err(_))),
            "relaying to {peer} must be refused, got {answer:?}\n{}",
            coturn.log_tail()
        );
    }
    assert_eq!(
        result.permissions.last().map(|(p, a)| (*p, a.is_ok())),
        Some((echo, true)),
        "the public peer is allowed"
    );
    assert_eq!(
        result.echoed.as_deref(),
        Some(&b"through the relay"[..]),
        "a datagram went to the public peer through the relay and came back"
    );
}
