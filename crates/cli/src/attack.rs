//! `chingu-cli attack`: what one address (or three) can do to a server while staying
//! within every documented limit, and what honest users on other addresses see
//! meanwhile. Three attacks:
//!
//! - `slow-readers`: connections that say hello, then send messages whose error replies
//!   pile up, and never read;
//! - `half-requests`: connections that send the start of an HTTP request and wait;
//! - `join-storm`: 96 connections over three addresses sharing one device id, re-joining
//!   the queue ~28 times a second each with 8 languages × 16 interests.
//!
//! Meanwhile honest pairs on other addresses join and are matched, relay a signal and
//! hang up, and `/healthz` is polled. Loopback only: the attack comes from 127.0.3.x,
//! honest clients from 127.0.2.x.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, bail};
use chingu_proto::{ClientMessage, PROTOCOL_VERSION, ServerMessage, Signal, decode_server, encode};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::load::{Percentiles, percentiles};

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Which attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attack {
    SlowReaders,
    HalfRequests,
    JoinStorm,
    /// No attack: the honest figures alone, for comparison.
    None,
}

#[derive(Debug, Clone)]
pub struct AttackConfig {
    pub server: String,
    pub attack: Attack,
    pub duration: Duration,
}

/// What the honest side saw.
#[derive(Debug, Default, Serialize)]
pub struct Honest {
    pub pairs_matched: u64,
    /// From the second client's join to its `matched` (its partner was waiting).
    pub join_to_match_ms: Option<Percentiles>,
    /// A signal from one side of a call to the other, through the server.
    pub relay_ms: Option<Percentiles>,
    pub failures: u64,
}

/// What the attack managed.
#[derive(Debug, Default, Serialize)]
pub struct Attacker {
    pub connections_opened: u64,
    /// Connections the server closed (dropped as slow, timed out, refused).
    pub connections_closed_by_server: u64,
    pub connect_failures: u64,
    pub messages_sent: u64,
}

#[derive(Debug, Serialize)]
pub struct AttackReport {
    pub attack: Attack,
    pub duration_s: f64,
    pub honest: Honest,
    pub healthz_ms: Option<Percentiles>,
    pub healthz_failures: u64,
    pub attacker: Attacker,
}

#[derive(Debug, Default)]
struct Counters {
    opened: AtomicU64,
    closed: AtomicU64,
    connect_failures: AtomicU64,
    sent: AtomicU64,
}

fn loopback(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, a, b))
}

pub async fn run(config: AttackConfig) -> anyhow::Result<AttackReport> {
    let host = config
        .server
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .context("--server must be ws://host:port/...")?;
    let target: SocketAddr = host.parse().context("--server needs a numeric host:port")?;
    let stop = Instant::now() + config.duration;
    let counters = Arc::new(Counters::default());
    let attack = {
        let (url, counters) = (config.server.clone(), Arc::clone(&counters));
        tokio::spawn(async move {
            match config.attack {
                Attack::SlowReaders => slow_readers(&url, target, stop, &counters).await,
                Attack::HalfRequests => half_requests(target, stop, &counters).await,
                Attack::JoinStorm => join_storm(&url, target, stop, &counters).await,
                Attack::None => {}
            }
        })
    };
    // Let the attack take hold before measuring.
    tokio::time::sleep(Duration::from_secs(2).min(config.duration / 4)).await;
    let health = tokio::spawn(poll_health(target, stop));
    let honest = honest_pairs(&config.server, target, stop).await;
    let (health_us, health_failures) = health.await.unwrap_or_default();
    // Give the attack a moment to notice the end, then stop it either way.
    let _ = tokio::time::timeout(Duration::from_secs(2), attack).await;
    Ok(AttackReport {
        attack: config.attack,
        duration_s: config.duration.as_secs_f64(),
        honest,
        healthz_ms: (!health_us.is_empty()).then(|| percentiles(health_us)),
        healthz_failures: health_failures,
        attacker: Attacker {
            connections_opened: counters.opened.load(Relaxed),
            connections_closed_by_server: counters.closed.load(Relaxed),
            connect_failures: counters.connect_failures.load(Relaxed),
            messages_sent: counters.sent.load(Relaxed),
        },
    })
}

