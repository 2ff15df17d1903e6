//! DTLS handshake packets sent twice, and a lost flight sent again early: a runtime for
//! webrtc-rs that is its default one except that each UDP socket it wraps sends every
//! datagram holding a DTLS handshake record (content type 22, or 20 for ChangeCipherSpec) a
//! second time, and resends its last handshake flight on a short timer until the peer's
//! media or data shows the handshake is over.
//!
//! Why (measured with `chingu-cli bench --net loss20`): webrtc-rs 0.21.1 retransmits a
//! handshake flight only after a fixed second, so each lost flight costs a second of setup;
//! and when a client waiting after its last flight receives the server's repeated flight,
//! it clears its retransmission timer without re-arming it (rtc-dtls `handshaker.rs`,
//! `wait`): if the server's final flight was lost, neither side sends again and the call
//! ends with `connect-timeout` after 15 s (2 of 8 calls at 20 % random loss). With each
//! handshake datagram sent twice, a flight is lost only if both copies are (4 % instead of
//! 20 % per packet at 20 % loss). A duplicate is harmless to DTLS (a repeated record is
//! dropped by its replay window; a repeated flight makes the peer resend its own, as
//! RFC 6347 §4.2.4 asks) and the handshake is a few kilobytes once per call.
//!
//! At 40 % loss both copies of some datagram of a flight are lost in about one call in
//! two (16 % per datagram, six or so datagrams per handshake), and each such loss cost
//! webrtc-rs's full second: 10 of 19 calls took 1.0–3.1 s to connect. So the socket also
//! keeps the datagrams of its last flight ([`FlightKeeper`]) and sends them again, twice
//! each, [`RESENDS`] after the flight was sent, verbatim: a record the peer already has is
//! dropped by its replay window, one it lacks completes the flight. It stops when the
//! peer's SRTP, SRTCP or DTLS application data arrives (the handshake is over on both
//! sides), after [`MAX_RESENDS`] resends in all, or when the socket is dropped.

use std::fmt::Debug;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    Transmit,
};

/// Whether a datagram carries a DTLS handshake (or ChangeCipherSpec) record first.
pub(crate) fn is_dtls_handshake(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(20 | 22))
}

/// After the last datagram of a flight, when its datagrams are sent again (webrtc-rs's own
/// retransmission comes at 1 s, and starts a new flight here).
pub(crate) const RESENDS: [Duration; 3] = [
    Duration::from_millis(150),
    Duration::from_millis(400),
    Duration::from_millis(750),
];
/// Resends over the socket's life: past this only webrtc-rs retransmits (a handshake that
/// never ends, or a peer that never sends media, costs at most this many flights).
pub(crate) const MAX_RESENDS: u32 = 24;
/// A handshake datagram sent this long after the previous one begins a new flight (a
/// flight is written at once; webrtc-rs's retransmission comes a second later), as does
/// one sent after the peer's handshake arrived (its answer; on a short path within
/// milliseconds).
const NEW_FLIGHT_AFTER: Duration = Duration::from_millis(50);
/// What one flight may hold: a handshake flight is a few kilobytes (a certificate and a
/// few messages); anything beyond is not kept.
const MAX_FLIGHT_DATAGRAMS: usize = 16;
const MAX_FLIGHT_BYTES: usize = 32 * 1024;

/// Whether a received datagram shows the DTLS handshake over: DTLS application data (the
/// data channel's SCTP) or SRTP/SRTCP (RFC 7983: first byte 128..=191), which the peer
/// sends only once its side is done.
pub(crate) fn shows_handshake_over(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(23 | 128..=191))
}

/// What the socket's resend task should do next (see [`FlightKeeper::poll`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FlightDue {
    /// The handshake is over or the resends are spent: the task ends.
    Over,
    /// No flight kept: wait for one.
    Idle,
    /// Nothing before this instant.
    At(Instant),
    /// Send these again, now.
    Resend(Vec<(SocketAddr, Vec<u8>)>),
}

/// Our side's last DTLS handshake flight and when to send it again (sans-IO; the socket
/// feeds it what it sends and receives, a task asks it what is due).
#[derive(Debug, Default)]
pub(crate) struct FlightKeeper {
    flight: Vec<(SocketAddr, Vec<u8>)>,
    bytes: usize,
    /// When the flight's last datagram was sent by webrtc-rs.
    last_sent: Option<Instant>,
    /// Resends of this flight so far (an index into [`RESENDS`]).
    flight_resends: usize,
    /// Resends over the socket's life.
    resends: u32,
    /// A handshake datagram arrived since our last one was sent: the next one we send
    /// begins a new flight.
    answered: bool,
    over: bool,
}

