//! What one address can do to the server with real sockets, staying within every message
//! limit: stop reading, send half an HTTP request and wait, open connection after
//! connection, send frames the protocol has no use for. Each must cost the server a
//! bounded amount, be cleaned up, and leave everyone else served.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chingu_proto::{ClientMessage, ErrorCode};
use chingu_testkit::{Frame as Message, TestClient, http_get_from};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long these tests wait for something that should happen in well under a second.
const PATIENCE: Duration = Duration::from_secs(15);

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// Whether the server closes `stream` (EOF or reset) within `within`; anything it sends
/// first is read and discarded.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// A TCP connection from `source` that sends the start of a WebSocket request and stops.
async fn half_request(server: SocketAddr, source: IpAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source, 0)).expect("bind");
    let mut stream = socket.connect(server).await.expect("connect");
    stream
        .write_all(b"GET /v1/ws HTTP/1.1\r\nHost: chingu\r\nUpgrade: websocket\r\n")
        .await
        .expect("write");
    stream
}

/// Waits until the metric reads `value`; panics with what it read last. (Reading
/// `chingu_connections` counts the request that reads it.)
async fn metric_becomes(server: &common::TestServer, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = server.metric(name).await;
        if now == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} stayed at {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_and_counted_out() {
    let server = common::start_with(|c| {
        c.rate_limit_per_s = 1_000_000;
        c.rate_limit_burst = 1_000_000;
        c.address_rate_limit_per_s = 1_000_000;
        c.address_rate_limit_burst = 1_000_000;
        c.write_timeout_ms = 500;
    })
    .await;
    // It sends garbage whose error replies pile up, and never reads one of them.
    let mut greedy = TestClient::hello(&server.url, "greedy").await.unwrap();
    let garbage = r#"{"type":"teleport"}"#;
    let mut sent = 0;
    let started = std::time::Instant::now();
    while sent < 1_000_000 {
        if greedy.send_raw(garbage).await.is_err() {
            break; // the server closed it
        }
        sent += 1;
        if sent % 1_000 == 0 && server.metric("chingu_connections").await == 1.0 {
            break;
        }
    }
    eprintln!("flood of {sent} stopped after {:?}", started.elapsed());
    metric_becomes(&server, "chingu_connections", 1.0).await;
    eprintln!("counted out after {:?}", started.elapsed());
    let dropped = server.metric("chingu_slow_clients_dropped_total").await
        + server.metric("chingu_write_timeouts_total").await;
    assert!(
        dropped >= 1.0,
        "dropped as a slow reader ({sent} messages sent)"
    );
    // And its socket is really closed: reading what was queued ends in a close, not in
    // a connection held open (and uncounted) until the client gives up.
    greedy
        .expect_close()
        .await
        .expect("the server closed the socket");
    // Its slot is free again: another connection from the address is served.
    let mut next = TestClient::hello(&server.url, "next").await.unwrap();
    next.join(&["ko"], &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_limited_per_address_and_time_out() {
    let server = common::start_with(|c| {
        c.max_connections_per_ip = 4;
        c.request_timeout_ms = 400;
    })
    .await;
    let addr = server.server.local_addr();
    let attacker = ip("127.0.0.1");
    // The address's four connections, then its refusal budget, then nothing.
    let mut held = Vec::new();
    for _ in 0..4 + 4 {
        held.push(half_request(addr, attacker).await);
    }
    let mut extra = half_request(addr, attacker).await;
    assert!(
        closed_by_server(&mut extra, Duration::from_secs(2)).await,
        "beyond its limits an address's connection is closed at once"
    );
    // Meanwhile another address is served.
    let (status, body) = http_get_from(addr, ip("127.0.0.2"), "/healthz")
        .await
        .expect("health from another address");
    assert_eq!((status, body.trim()), (200, "ok"));
    let mut other = TestClient::connect_from(&server.url, ip("127.0.0.3"))
        .await
        .unwrap()
        .say_hello("other")
        .await
        .unwrap();
    other.join(&["ko"], &[]).await.unwrap();
    // The half-sent requests are closed when their time is up.
    for (i, stream) in held.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream, PATIENCE).await,
            "half-sent request {i} is closed"
        );
    }
    assert!(server.metric("chingu_http_timeouts_total").await >= 4.0);
    assert!(
        server
            .metric("chingu_connections_refused_total{reason=\"silently\"}")
            .await
            >= 1.0
    );
    metric_becomes(&server, "chingu_connections", 2.0).await;
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let server = common::start().await;
    let mut stream = TcpStream::connect(server.server.local_addr())
        .await
        .unwrap();
    let header = format!(
        "GET /healthz HTTP/1.1\r\nHost: chingu\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(40_000)
    );
    // The server may stop reading (and close) before all of it is written.
    let _ = stream.write_all(header.as_bytes()).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "no 200 for a 40 KB head: {text:.80}"
    );
}

