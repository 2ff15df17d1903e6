//! `chingu-cli load`: many simulated clients that connect, join, get matched, exchange a
//! few signaling messages as a real call would, press Next, and go round again. Measures
//! matches per second and the time from joining (or Next) to `matched`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, bail};
use chingu_proto::{
    CallId, ClientMessage, PROTOCOL_VERSION, Role, ServerMessage, Signal, decode_server, encode,
};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::TcpSocket;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `ws://host:port/v1/ws`
    pub server: String,
    pub clients: usize,
    pub duration: Duration,
    /// Spread connections over this many source addresses 127.0.1.1, 127.0.1.2, ...
    /// (loopback only), so per-address limits and ephemeral ports do not run out.
    /// 0 uses the default source address.
    pub source_addresses: u32,
    /// How long a simulated call lasts before Next.
    pub hold: Duration,
    /// Connections opened at once while ramping up.
    pub connect_concurrency: usize,
    /// Sample this process's RSS and CPU (the server's, when it runs separately).
    pub server_pid: Option<u32>,
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub samples: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// One run's results, printed as one JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub clients: usize,
    pub connected: usize,
    pub connect_s: f64,
    pub duration_s: f64,
    pub matches: u64,
    pub matches_per_s: f64,
    pub join_to_match_ms: Percentiles,
    /// Join (or Next) to `matched` for the client who found a partner already waiting:
    /// the server's own matching latency, without time spent waiting for someone.
    pub join_to_match_partner_waiting_ms: Percentiles,
    pub signals_sent: u64,
    /// Friends' presence changes the clients heard (with friendships seeded:
    /// `chingu-cli seed-friends`), from connecting to the end of the run.
    pub presence_received: u64,
    pub presence_per_s: f64,
    /// The friend lists the server sent at connect: smallest and largest.
    pub friends_listed_min: usize,
    pub friends_listed_max: usize,
    /// Error codes the server sent, and local failures, with counts.
    pub errors: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ProcessFigures>,
}

/// Resource use of the server process during the run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessFigures {
    pub rss_mb_after_connect: f64,
    pub rss_mb_max: f64,
    /// CPU time over wall time during the measured run; 100 = one core busy.
    pub cpu_pct: f64,
}

#[derive(Debug, Default)]
struct ClientOutcome {
    join_to_match_us: Vec<u32>,
    /// The subset measured as answerer, which is the side that joined second.
    partner_waiting_us: Vec<u32>,
    matches_as_offerer: u64,
    signals_sent: u64,
    errors: BTreeMap<String, u64>,
    /// Friends' presence changes heard.
    presence_received: u64,
    /// The size of the friend list the server sent at connect (none: 0).
    friends_listed: usize,
}