impl FlightKeeper {
    /// webrtc-rs sent `datagram` to `destination`; only handshake datagrams are kept.
    pub(crate) fn sent(&mut self, now: Instant, destination: SocketAddr, datagram: &[u8]) {
        if self.over || !is_dtls_handshake(datagram) {
            return;
        }
        let new_flight = std::mem::take(&mut self.answered)
            || self
                .last_sent
                .is_none_or(|last| now.saturating_duration_since(last) >= NEW_FLIGHT_AFTER);
        if new_flight {
            self.flight.clear();
            self.bytes = 0;
            self.flight_resends = 0;
        }
        self.last_sent = Some(now);
        if self.flight.len() < MAX_FLIGHT_DATAGRAMS
            && self.bytes + datagram.len() <= MAX_FLIGHT_BYTES
        {
            self.bytes += datagram.len();
            self.flight.push((destination, datagram.to_vec()));
        }
    }

    /// A datagram arrived from the peer.
    pub(crate) fn received(&mut self, datagram: &[u8]) {
        if shows_handshake_over(datagram) {
            self.end();
        } else if is_dtls_handshake(datagram) {
            self.answered = true;
        }
    }

    /// The handshake is over (or the resends are spent): nothing more will be resent.
    pub(crate) fn is_over(&self) -> bool {
        self.over
    }

    fn end(&mut self) {
        self.over = true;
        self.flight = Vec::new();
        self.bytes = 0;
    }

    /// What is due at `now`. A returned resend counts as done.
    pub(crate) fn poll(&mut self, now: Instant) -> FlightDue {
        if self.over {
            return FlightDue::Over;
        }
        if self.resends >= MAX_RESENDS {
            self.end();
            return FlightDue::Over;
        }
        let (Some(last_sent), Some(after)) = (self.last_sent, RESENDS.get(self.flight_resends))
        else {
            return FlightDue::Idle;
        };
        if self.flight.is_empty() {
            return FlightDue::Idle;
        }
        let due = last_sent + *after;
        if now < due {
            return FlightDue::At(due);
        }
        self.flight_resends += 1;
        self.resends += 1;
        FlightDue::Resend(self.flight.clone())
    }
}

/// The default runtime, with [`RedundantHandshake`] sockets.
#[derive(Debug)]
pub(crate) struct HandshakeRuntime {
    inner: Arc<dyn Runtime>,
}

impl HandshakeRuntime {
    /// `None` when webrtc-rs finds no runtime (never under tokio).
    pub(crate) fn shared() -> Option<Arc<dyn Runtime>> {
        Some(Arc::new(Self {
            inner: webrtc::runtime::default_runtime()?,
        }))
    }
}

impl Runtime for HandshakeRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.inner.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let shared = Arc::new(Shared {
            inner: self.inner.wrap_udp_socket(socket)?,
            keeper: Mutex::new(FlightKeeper::default()),
            kept: Notify::new(),
            over: AtomicBool::new(false),
        });
        let resender = self
            .inner
            .spawn(Box::pin(resend_flights(Arc::clone(&shared))));
        Ok(Arc::new(RedundantHandshake { shared, resender }))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

/// What a [`RedundantHandshake`] socket and its resend task share.
#[derive(Debug)]
struct Shared {
    inner: Arc<dyn AsyncUdpSocket>,
    keeper: Mutex<FlightKeeper>,
    /// Woken when a flight is kept.
    kept: Notify,
    /// The keeper is done (the handshake is over, or its resends are spent): received
    /// media no longer takes the keeper's lock.
    over: AtomicBool,
}

impl Shared {
    fn keeper(&self) -> std::sync::MutexGuard<'_, FlightKeeper> {
        self.keeper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Sends the kept flight again when due, until the keeper says the handshake is over.
/// Aborted when its socket is dropped.
async fn resend_flights(shared: Arc<Shared>) {
    loop {
        let due = shared.keeper().poll(Instant::now());
        match due {
            FlightDue::Over => {
                shared.over.store(true, Ordering::Relaxed);
                return;
            }
            FlightDue::Idle => shared.kept.notified().await,
            FlightDue::At(at) => {
                // A new flight may move the time earlier only by being sent, which
                // restarts the schedule later: sleeping to `at` never misses a resend.
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = shared.kept.notified() => {}
                }
            }
            FlightDue::Resend(datagrams) => {
                for (destination, datagram) in &datagrams {
                    for _ in 0..2 {
                        // Best effort, as for the first copies: an error here is webrtc-rs's
                        // to see on its own next send.
                        let _ = shared.inner.send_to(datagram, *destination).await;
                    }
                }
            }
        }
    }
}

