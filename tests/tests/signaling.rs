//! The engine's signaling client against a real chingu-server: handshake, messages both
//! ways, and reconnecting by itself after the server restarts.

use std::time::Duration;

use chingu_engine::signaling::{SignalingClient, SignalingConfig, SignalingError, SignalingEvent};
use chingu_proto::{ClientMessage, ServerMessage};
use chingu_server::{Config, RunningServer};

async fn start_server(listen: std::net::SocketAddr, dir: &std::path::Path) -> RunningServer {
    chingu_server::start(Config {
        listen,
        data_dir: dir.to_owned(),
        ..Config::default()
    })
    .await
    .expect("server starts")
}

fn client(url: String) -> SignalingClient {
    SignalingClient::start(SignalingConfig {
        url,
        device_id: "engine-test-device-0001".into(),
        client_version: "tests".into(),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
    })
}

/// The next event that is not an online count, with a deadline against hangs.
async fn next(client: &mut SignalingClient) -> SignalingEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), client.next_event())
            .await
            .expect("an event within the wait")
            .expect("the client is running");
        if !matches!(
            event,
            SignalingEvent::Message(ServerMessage::OnlineCount { .. })
        ) {
            return event;
        }
    }
}

#[tokio::test]
async fn connects_talks_and_reconnects_after_a_server_restart() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = start_server("127.0.0.1:0".parse().expect("addr"), dir.path()).await;
    let addr = server.local_addr();
    let mut client = client(server.ws_url());

    let SignalingEvent::Connected { session_id, .. } = next(&mut client).await else {
        panic!("expected connected");
    };
    assert!(client.is_connected());
    client
        .send(ClientMessage::Ping { nonce: 5 })
        .await
        .expect("send while connected");
    assert_eq!(
        next(&mut client).await,
        SignalingEvent::Message(ServerMessage::Pong { nonce: 5 })
    );

    server.shutdown();
    server.stopped().await;
    assert!(matches!(
        next(&mut client).await,
        SignalingEvent::Message(ServerMessage::ShuttingDown { .. })
    ));
    assert!(matches!(
        next(&mut client).await,
        SignalingEvent::Disconnected { .. }
    ));
    assert_eq!(
        client.send(ClientMessage::LeaveQueue).await,
        Err(SignalingError::NotConnected),
        "no silent queueing while disconnected"
    );

    // The server comes back on the same address; the client finds it on its own.
    let server = start_server(addr, dir.path()).await;
    let reconnected = loop {
        match next(&mut client).await {
            SignalingEvent::Disconnected { .. } => continue, // attempts before it was up
            SignalingEvent::Connected { session_id, .. } => break session_id,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_ne!(reconnected, session_id, "a new session after reconnecting");
    client
        .send(ClientMessage::Ping { nonce: 6 })
        .await
        .expect("send");
    assert_eq!(
        next(&mut client).await,
        SignalingEvent::Message(ServerMessage::Pong { nonce: 6 })
    );
    client.stop().await;
    server.shutdown();
    server.stopped().await;
}

#[tokio::test]
async fn an_unreachable_server_is_retried_with_growing_delays() {
    // Bind and drop a listener to get a port with nothing behind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut client = client(format!("ws://127.0.0.1:{port}/v1/ws"));
    let mut delays = Vec::new();
    while delays.len() < 4 {
        match next(&mut client).await {
            SignalingEvent::Disconnected { retry_in, why } => {
                assert!(why.contains("connect"), "says why: {why}");
                delays.push(retry_in);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(delays[3] > delays[0], "backoff grows: {delays:?}");
    assert!(
        delays.iter().all(|d| *d <= Duration::from_millis(400)),
        "capped: {delays:?}"
    );
    client.stop().await;
}

/// The settings' "test connection": a Chingu server, nothing listening, something that
/// is not a Chingu server, and a mistyped address each get their own answer.
#[tokio::test]
async fn a_server_address_is_probed_for_what_it_leads_to() {
    use chingu_engine::signaling::{ServerProbe, probe};
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = start_server("127.0.0.1:0".parse().unwrap(), dir.path()).await;
    let wait = Duration::from_secs(5);
    let device = "probe-device-0123456789";
    assert_eq!(
        probe(&server.ws_url(), device, wait).await,
        ServerProbe::Reachable
    );
    // Nothing listens on a port that was just freed.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    assert!(matches!(
        probe(&format!("ws://127.0.0.1:{port}/v1/ws"), device, wait).await,
        ServerProbe::Unreachable { .. }
    ));
    // A web server that is not Chingu's.
    let web = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web_addr = web.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = web.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let answer = probe(&format!("ws://{web_addr}/v1/ws"), device, wait).await;
    assert!(
        matches!(&answer, ServerProbe::Refused { message } if message.contains("404")),
        "{answer:?}"
    );
    assert_eq!(
        probe("http://example.invalid", device, wait).await,
        ServerProbe::BadUrl
    );
    // A Chingu server of another protocol version: it answers hello with
    // `unsupported_version` and closes.
    let old = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let old_addr = old.local_addr().unwrap();
    tokio::spawn(async move {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        if let Ok((stream, _)) = old.accept().await
            && let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await
        {
            let _hello = ws.next().await;
            let refusal = chingu_proto::encode(&ServerMessage::error(
                chingu_proto::ErrorCode::UnsupportedVersion,
                "this server speaks protocol 2",
            ));
            let _ = ws.send(Message::Text(refusal.into())).await;
            let _ = ws.close(None).await;
        }
    });
    assert_eq!(
        probe(&format!("ws://{old_addr}/v1/ws"), device, wait).await,
        ServerProbe::VersionMismatch {
            message: "this server speaks protocol 2".into()
        }
    );
}
