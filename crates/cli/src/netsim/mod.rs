//! A network simulator for calls on one machine: an impairing UDP relay in this process
//! (docs/decisions/0009-impairment-harness.md says why not namespaces and qdiscs).
//!
//! One peer is *routed*: its engine is given [`NetSim::route`], so the candidates it sends
//! name the simulator's sockets and the peer's candidates are reached through them
//! ([`chingu_engine::peer::route`]). For every address either side uses, the simulator
//! binds a *front* socket on loopback that stands for it: what arrives at the front for
//! `x` from `y` is sent on to `x` from the front for `y`, so each side sees the other only
//! at front addresses. Packets towards the routed peer go through the `down`
//! [`link::Link`], the others through `up`; each link decides loss and arrival time
//! (sans-IO, seeded), and a delivery task per direction sends each packet at its time.

pub mod flows;
pub mod link;
#[cfg(target_os = "linux")]
pub mod nfqueue;
pub mod scenario;

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use chingu_engine::peer::route::MediaRoute;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use link::{Fate, Link, LinkCounts};
pub use scenario::Scenario;

/// Packets waiting for their time, per direction; beyond, they are dropped (counted).
const DELIVERY_QUEUE: usize = 16_384;
const MAX_DATAGRAM: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

struct Delivery {
    at: Instant,
    seq: u64,
    via: Arc<UdpSocket>,
    to: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for Delivery {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Delivery {}
impl PartialOrd for Delivery {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delivery {
    /// Reversed: the heap's top is the earliest.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct Front {
    socket: Arc<UdpSocket>,
    addr: SocketAddr,
}

struct Inner {
    handle: tokio::runtime::Handle,
    start: Instant,
    /// Real address -> the front that stands for it.
    fronts: Mutex<HashMap<SocketAddr, Arc<Front>>>,
    front_addrs: Mutex<HashSet<SocketAddr>>,
    /// The routed peer's own sockets.
    locals: Mutex<HashSet<SocketAddr>>,
    up: Mutex<Link>,
    down: Mutex<Link>,
    deliver_up: mpsc::Sender<Delivery>,
    deliver_down: mpsc::Sender<Delivery>,
    seq: std::sync::atomic::AtomicU64,
    overflow: std::sync::atomic::AtomicU64,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The simulator; dropping it stops every task it started.
pub struct NetSim {
    inner: Arc<Inner>,
    pub scenario: Scenario,
}

impl std::fmt::Debug for NetSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSim")
            .field("scenario", &self.scenario.name)
            .finish_non_exhaustive()
    }
}

/// What each direction did, for the report.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct NetCounts {
    pub up: LinkCounts,
    pub down: LinkCounts,
    /// Packets dropped because the simulator itself fell behind (should stay 0).
    pub overflow: u64,
}

impl NetSim {
    /// Starts the delivery tasks on the current runtime. Time 0 of the scenario is now.
    pub fn start(scenario: Scenario) -> Arc<Self> {
        let (up_tx, up_rx) = mpsc::channel(DELIVERY_QUEUE);
        let (down_tx, down_rx) = mpsc::channel(DELIVERY_QUEUE);
        let inner = Arc::new(Inner {
            handle: tokio::runtime::Handle::current(),
            start: Instant::now(),
            fronts: Mutex::new(HashMap::new()),
            front_addrs: Mutex::new(HashSet::new()),
            locals: Mutex::new(HashSet::new()),
            up: Mutex::new(Link::new(scenario.up.clone(), scenario.seed)),
            down: Mutex::new(Link::new(
                scenario.down.clone(),
                scenario.seed ^ 0x005E_EDD0_u64,
            )),
            deliver_up: up_tx,
            deliver_down: down_tx,
            seq: Default::default(),
            overflow: Default::default(),
            tasks: Mutex::new(Vec::new()),
        });
        for rx in [up_rx, down_rx] {
            let task = tokio::spawn(deliver(rx));
            lock(&inner.tasks).push(task.abort_handle());
        }
        Arc::new(Self { inner, scenario })
    }

