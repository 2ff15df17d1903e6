//! Every class of bad input gets an error with a code; abuse on one connection does not
//! hold up others.

mod common;

use chingu_proto::{ClientMessage, ErrorCode, ServerMessage, limits};
use chingu_testkit::Frame as Message;
use chingu_testkit::TestClient;

#[tokio::test]
async fn each_kind_of_garbage_gets_its_code_and_the_connection_survives() {
    let server = common::start().await;
    let mut c = TestClient::hello(&server.url, "garbage").await.unwrap();
    let cases: Vec<(String, ErrorCode)> = vec![
        ("not json at all".into(), ErrorCode::Malformed),
        ("[1,2]".into(), ErrorCode::Malformed),
        ("{\"type\":\"teleport\"}".into(), ErrorCode::UnknownType),
        ("{\"type\":\"ping\",\"nonce\":\"seven\"}".into(), ErrorCode::InvalidField),
        ("{\"type\":\"join_queue\",\"nickname\":\"x\",\"languages\":[\"!!\"]}".into(), ErrorCode::InvalidField),
        (format!("{{\"type\":\"ping\",\"nonce\":1,\"pad\":\"{}\"}}", "x".repeat(limits::MAX_MESSAGE_BYTES)), ErrorCode::TooLarge),
        ("{\"type\":\"hello\",\"protocol_version\":1,\"client_version\":\"x\",\"device_id\":\"0123456789abcdef\"}".into(), ErrorCode::AlreadyHello),
    ];
    for (text, code) in &cases {
        c.send_raw(text).await.unwrap();
        c.expect_error(*code)
            .await
            .unwrap_or_else(|e| panic!("{text:.60}: {e}"));
    }
    c.send_frame(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    c.expect_error(ErrorCode::Malformed).await.unwrap();
    c.join(&["ko"], &[])
        .await
        .expect("still usable after all that");
    assert_eq!(
        server.metric("chingu_protocol_errors_total").await,
        cases.len() as f64 + 1.0
    );
}

#[tokio::test]
async fn the_first_message_must_be_hello() {
    let server = common::start().await;
    let mut c = TestClient::connect(&server.url).await.unwrap();
    c.send(&ClientMessage::LeaveQueue).await.unwrap();
    c.expect_error(ErrorCode::HelloRequired).await.unwrap();
    c.send_raw("{").await.unwrap();
    c.expect_error(ErrorCode::Malformed).await.unwrap();
    c.send(&ClientMessage::Hello {
        protocol_version: 1,
        client_version: "t".into(),
        device_id: "bad id!".into(),
    })
    .await
    .unwrap();
    c.expect_error(ErrorCode::InvalidField).await.unwrap();
    c.send(&ClientMessage::Hello {
        protocol_version: 1,
        client_version: "t".into(),
        device_id: "0123456789abcdef".into(),
    })
    .await
    .unwrap();
    assert!(matches!(
        c.recv().await.unwrap(),
        ServerMessage::Welcome {
            protocol_version: 1,
            ..
        }
    ));
}

#[tokio::test]
async fn an_unsupported_version_is_refused_and_closed() {
    let server = common::start().await;
    let mut c = TestClient::connect(&server.url).await.unwrap();
    c.send(&ClientMessage::Hello {
        protocol_version: 999,
        client_version: "future".into(),
        device_id: "0123456789abcdef".into(),
    })
    .await
    .unwrap();
    let message = c.expect_error(ErrorCode::UnsupportedVersion).await.unwrap();
    assert!(
        message.contains("version 1"),
        "says which version it speaks: {message}"
    );
    let frame = c.expect_close().await.unwrap().expect("close frame");
    assert_eq!(u16::from(frame.code), 1008);
}

#[tokio::test]
async fn no_hello_in_time_is_closed() {
    let server = common::start_with(|c| c.hello_timeout_ms = 200).await;
    let mut c = TestClient::connect(&server.url).await.unwrap();
    c.expect_error(ErrorCode::HelloRequired).await.unwrap();
    c.expect_close().await.unwrap();
}

#[tokio::test]
async fn a_frame_over_the_transport_limit_closes_with_too_large() {
    let server = common::start().await;
    let mut c = TestClient::hello(&server.url, "big").await.unwrap();
    c.send_raw(&"x".repeat(400 * 1024)).await.unwrap();
    c.expect_error(ErrorCode::TooLarge).await.unwrap();
    let frame = c.expect_close().await.unwrap();
    if let Some(frame) = frame {
        assert_eq!(u16::from(frame.code), 1009, "message too big");
    }
}

#[tokio::test]
async fn the_rate_limit_drops_excess_messages_with_an_error() {
    let server = common::start_with(|c| {
        c.rate_limit_per_s = 5;
        c.rate_limit_burst = 10;
    })
    .await;
    let mut c = TestClient::hello(&server.url, "chatty").await.unwrap();
    for nonce in 0..40 {
        c.send(&ClientMessage::Ping { nonce }).await.unwrap();
    }
    // hello took one token of the burst of 10; a few may refill while sending.
    let (mut pongs, mut limited) = (0, 0);
    while pongs < 9 || limited == 0 {
        match c.recv().await.unwrap() {
            ServerMessage::Pong { .. } => pongs += 1,
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            } => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // After a second the bucket has refilled: the next ping is answered, and the
    // messages before it show no second error for the same burst.
    for msg in c.sync().await.unwrap() {
        match msg {
            ServerMessage::Pong { .. } => pongs += 1,
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            } => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        pongs < 20,
        "most of the 40 pings were dropped, {pongs} answered"
    );
    assert_eq!(
        limited, 1,
        "one error per second, not one per dropped message"
    );
    assert!(server.metric("chingu_rate_limited_total").await >= 20.0);
}

#[tokio::test]
async fn connections_per_address_are_limited() {
    let server = common::start_with(|c| c.max_connections_per_ip = 2).await;
    let _a = TestClient::hello(&server.url, "one").await.unwrap();
    let _b = TestClient::hello(&server.url, "two").await.unwrap();
    let mut c = TestClient::connect(&server.url).await.unwrap();
    c.expect_error(ErrorCode::TooManyConnections).await.unwrap();
    c.expect_close().await.unwrap();
    drop(_a);
    // The slot is returned when a connection ends.
    let mut tries = 0;
    loop {
        tries += 1;
        match TestClient::hello(&server.url, "three").await {
            Ok(_) => break,
            Err(_) if tries < 50 => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            Err(e) => panic!("the slot never came back: {e}"),
        }
    }
}

#[tokio::test]
async fn a_flood_of_garbage_does_not_hold_up_other_clients() {
    let server = common::start().await;
    let mut flooder = TestClient::hello(&server.url, "flooder").await.unwrap();
    let url = server.url.clone();
    // The flooder writes as fast as it can and never reads.
    let flood = tokio::spawn(async move {
        for i in 0..20_000 {
            let junk = if i % 2 == 0 {
                "{\"type\":\"ping\""
            } else {
                "{\"type\":\"join_queue\",\"nickname\":\"\"}"
            };
            if flooder.send_raw(junk).await.is_err() {
                return i;
            }
        }
        20_000
    });
    let mut a = TestClient::hello(&url, "a").await.unwrap();
    let mut b = TestClient::hello(&url, "b").await.unwrap();
    a.join(&["ko"], &[]).await.unwrap();
    b.join(&["ko"], &[]).await.unwrap();
    let call = a.expect_matched().await.unwrap().call_id;
    b.expect_matched().await.unwrap();
    let signal = chingu_proto::Signal::Offer {
        sdp: "v=0\r\n".into(),
    };
    for _ in 0..20 {
        a.send(&ClientMessage::Signal {
            call_id: call.clone(),
            signal: signal.clone(),
        })
        .await
        .unwrap();
        assert!(matches!(
            b.recv().await.unwrap(),
            ServerMessage::Signal { .. }
        ));
    }
    let sent = flood.await.unwrap();
    assert!(sent > 1000, "the flood really happened: {sent} messages");
    assert!(server.metric("chingu_rate_limited_total").await > 0.0);
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_and_its_peer_told() {
    let server = common::start_with(|c| {
        c.rate_limit_per_s = 100_000;
        c.rate_limit_burst = 100_000;
    })
    .await;
    let mut reader = TestClient::hello(&server.url, "reader").await.unwrap();
    let mut sleeper = TestClient::hello(&server.url, "sleeper").await.unwrap();
    reader.join(&["ko"], &[]).await.unwrap();
    sleeper.join(&["ko"], &[]).await.unwrap();
    let call = reader.expect_matched().await.unwrap().call_id;
    // The sleeper stops reading; the reader sends it far more than socket buffers hold.
    let sdp = "a".repeat(limits::MAX_SDP_BYTES - 100);
    let signal = chingu_proto::Signal::Offer { sdp };
    let mut sent = 0;
    let left = loop {
        reader
            .send(&ClientMessage::Signal {
                call_id: call.clone(),
                signal: signal.clone(),
            })
            .await
            .unwrap();
        sent += 1;
        if sent % 50 == 0 {
            let replies = reader.sync().await.unwrap();
            if let Some(msg) = replies
                .into_iter()
                .find(|m| matches!(m, ServerMessage::PeerLeft { .. }))
            {
                break msg;
            }
        }
        assert!(sent < 20_000, "the sleeper was never dropped");
    };
    assert!(matches!(
        left,
        ServerMessage::PeerLeft {
            reason: chingu_proto::PeerLeftReason::Disconnected,
            ..
        }
    ));
    assert_eq!(
        server.metric("chingu_slow_clients_dropped_total").await,
        1.0
    );
    drop(sleeper);
}
