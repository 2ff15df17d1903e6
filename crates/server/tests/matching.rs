//! Pairing, preferences, cooldown, blocks and relay over real WebSockets.

mod common;

use chingu_proto::{ClientMessage, ErrorCode, PeerLeftReason, Role, ServerMessage, Signal};
use chingu_testkit::{TestClient, http_get, matched_pair};

#[tokio::test]
async fn health_and_metrics_answer() {
    let server = common::start().await;
    let (status, body) = http_get(server.server.local_addr(), "/healthz")
        .await
        .unwrap();
    assert_eq!((status, body.trim()), (200, "ok"));
    for name in [
        "chingu_connected_clients",
        "chingu_queue_waiting",
        "chingu_matches_total",
        "chingu_calls_active",
        "chingu_protocol_errors_total",
    ] {
        assert_eq!(server.metric(name).await, 0.0, "{name} starts at zero");
    }
}

#[tokio::test]
async fn two_clients_are_matched_and_relay_offer_answer_and_candidates() {
    let server = common::start().await;
    let mut alice = TestClient::hello(&server.url, "alice").await.unwrap();
    let mut bob = TestClient::hello(&server.url, "bob").await.unwrap();
    alice
        .join(&["ko", "en"], &["music", "films"])
        .await
        .unwrap();
    bob.join(&["en"], &["films"]).await.unwrap();
    let a = alice.expect_matched().await.unwrap();
    let b = bob.expect_matched().await.unwrap();
    assert_eq!(a.call_id, b.call_id);
    assert_eq!(
        (a.role, b.role),
        (Role::Offerer, Role::Answerer),
        "the one who waited offers"
    );
    assert_eq!(a.peer.nickname, "bob");
    assert_eq!(b.peer.nickname, "alice");
    assert_eq!(a.peer.shared_interests, vec!["films".to_string()]);
    assert_eq!(b.peer.languages, vec!["ko".to_string(), "en".to_string()]);

    let call_id = a.call_id.clone();
    let offer = Signal::Offer {
        sdp: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n".into(),
    };
    alice
        .send(&ClientMessage::Signal {
            call_id: call_id.clone(),
            signal: offer.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        bob.recv().await.unwrap(),
        ServerMessage::Signal {
            call_id: call_id.clone(),
            signal: offer
        }
    );
    let answer = Signal::Answer {
        sdp: "v=0\r\n".into(),
    };
    let candidate = Signal::Candidate {
        candidate: "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
    };
    for signal in [answer, candidate, Signal::EndOfCandidates] {
        bob.send(&ClientMessage::Signal {
            call_id: call_id.clone(),
            signal: signal.clone(),
        })
        .await
        .unwrap();
        assert_eq!(
            alice.recv().await.unwrap(),
            ServerMessage::Signal {
                call_id: call_id.clone(),
                signal
            }
        );
    }
    assert_eq!(server.metric("chingu_matches_total").await, 1.0);
    assert_eq!(server.metric("chingu_calls_active").await, 1.0);
    assert_eq!(server.metric("chingu_connected_clients").await, 2.0);
}

#[tokio::test]
async fn a_shared_language_is_preferred_over_a_longer_wait() {
    let server = common::start().await;
    let mut en = TestClient::hello(&server.url, "english").await.unwrap();
    en.join(&["en"], &["music"]).await.unwrap();
    let mut ko1 = TestClient::hello(&server.url, "korean1").await.unwrap();
    ko1.join(&["ko"], &["music"]).await.unwrap();
    let mut ko2 = TestClient::hello(&server.url, "korean2").await.unwrap();
    ko2.join(&["ko"], &["music"]).await.unwrap();
    assert_eq!(ko1.expect_matched().await.unwrap().peer.nickname, "korean2");
    ko2.expect_matched().await.unwrap();
    assert!(
        en.sync().await.unwrap().is_empty(),
        "the English speaker keeps waiting"
    );
    assert_eq!(server.metric("chingu_queue_waiting").await, 1.0);
}

#[tokio::test]
async fn next_tells_the_peer_and_the_pair_does_not_meet_again_at_once() {
    let server = common::start().await;
    let (mut a, mut b, call) = matched_pair(&server.url).await.unwrap();

    b.send(&ClientMessage::Next {
        call_id: call.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        b.recv().await.unwrap(),
        ServerMessage::Queued,
        "next requeues the presser"
    );
    assert_eq!(
        a.recv().await.unwrap(),
        ServerMessage::PeerLeft {
            call_id: call,
            reason: PeerLeftReason::Next
        }
    );
    a.join(&["ko"], &[]).await.unwrap();
    assert!(
        a.sync().await.unwrap().is_empty() && b.sync().await.unwrap().is_empty(),
        "cooldown: no rematch"
    );
    assert_eq!(server.metric("chingu_queue_waiting").await, 2.0);

    let mut c = TestClient::hello(&server.url, "c").await.unwrap();
    c.join(&["ko"], &[]).await.unwrap();
    assert_eq!(
        c.expect_matched().await.unwrap().peer.nickname,
        "b",
        "b has waited longest"
    );
}

#[tokio::test]
async fn hang_up_tells_the_peer_and_both_go_idle() {
    let server = common::start().await;
    let (mut a, mut b, call) = matched_pair(&server.url).await.unwrap();
    a.send(&ClientMessage::HangUp {
        call_id: call.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        b.recv().await.unwrap(),
        ServerMessage::PeerLeft {
            call_id: call.clone(),
            reason: PeerLeftReason::HungUp
        }
    );
    a.send(&ClientMessage::Signal {
        call_id: call,
        signal: Signal::EndOfCandidates,
    })
    .await
    .unwrap();
    a.expect_error(ErrorCode::NotInCall).await.unwrap();
    assert_eq!(server.metric("chingu_calls_active").await, 0.0);
}

#[tokio::test]
async fn a_client_cannot_signal_into_someone_elses_call() {
    let server = common::start().await;
    let mut clients = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let mut client = TestClient::hello(&server.url, name).await.unwrap();
        client.join(&["ko"], &[]).await.unwrap();
        clients.push(client);
    }
    let mut calls = Vec::new();
    for client in &mut clients {
        calls.push(client.expect_matched().await.unwrap().call_id);
    }
    assert_eq!(calls[0], calls[1]);
    assert_eq!(calls[2], calls[3]);
    assert_ne!(calls[0], calls[2]);
    // c names a/b's call.
    let offer = Signal::Offer {
        sdp: "v=0\r\n".into(),
    };
    clients[2]
        .send(&ClientMessage::Signal {
            call_id: calls[0].clone(),
            signal: offer.clone(),
        })
        .await
        .unwrap();
    clients[2].expect_error(ErrorCode::NotInCall).await.unwrap();
    for (i, client) in clients.iter_mut().enumerate() {
        assert!(
            client.sync().await.unwrap().is_empty(),
            "client {i} must receive nothing"
        );
    }
    // Unknown and well-formed call ids alike are refused.
    clients[0]
        .send(&ClientMessage::Next {
            call_id: chingu_proto::CallId("nope".into()),
        })
        .await
        .unwrap();
    clients[0].expect_error(ErrorCode::NotInCall).await.unwrap();
}

#[tokio::test]
async fn a_disconnect_ends_the_call_for_the_peer_at_once() {
    let server = common::start().await;
    let (a, mut b, call) = matched_pair(&server.url).await.unwrap();
    drop(a); // the TCP connection closes without a WebSocket close
    assert_eq!(
        b.recv().await.unwrap(),
        ServerMessage::PeerLeft {
            call_id: call,
            reason: PeerLeftReason::Disconnected
        }
    );
}

#[tokio::test]
async fn a_client_that_goes_silent_is_detected_by_heartbeat() {
    let server = common::start_with(|c| c.heartbeat_interval_ms = 250).await;
    let (a, mut b, call) = matched_pair(&server.url).await.unwrap();
    // `a` keeps its socket open but never reads again, so it answers no pings.
    let _silent = a;
    loop {
        match b.recv().await.unwrap() {
            ServerMessage::PeerLeft { call_id, reason } => {
                assert_eq!(
                    (call_id, reason),
                    (call.clone(), PeerLeftReason::Disconnected)
                );
                break;
            }
            ServerMessage::Matched { .. } => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(server.metric("chingu_heartbeat_timeouts_total").await, 1.0);
}

#[tokio::test]
async fn reports_and_blocks_are_acknowledged_and_blocks_are_enforced() {
    let server = common::start_with(|c| c.cooldown_s = 0).await;
    let (mut a, mut b, call) = matched_pair(&server.url).await.unwrap();
    a.send(&ClientMessage::Report {
        call_id: call.clone(),
        reason: chingu_proto::ReportReason::Spam,
        note: Some("ads".into()),
    })
    .await
    .unwrap();
    assert_eq!(
        a.recv().await.unwrap(),
        ServerMessage::Reported {
            call_id: call.clone()
        }
    );
    a.send(&ClientMessage::Block {
        call_id: call.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        b.recv().await.unwrap(),
        ServerMessage::PeerLeft {
            call_id: call.clone(),
            reason: PeerLeftReason::HungUp
        }
    );
    assert_eq!(
        a.recv().await.unwrap(),
        ServerMessage::Blocked { call_id: call }
    );
    a.join(&["ko"], &[]).await.unwrap();
    b.join(&["ko"], &[]).await.unwrap();
    assert!(
        a.sync().await.unwrap().is_empty(),
        "blocked: no match even with no cooldown"
    );
    assert_eq!(server.metric("chingu_queue_waiting").await, 2.0);

    let unknown = chingu_proto::CallId("0123".into());
    a.send(&ClientMessage::Block { call_id: unknown })
        .await
        .unwrap();
    a.expect_error(ErrorCode::UnknownCall).await.unwrap();
}

#[tokio::test]
async fn blocks_survive_a_restart() {
    let server = common::start_with(|c| c.cooldown_s = 0).await;
    let (mut a, b, call) = matched_pair(&server.url).await.unwrap();
    a.send(&ClientMessage::Block {
        call_id: call.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        a.recv().await.unwrap(),
        ServerMessage::Blocked { call_id: call }
    );
    drop((a, b));
    let dir = server.stop().await;

    let mut config = common::config(&dir);
    config.cooldown_s = 0;
    let server = common::start_in(dir, config).await;
    let mut a = TestClient::hello(&server.url, "a").await.unwrap();
    let mut b = TestClient::hello(&server.url, "b").await.unwrap();
    a.join(&["ko"], &[]).await.unwrap();
    b.join(&["ko"], &[]).await.unwrap();
    assert!(a.sync().await.unwrap().is_empty(), "the block was restored");
    let mut c = TestClient::hello(&server.url, "c").await.unwrap();
    c.join(&["ko"], &[]).await.unwrap();
    assert_eq!(
        c.expect_matched().await.unwrap().peer.nickname,
        "a",
        "others still match"
    );
}

#[tokio::test]
async fn shutdown_tells_every_client() {
    let server = common::start().await;
    let mut a = TestClient::hello(&server.url, "a").await.unwrap();
    server.server.shutdown();
    assert_eq!(
        a.recv().await.unwrap(),
        ServerMessage::ShuttingDown {
            retry_after_ms: 1000
        }
    );
    let frame = a.expect_close().await.unwrap().expect("a close frame");
    assert_eq!(u16::from(frame.code), 1001, "going away");
    server.server.stopped().await;
}

#[tokio::test]
async fn a_device_whose_network_changed_resumes_its_call_on_a_new_connection() {
    let server = common::start_with(|c| c.call_resume_grace_ms = 10_000).await;
    let (a, mut b, call) = matched_pair(&server.url).await.unwrap();
    // The network changed under `a`: its old connection is still open as far as the
    // server knows (silent, not closed) when the device comes back on a new one. (The
    // grace after a heartbeat timeout is the hub's unit tests' business.)
    let _lingering = a;
    // Same device ("a"), new connection: the call is still there.
    let mut a2 = TestClient::hello(&server.url, "a").await.unwrap();
    a2.send(&ClientMessage::ResumeCall {
        call_id: call.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        a2.recv().await.unwrap(),
        ServerMessage::CallResumed {
            call_id: call.clone()
        }
    );
    b.send(&ClientMessage::Signal {
        call_id: call.clone(),
        signal: chingu_proto::Signal::IceRestart,
    })
    .await
    .unwrap();
    assert_eq!(
        a2.recv().await.unwrap(),
        ServerMessage::Signal {
            call_id: call.clone(),
            signal: chingu_proto::Signal::IceRestart
        },
        "signals reach the new connection"
    );
    a2.send(&ClientMessage::HangUp {
        call_id: call.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        b.recv().await.unwrap(),
        ServerMessage::PeerLeft {
            call_id: call,
            reason: PeerLeftReason::HungUp
        }
    );
}

#[tokio::test]
async fn fresh_turn_credentials_arrive_before_the_old_ones_expire() {
    let server = common::start_with(|c| {
        c.turn_urls = vec!["turn:127.0.0.1:3478?transport=udp".into()];
        c.turn_secret = Some("secret".into());
        c.turn_ttl_s = 2;
    })
    .await;
    let mut client = TestClient::connect(&server.url).await.unwrap();
    client
        .send(&ClientMessage::Hello {
            protocol_version: chingu_proto::PROTOCOL_VERSION,
            client_version: "test".into(),
            device_id: "refresh-device-0001".into(),
        })
        .await
        .unwrap();
    let expiry = |servers: &[chingu_proto::IceServer]| -> u64 {
        let username = servers[0].username.as_deref().expect("TURN username");
        username.split(':').next().unwrap().parse().expect("expiry")
    };
    let ServerMessage::Welcome { ice_servers, .. } = client.recv().await.unwrap() else {
        panic!("welcome first");
    };
    let first = expiry(&ice_servers);
    // Every second (half of the 2 s lifetime), later ones.
    let mut last = first;
    for _ in 0..2 {
        match client.recv().await.unwrap() {
            ServerMessage::IceServers { ice_servers } => {
                let next = expiry(&ice_servers);
                assert!(next >= last, "{next} after {last}");
                last = next;
            }
            other => panic!("expected ice_servers, got {other:?}"),
        }
    }
    assert!(
        last > first,
        "the credentials were renewed: {first} -> {last}"
    );
}