/// Runs the simulation and reports.
pub async fn run(config: LoadConfig) -> anyhow::Result<LoadReport> {
    let url: tokio_tungstenite::tungstenite::http::Uri = config
        .server
        .parse()
        .context("--server must be a ws:// URL")?;
    let host = url.host().context("--server has no host")?;
    let port = url.port_u16().unwrap_or(80);
    let target: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .context("--server host does not resolve")?;

    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let connected = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
    let connect_started = Instant::now();
    let mut tasks = Vec::with_capacity(config.clients);
    for index in 0..config.clients {
        let source = match config.source_addresses {
            0 => None,
            n => Some(source_address(index as u32 % n)),
        };
        let client = SimClient {
            index,
            url: config.server.clone(),
            target,
            source,
            hold: config.hold,
        };
        tasks.push(tokio::spawn(client.run(
            Arc::clone(&gate),
            Arc::clone(&connected),
            start_rx.clone(),
        )));
    }
    // Wait until every client has connected or failed.
    let mut last = 0;
    let mut stalled = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = connected.load(Relaxed) as usize;
        let finished = tasks.iter().filter(|t| t.is_finished()).count();
        if now + finished >= config.clients {
            break;
        }
        stalled = if now == last { stalled + 1 } else { 0 };
        last = now;
        if stalled > 100 {
            bail!("connecting stalled at {now} of {} clients", config.clients);
        }
    }
    let connect_s = connect_started.elapsed().as_secs_f64();
    let sampler = config.server_pid.map(ProcessSampler::start);
    let rss_after_connect = config.server_pid.and_then(rss_mb);
    let started = Instant::now();
    start_tx.send_replace(Some(started + config.duration));

    let mut total = ClientOutcome::default();
    let (mut listed_min, mut listed_max) = (usize::MAX, 0);
    for task in tasks {
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(err) => {
                let mut outcome = ClientOutcome::default();
                outcome.errors.insert(format!("task: {err}"), 1);
                outcome
            }
        };
        total.join_to_match_us.extend(outcome.join_to_match_us);
        total.partner_waiting_us.extend(outcome.partner_waiting_us);
        total.matches_as_offerer += outcome.matches_as_offerer;
        total.signals_sent += outcome.signals_sent;
        total.presence_received += outcome.presence_received;
        listed_min = listed_min.min(outcome.friends_listed);
        listed_max = listed_max.max(outcome.friends_listed);
        for (key, count) in outcome.errors {
            *total.errors.entry(key).or_default() += count;
        }
    }
    let duration_s = config.duration.as_secs_f64();
    let server = match (sampler, rss_after_connect) {
        (Some(sampler), Some(rss_after_connect)) => Some(sampler.finish(rss_after_connect)),
        _ => None,
    };
    Ok(LoadReport {
        clients: config.clients,
        connected: connected.load(Relaxed) as usize,
        connect_s,
        duration_s,
        matches: total.matches_as_offerer,
        matches_per_s: total.matches_as_offerer as f64 / duration_s,
        join_to_match_ms: percentiles(total.join_to_match_us),
        join_to_match_partner_waiting_ms: percentiles(total.partner_waiting_us),
        signals_sent: total.signals_sent,
        presence_received: total.presence_received,
        presence_per_s: total.presence_received as f64 / duration_s,
        friends_listed_min: if listed_min == usize::MAX {
            0
        } else {
            listed_min
        },
        friends_listed_max: listed_max,
        errors: total.errors,
        server,
    })
}

/// The device id of simulated client `index`: the same in every run, so friendships
/// seeded for it ([`seed_friends`]) are found when it connects.
pub fn device_id(index: usize) -> String {
    format!("load-{index:016}")
}