    /// What the routed peer's engine is given ([`chingu_engine::peer::PeerOptions::route`]).
    pub fn route(self: &Arc<Self>) -> Arc<dyn MediaRoute> {
        Arc::new(Route(Arc::clone(&self.inner)))
    }

    /// When one way's rate first dropped (a scheduled step to a lower rate), and when
    /// the step after that came (`None`: none does). `up`: the routed peer's uplink.
    pub fn first_drop(&self, up: bool) -> Option<(std::time::Instant, Option<std::time::Instant>)> {
        let link = if up {
            &self.scenario.up
        } else {
            &self.scenario.down
        };
        let at = |d: std::time::Duration| (self.inner.start + d).into_std();
        // Before the first step the link is unlimited (`None`).
        let drop = (0..link.rate.len()).find(|&i| {
            let before = i.checked_sub(1).and_then(|j| link.rate[j].bps);
            link.rate[i].at > std::time::Duration::ZERO
                && link.rate[i]
                    .bps
                    .is_some_and(|b| before.is_none_or(|a| b < a))
        })?;
        Some((
            at(link.rate[drop].at),
            link.rate.get(drop + 1).map(|s| at(s.at)),
        ))
    }

    pub fn counts(&self) -> NetCounts {
        NetCounts {
            up: lock(&self.inner.up).counts,
            down: lock(&self.inner.down).counts,
            overflow: self
                .inner
                .overflow
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl Drop for NetSim {
    fn drop(&mut self) {
        for task in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
    }
}

#[derive(Debug)]
struct Route(Arc<Inner>);

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSim").finish_non_exhaustive()
    }
}

impl MediaRoute for Route {
    fn advertise(&self, local: SocketAddr) -> Option<SocketAddr> {
        lock(&self.0.locals).insert(local);
        Some(front(&self.0, local)?.addr)
    }