/// A socket that sends DTLS handshake datagrams twice and its last flight again early
/// (see the module's documentation).
struct RedundantHandshake {
    shared: Arc<Shared>,
    /// The [`resend_flights`] task.
    resender: Box<dyn JoinHandle>,
}

impl Debug for RedundantHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedundantHandshake")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Drop for RedundantHandshake {
    fn drop(&mut self) {
        self.resender.abort();
    }
}

impl AsyncUdpSocket for RedundantHandshake {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        let inner = &self.shared.inner;
        let sent = inner.poll_send(cx, transmit);
        if matches!(sent, Poll::Ready(Ok(_)))
            && transmit.segment_size.is_none()
            && is_dtls_handshake(transmit.contents)
        {
            // Best effort: a copy the socket cannot take now is not waited for.
            let _ = inner.poll_send(cx, transmit);
            self.shared
                .keeper()
                .sent(Instant::now(), transmit.destination, transmit.contents);
            self.shared.kept.notify_one();
        }
        sent
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let received = self.shared.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(count)) = received
            && !self.shared.over.load(Ordering::Relaxed)
        {
            let mut keeper = self.shared.keeper();
            for (buf, meta) in bufs.iter().zip(meta.iter()).take(count) {
                keeper.received(&buf[..meta.len.min(buf.len())]);
            }
            if keeper.is_over() {
                self.shared.over.store(true, Ordering::Relaxed);
            }
        }
        received
    }

    fn max_gso_segments(&self) -> usize {
        self.shared.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.shared.inner.max_gro_segments()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_handshake_and_change_cipher_spec_records_are_repeated() {
        assert!(is_dtls_handshake(&[22, 254, 253]));
        assert!(is_dtls_handshake(&[20, 254, 253]));
        // Application data (SCTP), alerts, SRTP/SRTCP (128..=191), STUN (0..=3).
        for first in [23u8, 21, 128, 0, 1] {
            assert!(!is_dtls_handshake(&[first, 0]), "{first}");
        }
        assert!(!is_dtls_handshake(&[]));
    }

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    #[test]
    fn a_flight_is_sent_again_on_the_schedule_then_left_to_webrtc_rs() {
        let start = Instant::now();
        let mut keeper = FlightKeeper::default();
        assert_eq!(keeper.poll(start), FlightDue::Idle);
        // Not handshake: not kept.
        keeper.sent(start, addr(), &[128, 0]);
        keeper.sent(start, addr(), &[23, 0]);
        assert_eq!(keeper.poll(start), FlightDue::Idle);
        keeper.sent(start, addr(), &[22, 1]);
        keeper.sent(start + Duration::from_millis(1), addr(), &[22, 2]);
        let last = start + Duration::from_millis(1);
        let flight = vec![(addr(), vec![22, 1]), (addr(), vec![22, 2])];
        for after in RESENDS {
            assert_eq!(keeper.poll(last), FlightDue::At(last + after));
            assert_eq!(keeper.poll(last + after), FlightDue::Resend(flight.clone()));
        }
        assert_eq!(keeper.poll(last + Duration::from_secs(5)), FlightDue::Idle);
        // webrtc-rs's own retransmission, a second later, is a new flight.
        let again = start + Duration::from_secs(1);
        keeper.sent(again, addr(), &[22, 3]);
        assert_eq!(keeper.poll(again), FlightDue::At(again + RESENDS[0]));
        assert_eq!(
            keeper.poll(again + RESENDS[0]),
            FlightDue::Resend(vec![(addr(), vec![22, 3])])
        );
    }

    #[test]
    fn what_we_send_after_the_peers_answer_is_a_new_flight() {
        let start = Instant::now();
        let mut keeper = FlightKeeper::default();
        keeper.sent(start, addr(), &[22, 1]);
        // The peer answers within a millisecond (a short path) ...
        keeper.received(&[22, 9]);
        let next = start + Duration::from_millis(2);
        keeper.sent(next, addr(), &[22, 2]);
        keeper.sent(next, addr(), &[20, 3]);
        // ... so only what we sent after it is resent.
        assert_eq!(
            keeper.poll(next + RESENDS[0]),
            FlightDue::Resend(vec![(addr(), vec![22, 2]), (addr(), vec![20, 3])])
        );
    }

    #[test]
    fn the_peers_media_or_data_ends_the_resends() {
        for over in [[128u8, 0], [23, 0], [191, 0]] {
            let start = Instant::now();
            let mut keeper = FlightKeeper::default();
            keeper.sent(start, addr(), &[22, 1]);
            // STUN, TURN channel data and the peer's own handshake change nothing.
            for other in [[0u8, 1], [1, 1], [64, 0], [22, 0], [20, 0]] {
                keeper.received(&other);
            }
            assert_eq!(keeper.poll(start), FlightDue::At(start + RESENDS[0]));
            assert!(!keeper.is_over());
            keeper.received(&over);
            assert!(keeper.is_over());
            assert_eq!(keeper.poll(start + RESENDS[0]), FlightDue::Over, "{over:?}");
            keeper.sent(start + Duration::from_secs(1), addr(), &[22, 2]);
            assert_eq!(keeper.poll(start + Duration::from_secs(2)), FlightDue::Over);
        }
    }

    #[test]
    fn resends_are_bounded_over_the_sockets_life_and_a_flight_in_size() {
        let start = Instant::now();
        let mut keeper = FlightKeeper::default();
        let mut resends = 0;
        for flight in 0..100u32 {
            let at = start + Duration::from_secs(flight.into());
            keeper.sent(at, addr(), &[22, 0]);
            for after in RESENDS {
                if let FlightDue::Resend(_) = keeper.poll(at + after) {
                    resends += 1;
                }
            }
        }
        assert_eq!(resends, MAX_RESENDS);
        assert_eq!(
            keeper.poll(start + Duration::from_secs(200)),
            FlightDue::Over
        );

        let mut keeper = FlightKeeper::default();
        let big = [22u8; 1500];
        for _ in 0..40 {
            keeper.sent(start, addr(), &big);
        }
        let FlightDue::Resend(flight) = keeper.poll(start + RESENDS[0]) else {
            panic!("a resend is due");
        };
        assert_eq!(flight.len(), MAX_FLIGHT_DATAGRAMS);
        assert!(flight.iter().map(|(_, d)| d.len()).sum::<usize>() <= MAX_FLIGHT_BYTES);
    }

    /// Receives datagrams until `done` says so, for `within` at most.
    async fn collect(
        receiver: &tokio::net::UdpSocket,
        got: &mut Vec<Vec<u8>>,
        within: Duration,
        done: impl Fn(&[Vec<u8>]) -> bool,
    ) {
        let mut buf = [0u8; 16];
        let deadline = tokio::time::Instant::now() + within;
        while !done(got) {
            match tokio::time::timeout_at(deadline, receiver.recv(&mut buf)).await {
                Ok(Ok(n)) => got.push(buf[..n].to_vec()),
                _ => break,
            }
        }
    }

    /// A socket wrapped by [`HandshakeRuntime`], a plain one for its peer, and the peer's
    /// address.
    async fn wrapped_and_peer() -> (Arc<dyn AsyncUdpSocket>, tokio::net::UdpSocket, SocketAddr) {
        let runtime = HandshakeRuntime::shared().expect("runtime");
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let to = peer.local_addr().expect("addr");
        let socket = runtime
            .wrap_udp_socket(std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .expect("wrap");
        (socket, peer, to)
    }

    #[tokio::test]
    async fn a_handshake_datagram_arrives_twice_and_again_until_the_peers_media() {
        let (socket, peer, to) = wrapped_and_peer().await;
        socket.send_to(&[22, 1, 2], to).await.expect("send");
        socket.send_to(&[128, 1, 2], to).await.expect("send");
        // Twice at once, then twice at each of the three resends; media once.
        let expected = 2 + 2 * RESENDS.len();
        let mut got = Vec::new();
        collect(&peer, &mut got, Duration::from_secs(10), |got| {
            got.len() > expected
        })
        .await;
        let handshake = got.iter().filter(|d| **d == [22, 1, 2]).count();
        let media = got.iter().filter(|d| **d == [128, 1, 2]).count();
        assert_eq!((handshake, media), (expected, 1), "{got:?}");

        // The peer's media arrives: the handshake is over, a later flight goes out twice
        // and is not sent again.
        peer.send_to(&[128, 7], socket.local_addr().expect("addr"))
            .await
            .expect("send");
        let mut buf = [0u8; 16];
        socket.recv_from(&mut buf).await.expect("recv");
        socket.send_to(&[22, 3], to).await.expect("send");
        // Past the last resend's time: nothing more comes.
        let mut got = Vec::new();
        collect(&peer, &mut got, Duration::from_millis(1500), |_| false).await;
        assert_eq!(got, vec![vec![22, 3], vec![22, 3]]);
    }

    #[tokio::test]
    async fn the_resend_task_ends_with_its_socket() {
        let (socket, peer, to) = wrapped_and_peer().await;
        socket.send_to(&[22, 1], to).await.expect("send");
        drop(socket);
        // Past the last resend's time: nothing more comes.
        let mut got = Vec::new();
        collect(&peer, &mut got, Duration::from_millis(1500), |_| false).await;
        assert_eq!(got, vec![vec![22, 1], vec![22, 1]]);
    }
}