/// Writes friendships into a server's data directory before it starts: client `i` is
/// friends with the `friends / 2` clients after it and before it (wrapping round), so
/// each of `clients` has `friends` friends. Returns how many friendships were written.
pub fn seed_friends(
    data_dir: &std::path::Path,
    clients: usize,
    friends: usize,
) -> anyhow::Result<usize> {
    use chingu_server::ids::Identity;
    use chingu_server::storage::{Storage, StoredFriendship};
    if friends >= clients {
        bail!("{clients} clients cannot each have {friends} friends");
    }
    let identity = |i: usize| Identity::from_device_id(&device_id(i));
    let mut rows = Vec::with_capacity(clients * friends / 2);
    for a in 0..clients {
        for step in 1..=friends / 2 {
            let b = (a + step) % clients;
            rows.push(StoredFriendship {
                id: chingu_proto::FriendId(format!("load-{a}-{b}")),
                devices: [identity(a), identity(b)],
                nicknames: [format!("load{a}"), format!("load{b}")],
                last_call_unix: 0,
            });
        }
    }
    let mut storage = Storage::open(data_dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    storage.seed_friendships(&rows, now)?;
    Ok(rows.len())
}

fn source_address(i: u32) -> IpAddr {
    let n = i + 1; // 127.0.1.1 upward; .0 and .255 of each /24 are skipped
    let (hi, lo) = (n / 254, n % 254 + 1);
    IpAddr::V4(Ipv4Addr::new(127, 0, 1 + hi as u8, lo as u8))
}

pub fn percentiles(mut us: Vec<u32>) -> Percentiles {
    us.sort_unstable();
    let at = |q: f64| -> f64 {
        if us.is_empty() {
            return 0.0;
        }
        let i = ((us.len() as f64 * q).ceil() as usize).clamp(1, us.len()) - 1;
        f64::from(us[i]) / 1000.0
    };
    Percentiles {
        samples: us.len(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
    }
}

struct SimClient {
    index: usize,
    url: String,
    target: SocketAddr,
    source: Option<IpAddr>,
    hold: Duration,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

impl SimClient {
    async fn run(
        self,
        gate: Arc<Semaphore>,
        connected: Arc<AtomicU64>,
        mut start: watch::Receiver<Option<Instant>>,
    ) -> ClientOutcome {
        let mut outcome = ClientOutcome::default();
        let ws = {
            let _permit = gate.acquire().await;
            self.connect().await
        };
        let mut ws = match ws {
            Ok(ws) => ws,
            Err(err) => {
                outcome.errors.insert(format!("connect: {err:#}"), 1);
                return outcome;
            }
        };
        connected.fetch_add(1, Relaxed);
        let stop = match start.wait_for(Option::is_some).await {
            Ok(stop) => stop.expect("waited for Some"),
            Err(_) => return outcome,
        };
        if let Err(err) = self.cycle(&mut ws, stop, &mut outcome).await {
            *outcome.errors.entry(format!("{err:#}")).or_default() += 1;
        }
        let _ = ws.close(None).await;
        outcome
    }

    async fn connect(&self) -> anyhow::Result<Ws> {
        let socket = if self.target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(source) = self.source {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        let stream = socket.connect(self.target).await?;
        stream.set_nodelay(true)?;
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(&self.url, stream, Some(config)).await?;
        send(
            &mut ws,
            &ClientMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                client_version: concat!("chingu-cli/", env!("CARGO_PKG_VERSION")).into(),
                device_id: device_id(self.index),
            },
        )
        .await?;
        match recv(&mut ws).await? {
            Some(ServerMessage::Welcome { .. }) => Ok(ws),
            other => bail!("expected welcome, got {other:?}"),
        }
    }

    /// Join → matched → offer/answer/candidates → Next, until `stop`.
    async fn cycle(
        &self,
        ws: &mut Ws,
        stop: Instant,
        outcome: &mut ClientOutcome,
    ) -> anyhow::Result<()> {
        let join = ClientMessage::JoinQueue {
            nickname: format!("load{}", self.index),
            languages: vec!["ko".into()],
            interests: vec!["music".into()],
        };
        let sdp = fake_sdp(self.index);
        // Real people neither arrive together nor talk for equal times: start within the
        // first mean call length and hold each call 0.5x to 1.5x the mean, or the run
        // measures a synchronised herd instead of the server.
        let mut rng = XorShift::new(self.index as u64);
        tokio::time::sleep(self.hold.mul_f64(rng.unit())).await;
        let mut waiting_since = Instant::now();
        send(ws, &join).await?;
        let mut hang_up_at: Option<(Instant, CallId)> = None;
        loop {
            let wake = hang_up_at.as_ref().map_or(stop, |(at, _)| (*at).min(stop));
            let msg = tokio::select! {
                msg = recv(ws) => msg?,
                () = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= stop {
                        return Ok(());
                    }
                    let (_, call_id) = hang_up_at.take().expect("woke for a planned Next");
                    send(ws, &ClientMessage::Next { call_id }).await?;
                    waiting_since = Instant::now();
                    continue;
                }
            };
            let Some(msg) = msg else { return Ok(()) };
            match msg {
                ServerMessage::Matched { call_id, role, .. } => {
                    let waited = waiting_since.elapsed().as_micros();
                    let waited = u32::try_from(waited).unwrap_or(u32::MAX);
                    outcome.join_to_match_us.push(waited);
                    if role == Role::Answerer {
                        outcome.partner_waiting_us.push(waited);
                    }
                    if role == Role::Offerer {
                        outcome.matches_as_offerer += 1;
                        let offer = Signal::Offer { sdp: sdp.clone() };
                        send(
                            ws,
                            &ClientMessage::Signal {
                                call_id,
                                signal: offer,
                            },
                        )
                        .await?;
                        outcome.signals_sent += 1;
                    }
                }
                ServerMessage::Signal { call_id, signal } => match signal {
                    Signal::Offer { .. } => {
                        let replies = [
                            Signal::Answer { sdp: sdp.clone() },
                            Signal::Candidate {
                                candidate: format!(
                                    "candidate:1 1 udp 2130706431 127.0.0.1 {} typ host",
                                    10_000 + self.index % 50_000
                                ),
                                sdp_mid: Some("0".into()),
                                sdp_mline_index: Some(0),
                            },
                            Signal::EndOfCandidates,
                        ];
                        for signal in replies {
                            let call_id = call_id.clone();
                            send(ws, &ClientMessage::Signal { call_id, signal }).await?;
                            outcome.signals_sent += 1;
                        }
                    }
                    // The offerer has everything once the answerer is done: hold the
                    // "call", then press Next.
                    Signal::EndOfCandidates => {
                        let hold = self.hold.mul_f64(0.5 + rng.unit());
                        hang_up_at = Some((Instant::now() + hold, call_id));
                    }
                    _ => {}
                },
                ServerMessage::PeerLeft { .. } => {
                    hang_up_at = None;
                    send(ws, &join).await?;
                    waiting_since = Instant::now();
                }
                // After the stop, peers that already left cause errors that say
                // nothing about the server.
                ServerMessage::Error { code, .. } if Instant::now() < stop => {
                    *outcome.errors.entry(code.to_string()).or_default() += 1;
                }
                ServerMessage::ShuttingDown { .. } => bail!("server shut down"),
                ServerMessage::Friends { friends, .. } => outcome.friends_listed += friends.len(),
                ServerMessage::Presence { .. } => outcome.presence_received += 1,
                _ => {}
            }
        }
    }
}

/// A small deterministic generator, so runs are repeatable.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// An SDP of realistic size (~1 KB) for the relay to carry.
fn fake_sdp(index: usize) -> String {
    let mut sdp = format!("v=0\r\no=- {index} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    for line in 0..24 {
        sdp.push_str(&format!(
            "a=x-chingu-load:{line:02} padding-to-a-typical-offer-size\r\n"
        ));
    }
    sdp
}

async fn send(ws: &mut Ws, msg: &ClientMessage) -> anyhow::Result<()> {
    ws.send(Message::Text(encode(msg).into()))
        .await
        .context("send")
}

/// The next protocol message; `None` when the server closed.
async fn recv(ws: &mut Ws) -> anyhow::Result<Option<ServerMessage>> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return decode_server(text.as_str())
                    .map(Some)
                    .with_context(|| format!("bad server message {text}"));
            }
            Some(Ok(Message::Close(_))) | None => return Ok(None),
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(err).context("receive"),
        }
    }
}

