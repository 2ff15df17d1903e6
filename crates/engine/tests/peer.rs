//! Two peers in one process on loopback, signaling passed by hand.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chingu_engine::packets::{self, EncodedAudio, RtpIn};
use chingu_engine::peer::{Peer, PeerEvent, PeerOptions};
use tokio::sync::mpsc;

fn options(name: &str) -> PeerOptions {
    PeerOptions {
        udp_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        track_prefix: name.into(),
        ..Default::default()
    }
}

struct Side {
    peer: Peer,
    events: mpsc::Receiver<PeerEvent>,
    /// Held so the video sink stays open; this test checks audio and text.
    _video: mpsc::Receiver<RtpIn>,
    audio: mpsc::Receiver<RtpIn>,
}

async fn side(name: &str, offerer: bool) -> Side {
    let (sinks, inbound) = packets::inbound();
    let (peer, events) = Peer::new(options(name), offerer, sinks)
        .await
        .expect("peer");
    Side {
        peer,
        events,
        _video: inbound.video,
        audio: inbound.audio,
    }
}

/// Relays candidates between the two until both report connected and the channel is open.
async fn connect(a: &mut Side, b: &mut Side) -> Duration {
    let start = Instant::now();
    let offer = a.peer.create_offer().await.unwrap();
    let answer = b.peer.accept_offer(offer).await.unwrap();
    a.peer.accept_answer(answer).await.unwrap();
    let (mut a_up, mut b_up, mut a_open) = (false, false, false);
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    while !(a_up && b_up && a_open) {
        tokio::select! {
            Some(e) = a.events.recv() => match e {
                PeerEvent::Candidate(c) => b.peer.add_candidate(c).await.unwrap(),
                PeerEvent::Connected => a_up = true,
                PeerEvent::ChannelOpen => a_open = true,
                PeerEvent::Failed(why) => panic!("a failed: {why}"),
                _ => {}
            },
            Some(e) = b.events.recv() => match e {
                PeerEvent::Candidate(c) => a.peer.add_candidate(c).await.unwrap(),
                PeerEvent::Connected => b_up = true,
                PeerEvent::Failed(why) => panic!("b failed: {why}"),
                _ => {}
            },
            () = &mut deadline => panic!("not connected in 10 s: a {a_up} b {b_up} open {a_open}"),
        }
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_connect_and_exchange_rtp_and_text() {
    let mut a = side("a", true).await;
    let mut b = side("b", false).await;
    let took = connect(&mut a, &mut b).await;
    eprintln!("connected and channel open in {took:?}");
    // Fake Opus packets (the transport does not look inside), through the queue the
    // media pipeline writes to.
    let (out, outbound) = packets::outbound();
    a.peer.send_media(outbound);
    for i in 0..5u8 {
        out.audio
            .send(EncodedAudio {
                data: Bytes::from(vec![0xF8, i]),
                duration: Duration::from_millis(20),
            })
            .await
            .unwrap();
    }
    let got = tokio::time::timeout(Duration::from_secs(5), b.audio.recv())
        .await
        .expect("audio in time")
        .expect("audio");
    assert_eq!(got.payload[0], 0xF8);
    a.peer.send_text("hello").await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), b.events.recv())
            .await
            .expect("text in time")
        {
            Some(PeerEvent::ChannelMessage(t)) => {
                assert_eq!(t, "hello");
                break;
            }
            Some(_) => continue,
            None => panic!("events ended"),
        }
    }
    a.peer.close().await;
    b.peer.close().await;
}

#[tokio::test]
async fn a_malformed_offer_is_a_clear_error() {
    let b = side("b", false).await;
    let err = b.peer.accept_offer("v=0\r\nthis is not sdp".into()).await;
    assert!(
        matches!(err, Err(chingu_engine::peer::PeerError::BadDescription(_))),
        "{err:?}"
    );
    b.peer.close().await;
}
