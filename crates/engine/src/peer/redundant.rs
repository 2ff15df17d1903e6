//! DTLS handshake packets sent twice: a runtime for webrtc-rs that is its default one
//! except that each UDP socket it wraps sends every datagram holding a DTLS handshake
//! record (content type 22, or 20 for ChangeCipherSpec) a second time.
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

use std::fmt::Debug;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    Transmit,
};

/// Whether a datagram carries a DTLS handshake (or ChangeCipherSpec) record first.
pub(crate) fn is_dtls_handshake(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(20 | 22))
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
        Ok(Arc::new(RedundantHandshake {
            inner: self.inner.wrap_udp_socket(socket)?,
        }))
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

/// A socket that sends DTLS handshake datagrams twice.
#[derive(Debug)]
struct RedundantHandshake {
    inner: Arc<dyn AsyncUdpSocket>,
}

impl AsyncUdpSocket for RedundantHandshake {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        let sent = self.inner.poll_send(cx, transmit);
        if matches!(sent, Poll::Ready(Ok(_)))
            && transmit.segment_size.is_none()
            && is_dtls_handshake(transmit.contents)
        {
            // Best effort: a copy the socket cannot take now is not waited for.
            let _ = self.inner.poll_send(cx, transmit);
        }
        sent
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
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

    #[tokio::test]
    async fn a_handshake_datagram_arrives_twice_and_anything_else_once() {
        let runtime = HandshakeRuntime::shared().expect("runtime");
        let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let to = receiver.local_addr().expect("addr");
        let socket = runtime
            .wrap_udp_socket(std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .expect("wrap");
        socket.send_to(&[22, 1, 2], to).await.expect("send");
        socket.send_to(&[128, 1, 2], to).await.expect("send");
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), receiver.recv(&mut buf)).await
        {
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, vec![vec![22, 1, 2], vec![22, 1, 2], vec![128, 1, 2]]);
    }
}