/// Samples a process's RSS and CPU time from /proc.
struct ProcessSampler {
    pid: u32,
    cpu_start: Option<f64>,
    started: std::time::Instant,
    rss_max: Arc<std::sync::Mutex<f64>>,
    stop: watch::Sender<bool>,
}

impl ProcessSampler {
    fn start(pid: u32) -> Self {
        let rss_max = Arc::new(std::sync::Mutex::new(rss_mb(pid).unwrap_or(0.0)));
        let (stop, mut stopped) = watch::channel(false);
        let max = Arc::clone(&rss_max);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                if let Some(rss) = rss_mb(pid) {
                    let mut max = max.lock().expect("sampler lock");
                    *max = max.max(rss);
                }
            }
        });
        Self {
            pid,
            cpu_start: cpu_seconds(pid),
            started: std::time::Instant::now(),
            rss_max,
            stop,
        }
    }

    fn finish(self, rss_after_connect: f64) -> ProcessFigures {
        let _ = self.stop.send(true);
        let wall = self.started.elapsed().as_secs_f64();
        let cpu = match (self.cpu_start, cpu_seconds(self.pid)) {
            (Some(a), Some(b)) => (b - a) / wall * 100.0,
            _ => f64::NAN,
        };
        let rss_max = *self.rss_max.lock().expect("sampler lock");
        ProcessFigures {
            rss_mb_after_connect: rss_after_connect,
            rss_mb_max: rss_max.max(rss_after_connect),
            cpu_pct: cpu,
        }
    }
}

fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let p = percentiles((1..=100).map(|ms| ms * 1000).collect());
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(percentiles(vec![]).samples, 0);
    }

    #[test]
    fn source_addresses_stay_in_loopback_and_skip_network_and_broadcast() {
        let all: Vec<IpAddr> = (0..600).map(source_address).collect();
        for ip in &all {
            let IpAddr::V4(v4) = ip else {
                panic!("v4 only")
            };
            assert!(v4.is_loopback());
            assert!(v4.octets()[3] != 0 && v4.octets()[3] != 255, "{v4}");
        }
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len());
    }
}