async fn tcp_from(source: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

async fn ws_from(
    url: &str,
    source: IpAddr,
    target: SocketAddr,
    device: &str,
) -> anyhow::Result<Ws> {
    let stream = tokio::time::timeout(Duration::from_secs(5), tcp_from(source, target))
        .await
        .context("connect timed out")??;
    stream.set_nodelay(true)?;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::client_async(url, stream),
    )
    .await
    .context("handshake timed out")??;
    ws.send(Message::Text(
        encode(&ClientMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            client_version: "chingu-cli/attack".into(),
            device_id: device.into(),
        })
        .into(),
    ))
    .await?;
    match next_message(&mut ws, Duration::from_secs(5)).await? {
        ServerMessage::Welcome { .. } => Ok(ws),
        other => bail!("expected welcome, got {other:?}"),
    }
}

/// The next server message other than `online_count`.
async fn next_message(ws: &mut Ws, within: Duration) -> anyhow::Result<ServerMessage> {
    let deadline = Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("no message in time")?
            .context("closed")??;
        if let Message::Text(text) = frame {
            match decode_server(text.as_str())? {
                ServerMessage::OnlineCount { .. } => {}
                msg => return Ok(msg),
            }
        }
    }
}

/// Connections from one address that never read; each is replaced when the server
/// drops it, up to the address's connection limit at a time.
async fn slow_readers(url: &str, target: SocketAddr, stop: Instant, counters: &Arc<Counters>) {
    let source = loopback(3, 1);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = 0u64;
    while Instant::now() < stop {
        while tasks.len() < 40 && Instant::now() < stop {
            next += 1;
            let (url, counters) = (url.to_owned(), Arc::clone(counters));
            tasks.spawn(async move {
                let device = format!("attack-slow-{next:012}");
                let Ok(mut ws) = ws_from(&url, source, target, &device).await else {
                    counters.connect_failures.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return;
                };
                counters.opened.fetch_add(1, Relaxed);
                // Messages that each earn an error, at the per-connection rate.
                while Instant::now() < stop {
                    if ws
                        .send(Message::Text(r#"{"type":"teleport"}"#.into()))
                        .await
                        .is_err()
                    {
                        counters.closed.fetch_add(1, Relaxed);
                        return;
                    }
                    counters.sent.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(35)).await;
                }
            });
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), tasks.join_next()).await;
    }
    tasks.shutdown().await;
}

/// Connections from one address that send half a request and wait, as many as the
/// server lets in (each replaced when closed).
async fn half_requests(target: SocketAddr, stop: Instant, counters: &Arc<Counters>) {
    let source = loopback(3, 1);
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < stop {
        while tasks.len() < 2_000 && Instant::now() < stop {
            let counters = Arc::clone(counters);
            tasks.spawn(async move {
                let Ok(mut stream) = tcp_from(source, target).await else {
                    counters.connect_failures.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return;
                };
                counters.opened.fetch_add(1, Relaxed);
                let _ = stream
                    .write_all(b"GET /v1/ws HTTP/1.1\r\nHost: chingu\r\nUpgrade: websocket\r\n")
                    .await;
                let mut buf = [0u8; 256];
                let left = stop.saturating_duration_since(Instant::now());
                loop {
                    match tokio::time::timeout(left, stream.read(&mut buf)).await {
                        Err(_) => return, // held until the end
                        Ok(Ok(0) | Err(_)) => {
                            counters.closed.fetch_add(1, Relaxed);
                            return;
                        }
                        Ok(Ok(_)) => continue,
                    }
                }
            });
        }
        let _ = tokio::time::timeout(Duration::from_millis(20), tasks.join_next()).await;
    }
    tasks.shutdown().await;
}