    fn reach(&self, remote: SocketAddr) -> Option<SocketAddr> {
        if lock(&self.0.front_addrs).contains(&remote) {
            return Some(remote);
        }
        Some(front(&self.0, remote)?.addr)
    }
}

/// The front standing for `real`, bound (and its receive task started) on first use.
fn front(inner: &Arc<Inner>, real: SocketAddr) -> Option<Arc<Front>> {
    if let Some(front) = lock(&inner.fronts).get(&real) {
        return Some(Arc::clone(front));
    }
    let bind = match real {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
    };
    let std_socket = std::net::UdpSocket::bind(bind)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .map_err(|e| tracing::warn!("simulator socket: {e}"))
        .ok()?;
    let socket = {
        let _runtime = inner.handle.enter();
        UdpSocket::from_std(std_socket)
            .map_err(|e| tracing::warn!("simulator socket: {e}"))
            .ok()?
    };
    let addr = socket.local_addr().ok()?;
    let mut fronts = lock(&inner.fronts);
    // Another caller may have bound one meanwhile: keep the first.
    if let Some(existing) = fronts.get(&real) {
        return Some(Arc::clone(existing));
    }
    let front = Arc::new(Front {
        socket: Arc::new(socket),
        addr,
    });
    fronts.insert(real, Arc::clone(&front));
    drop(fronts);
    lock(&inner.front_addrs).insert(addr);
    let task = inner
        .handle
        .spawn(receive(Arc::clone(inner), Arc::clone(&front), real));
    lock(&inner.tasks).push(task.abort_handle());
    Some(front)
}

/// What arrives at the front for `real`: through a link, then on to `real`.
async fn receive(inner: Arc<Inner>, front_socket: Arc<Front>, real: SocketAddr) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, from) = match front_socket.socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                // ICMP errors from a peer that went away surface here; keep serving.
                tracing::debug!("simulator receive: {e}");
                continue;
            }
        };
        if lock(&inner.front_addrs).contains(&from) {
            continue; // never relay between our own sockets
        }
        let Some(via) = front(&inner, from) else {
            continue;
        };
        let direction = if lock(&inner.locals).contains(&real) {
            Direction::Down
        } else {
            Direction::Up
        };
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(inner.start);
        let (link, queue) = match direction {
            Direction::Up => (&inner.up, &inner.deliver_up),
            Direction::Down => (&inner.down, &inner.deliver_down),
        };
        let fate = lock(link).send(elapsed, len);
        if let Fate::Deliver(at) = fate {
            let delivery = Delivery {
                at: inner.start + at,
                seq: inner.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                via: Arc::clone(&via.socket),
                to: real,
                data: buf[..len].to_vec(),
            };
            if queue.try_send(delivery).is_err() {
                inner
                    .overflow
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Sends each packet of one direction at its time.
async fn deliver(mut rx: mpsc::Receiver<Delivery>) {
    let mut due: BinaryHeap<Delivery> = BinaryHeap::new();
    loop {
        let next = due.peek().map(|d| d.at);
        tokio::select! {
            got = rx.recv() => match got {
                Some(d) => due.push(d),
                None => return,
            },
            () = sleep_until(next) => {
                let now = Instant::now();
                while due.peek().is_some_and(|d| d.at <= now) {
                    let Some(d) = due.pop() else { break };
                    if let Err(e) = d.via.send_to(&d.data, d.to).await {
                        tracing::debug!("simulator send: {e}");
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn the_first_drop_in_a_ways_rate_is_found() {
        let sim = NetSim::start("step".parse().unwrap());
        let start = sim.inner.start.into_std();
        let s = Duration::from_secs(1);
        assert_eq!(
            sim.first_drop(true),
            Some((start + 10 * s, Some(start + 20 * s)))
        );
        assert_eq!(sim.first_drop(false), None, "the other way is not limited");
        // A cap from the start is not a drop; a later lower rate is, and so is a limit
        // after an unlimited start.
        let cap = NetSim::start("up.rate=1M".parse().unwrap());
        assert_eq!(cap.first_drop(true), None);
        let up = NetSim::start("up.rate=1M;2M@1s;500k@2s".parse().unwrap());
        assert_eq!(
            up.first_drop(true),
            Some((up.inner.start.into_std() + 2 * s, None))
        );
        let late = NetSim::start("down.rate=off;1M@3s".parse().unwrap());
        assert_eq!(
            late.first_drop(false),
            Some((late.inner.start.into_std() + 3 * s, None))
        );
    }

    #[tokio::test]
    async fn each_side_sees_the_other_only_at_front_addresses() {
        let sim = NetSim::start("clean".parse().unwrap());
        let route = sim.route();
        let (routed, other) = pair().await;
        let advertised = route.advertise(routed.local_addr().unwrap()).unwrap();
        let reach_other = route.reach(other.local_addr().unwrap()).unwrap();
        assert_ne!(advertised, routed.local_addr().unwrap());
        assert_eq!(route.reach(advertised), Some(advertised));

        routed.send_to(b"up", reach_other).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = other.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"up"[..], advertised));

        other.send_to(b"down", advertised).await.unwrap();
        let (n, from) = routed.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"down"[..], reach_other));
        let counts = sim.counts();
        assert_eq!((counts.up.delivered, counts.down.delivered), (1, 1));
    }

    #[tokio::test]
    async fn delay_holds_packets_and_loss_drops_them_per_direction() {
        let sim = NetSim::start("up.delay=80ms,down.loss=100%".parse().unwrap());
        let route = sim.route();
        let (routed, other) = pair().await;
        let advertised = route.advertise(routed.local_addr().unwrap()).unwrap();
        let reach_other = route.reach(other.local_addr().unwrap()).unwrap();
        let sent = std::time::Instant::now();
        routed.send_to(b"x", reach_other).await.unwrap();
        let mut buf = [0u8; 16];
        other.recv_from(&mut buf).await.unwrap();
        assert!(sent.elapsed() >= Duration::from_millis(80));

        for _ in 0..10 {
            other.send_to(b"y", advertised).await.unwrap();
        }
        let got =
            tokio::time::timeout(Duration::from_millis(200), routed.recv_from(&mut buf)).await;
        assert!(got.is_err(), "a lossy direction delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(sim.counts().down.lost, 10);
    }
}