#[tokio::test]
async fn every_kind_of_frame_counts_toward_the_rate_limit() {
    let server = common::start().await;
    let mut c = TestClient::hello(&server.url, "binary").await.unwrap();
    // Binary frames are a protocol error, and they count: after 1,000 dropped, the
    // connection is closed as flooding.
    for _ in 0..1_200 {
        if c.send_frame(Message::Binary(vec![0; 16].into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let close = c.expect_close().await.unwrap();
    assert_eq!(
        close.map(|f| u16::from(f.code)),
        Some(1008),
        "closed as flooding"
    );
    assert!(server.metric("chingu_rate_limited_total").await >= 1_000.0);
    // Pings count too.
    let mut p = TestClient::hello(&server.url, "pinger").await.unwrap();
    for _ in 0..200 {
        p.send_frame(Message::Ping(vec![1].into())).await.unwrap();
    }
    p.expect_error(ErrorCode::RateLimited).await.unwrap();
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = common::start().await;
    let mut c = TestClient::hello(&server.url, "bytes").await.unwrap();
    let frame = Frame::message(vec![0x7b, 0xff, 0xfe, 0x7d], OpCode::Data(Data::Text), true);
    c.send_frame(Message::Frame(frame)).await.unwrap();
    let close = c.expect_close().await.unwrap();
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1007));
}

#[tokio::test]
async fn a_field_less_message_with_fields_is_an_invalid_field() {
    let server = common::start().await;
    let mut c = TestClient::hello(&server.url, "fields").await.unwrap();
    c.send_raw(r#"{"type":"leave_queue","x":1}"#).await.unwrap();
    c.expect_error(ErrorCode::InvalidField).await.unwrap();
    c.send(&ClientMessage::LeaveQueue).await.unwrap();
    assert!(matches!(
        c.recv().await.unwrap(),
        chingu_proto::ServerMessage::LeftQueue
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_within_the_grace_period_whatever_clients_do() {
    let server = common::start_with(|c| {
        c.shutdown_grace_ms = 300;
        c.request_timeout_ms = 60_000;
        c.write_timeout_ms = 60_000;
    })
    .await;
    let addr = server.server.local_addr();
    let _half = half_request(addr, ip("127.0.0.1")).await;
    // A WebSocket client that never reads: its goodbye cannot be delivered.
    let _deaf = TestClient::hello(&server.url, "deaf").await.unwrap();
    let started = tokio::time::Instant::now();
    server.server.shutdown();
    tokio::time::timeout(PATIENCE, server.server.stopped())
        .await
        .expect("the server stops even with clients that do not cooperate");
    eprintln!("stopped in {:?}", started.elapsed());
}

/// A TCP connection from `proxy` that opens with a PROXY v1 header naming `client`, then
/// the start of a WebSocket request.
async fn proxied_half_request(server: SocketAddr, proxy: IpAddr, client: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(proxy, 0)).expect("bind");
    let mut stream = socket.connect(server).await.expect("connect");
    let header = format!("PROXY TCP4 {client} 203.0.113.1 40000 443\r\n");
    stream.write_all(header.as_bytes()).await.expect("write");
    stream
        .write_all(b"GET /v1/ws HTTP/1.1\r\nHost: chingu\r\nUpgrade: websocket\r\n")
        .await
        .expect("write");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_limits_apply_to_the_client_it_names() {
    let server = common::start_with(|c| {
        c.max_connections_per_ip = 2;
        c.trusted_proxies = vec![ip("127.0.0.9")];
    })
    .await;
    let addr = server.server.local_addr();
    let proxy = ip("127.0.0.9");
    // Two clients behind the proxy get two connections each: more than the proxy's
    // address alone would be allowed.
    let mut held = Vec::new();
    for client in ["198.51.100.1", "198.51.100.2"] {
        for _ in 0..2 {
            held.push(proxied_half_request(addr, proxy, client).await);
        }
    }
    metric_becomes(&server, "chingu_connections", 4.0 + 1.0).await;
    // The first client's third is over its limit (told so, or closed once its refusal
    // budget is spent); the others stay open.
    let mut third = proxied_half_request(addr, proxy, "198.51.100.1").await;
    third
        .write_all(b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: Upgrade\r\n\r\n")
        .await
        .expect("write");
    assert!(
        closed_by_server(&mut third, PATIENCE).await,
        "over the client's limit"
    );
    for stream in &mut held {
        assert!(!closed_by_server(stream, Duration::from_millis(100)).await);
    }
    // A proxied connection without a header, or with a bad one, is closed unanswered;
    // an untrusted address's PROXY line is just a bad request.
    for first in [
        &b"GET /healthz HTTP/1.1\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3.4 nonsense\r\n",
    ] {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(proxy, 0)).expect("bind");
        let mut stream = socket.connect(addr).await.expect("connect");
        stream.write_all(first).await.expect("write");
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut reply)).await;
        assert!(
            reply.is_empty(),
            "closed without an answer: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    let (status, _) = http_get_from(addr, ip("127.0.0.1"), "/healthz")
        .await
        .expect("health");
    assert_eq!(status, 200, "a direct client still speaks plain HTTP");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            b"PROXY TCP4 198.51.100.3 203.0.113.1 40000 443\r\nGET /healthz HTTP/1.1\r\n\r\n",
        )
        .await
        .expect("write");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut reply)).await;
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 400"),
        "an untrusted client cannot name another address: {}",
        String::from_utf8_lossy(&reply)
    );
}