/// 96 connections over three addresses, one device id, re-joining as fast as the
/// per-connection limit allows with the widest preferences the protocol accepts.
async fn join_storm(url: &str, target: SocketAddr, stop: Instant, counters: &Arc<Counters>) {
    let join = encode(&ClientMessage::JoinQueue {
        nickname: "storm".into(),
        languages: (0..8).map(|i| format!("x{i}a")).collect(),
        interests: (0..16).map(|i| format!("storm{i}")).collect(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..96u8 {
        let (url, counters, join) = (url.to_owned(), Arc::clone(counters), join.clone());
        tasks.spawn(async move {
            let source = loopback(3, 1 + n % 3);
            let Ok(ws) = ws_from(&url, source, target, "attack-storm-0000000").await else {
                counters.connect_failures.fetch_add(1, Relaxed);
                return;
            };
            counters.opened.fetch_add(1, Relaxed);
            let (mut sink, mut stream) = ws.split();
            // Read (and drop) what comes back, so this is a storm, not a slow reader.
            let reader = tokio::spawn(async move { while stream.next().await.is_some() {} });
            let mut tick = tokio::time::interval(Duration::from_millis(36));
            while Instant::now() < stop {
                tick.tick().await;
                if sink.send(Message::Text(join.clone().into())).await.is_err() {
                    counters.closed.fetch_add(1, Relaxed);
                    break;
                }
                counters.sent.fetch_add(1, Relaxed);
            }
            reader.abort();
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Honest pairs, one after another from 127.0.2.x with fresh devices: join, match,
/// relay one signal each way, hang up.
async fn honest_pairs(url: &str, target: SocketAddr, stop: Instant) -> Honest {
    let mut honest = Honest::default();
    let (mut matched_us, mut relay_us) = (Vec::new(), Vec::new());
    let mut round = 0u64;
    while Instant::now() < stop {
        round += 1;
        match honest_round(url, target, round, &mut matched_us, &mut relay_us).await {
            Ok(()) => honest.pairs_matched += 1,
            Err(err) => {
                honest.failures += 1;
                tracing::info!("honest round {round}: {err:#}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    honest.join_to_match_ms = (!matched_us.is_empty()).then(|| percentiles(matched_us));
    honest.relay_ms = (!relay_us.is_empty()).then(|| percentiles(relay_us));
    honest
}

async fn honest_round(
    url: &str,
    target: SocketAddr,
    round: u64,
    matched_us: &mut Vec<u32>,
    relay_us: &mut Vec<u32>,
) -> anyhow::Result<()> {
    let join = |name: &str| {
        encode(&ClientMessage::JoinQueue {
            nickname: name.into(),
            languages: vec!["ko".into()],
            interests: vec!["music".into()],
        })
    };
    // Fresh devices every round (and every run): two who met are kept apart a while.
    let run = std::process::id();
    let mut a = ws_from(
        url,
        loopback(2, 1),
        target,
        &format!("honest-{run}-a-{round:012}"),
    )
    .await?;
    let mut b = ws_from(
        url,
        loopback(2, 2),
        target,
        &format!("honest-{run}-b-{round:012}"),
    )
    .await?;
    a.send(Message::Text(join("a").into())).await?;
    expect(&mut a, |m| matches!(m, ServerMessage::Queued)).await?;
    let joined = Instant::now();
    b.send(Message::Text(join("b").into())).await?;
    let call_id = loop {
        match next_message(&mut b, Duration::from_secs(10)).await? {
            ServerMessage::Matched { call_id, .. } => break call_id,
            ServerMessage::Queued => continue,
            other => bail!("b expected matched, got {other:?}"),
        }
    };
    matched_us.push(joined.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    expect(&mut a, |m| matches!(m, ServerMessage::Matched { .. })).await?;
    let sent = Instant::now();
    a.send(Message::Text(
        encode(&ClientMessage::Signal {
            call_id: call_id.clone(),
            signal: Signal::Offer {
                sdp: "v=0\r\n".into(),
            },
        })
        .into(),
    ))
    .await?;
    expect(&mut b, |m| matches!(m, ServerMessage::Signal { .. })).await?;
    relay_us.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    a.send(Message::Text(
        encode(&ClientMessage::HangUp { call_id }).into(),
    ))
    .await?;
    let _ = a.close(None).await;
    let _ = b.close(None).await;
    Ok(())
}

async fn expect(ws: &mut Ws, want: impl Fn(&ServerMessage) -> bool) -> anyhow::Result<()> {
    loop {
        let msg = next_message(ws, Duration::from_secs(10)).await?;
        if want(&msg) {
            return Ok(());
        }
        if let ServerMessage::Error { .. } = msg {
            bail!("server error: {msg:?}");
        }
    }
}

/// `GET /healthz` every 100 ms from 127.0.2.3 until `stop`: latencies and failures.
async fn poll_health(target: SocketAddr, stop: Instant) -> (Vec<u32>, u64) {
    let (mut latencies, mut failures) = (Vec::new(), 0);
    while Instant::now() < stop {
        let started = Instant::now();
        let ok = tokio::time::timeout(Duration::from_secs(5), async {
            let mut stream = tcp_from(loopback(2, 3), target).await?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: chingu\r\nConnection: close\r\n\r\n")
                .await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            Ok::<_, std::io::Error>(response.starts_with(b"HTTP/1.1 200"))
        })
        .await;
        match ok {
            Ok(Ok(true)) => {
                latencies.push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32)
            }
            _ => failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (latencies, failures)
}
