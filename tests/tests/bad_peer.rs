//! A hostile or broken peer: malformed SDP or candidates end the call with a clear reason,
//! never a panic or a hang. The bad peer speaks the protocol through the testkit client
//! and, where it needs a real description, through a bare `Peer`.

mod common;

use std::net::SocketAddr;

use chingu_engine::EndReason;
use chingu_engine::packets;
use chingu_engine::peer::{Peer, PeerOptions};
use chingu_proto::{ClientMessage, Role, ServerMessage, Signal};
use chingu_testkit::TestClient;
use common::{ClientOptions, client, server};

/// Sends `bad` in place of the description the engine waits for.
async fn garbage_description(bad: &str) -> EndReason {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let mut a = client(&url, "alice", ClientOptions::default());
    a.search().await;
    let mut mallory = TestClient::hello(&url, "mallory").await.unwrap();
    mallory.join(&["ko"], &[]).await.unwrap();
    let matched = mallory.expect_matched().await.unwrap();
    let signal = match matched.role {
        // Alice offers: answer with garbage.
        Role::Answerer => {
            let ServerMessage::Signal { signal, .. } = mallory.recv().await.unwrap() else {
                panic!("expected alice's offer")
            };
            assert!(matches!(signal, Signal::Offer { .. }));
            Signal::Answer { sdp: bad.into() }
        }
        Role::Offerer => Signal::Offer { sdp: bad.into() },
    };
    mallory
        .send(&ClientMessage::Signal {
            call_id: matched.call_id,
            signal,
        })
        .await
        .unwrap();
    let reason = a.ended().await;
    a.stop().await;
    reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_description_ends_the_call_with_a_reason() {
    for bad in [
        "this is not sdp",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
        "v=0\r\n\u{0}\u{ff}\r\n",
        // (An empty description never reaches the engine: the server rejects it.)
    ] {
        let reason = garbage_description(bad).await;
        assert!(
            matches!(&reason, EndReason::ConnectFailed { why } if why.contains("description")),
            "{bad:?} gave {reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_candidate_ends_the_call_with_a_reason() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let mut a = client(&url, "alice", ClientOptions::default());
    a.search().await;
    let mut mallory = TestClient::hello(&url, "mallory").await.unwrap();
    mallory.join(&["ko"], &[]).await.unwrap();
    let matched = mallory.expect_matched().await.unwrap();
    // Mallory has a real peer connection, so the descriptions are valid.
    let (sinks, _inbound) = packets::inbound();
    let (peer, _events) = Peer::new(
        PeerOptions {
            udp_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            track_prefix: "mallory".into(),
            ..PeerOptions::default()
        },
        matched.role == Role::Offerer,
        sinks,
    )
    .await
    .unwrap();
    let call_id = matched.call_id;
    let signal = |signal| ClientMessage::Signal {
        call_id: call_id.clone(),
        signal,
    };
    if matched.role == Role::Offerer {
        let sdp = peer.create_offer().await.unwrap();
        mallory.send(&signal(Signal::Offer { sdp })).await.unwrap();
        loop {
            if let ServerMessage::Signal {
                signal: Signal::Answer { sdp },
                ..
            } = mallory.recv().await.unwrap()
            {
                peer.accept_answer(sdp).await.unwrap();
                break;
            }
        }
    } else {
        loop {
            if let ServerMessage::Signal {
                signal: Signal::Offer { sdp },
                ..
            } = mallory.recv().await.unwrap()
            {
                let answer = peer.accept_offer(sdp).await.unwrap();
                mallory
                    .send(&signal(Signal::Answer { sdp: answer }))
                    .await
                    .unwrap();
                break;
            }
        }
    }
    mallory
        .send(&signal(Signal::Candidate {
            candidate: "candidate:1 1 udp banana 999.1.1.1 -5 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        }))
        .await
        .unwrap();
    let reason = a.ended().await;
    assert!(
        matches!(&reason, EndReason::ConnectFailed { why } if why.contains("candidate")),
        "{reason}"
    );
    peer.close().await;
    a.stop().await;
}
