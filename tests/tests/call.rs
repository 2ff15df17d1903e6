//! Real calls: chingu-server and engines in one process on loopback, synthetic media.

mod common;

use std::time::Duration;

use chingu_engine::{CallView, Command, EndReason, EngineEvent};
use chingu_media::tone::dominant_tone;
use chingu_proto::PeerLeftReason;
use common::{ClientOptions, client, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_carries_video_audio_and_chat_both_ways_then_hangs_up() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let mut a = client(
        &url,
        "alice",
        ClientOptions {
            tone_hz: 440.0,
            width: 640,
            height: 480,
            ..Default::default()
        },
    );
    let mut b = client(
        &url,
        "bob",
        ClientOptions {
            tone_hz: 880.0,
            width: 640,
            height: 480,
            ..Default::default()
        },
    );
    a.search().await;
    b.search().await;
    assert_eq!(a.in_call().await, "bob");
    assert_eq!(b.in_call().await, "alice");

    // Chat both ways (the control channel may open just after media).
    let deadline = tokio::time::Instant::now() + common::WAIT;
    loop {
        a.send(Command::SendChat("안녕하세요".into())).await;
        let got = tokio::time::timeout(Duration::from_millis(300), async {
            b.wait_for("chat", |e| match e {
                EngineEvent::Chat(t) => Some(t.clone()),
                _ => None,
            })
            .await
        })
        .await;
        if let Ok(text) = got {
            assert_eq!(text, "안녕하세요");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "chat never arrived");
    }
    b.send(Command::SendChat("hi alice".into())).await;
    let text = a
        .wait_for("chat", |e| match e {
            EngineEvent::Chat(t) => Some(t.clone()),
            _ => None,
        })
        .await;
    assert_eq!(text, "hi alice");

    // Ten seconds of call; then compare what was sent with what was decoded.
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Stats events queue up during the call; take the first one from after the wait.
    let recent = |e: &EngineEvent| match e {
        EngineEvent::Stats(s) if s.elapsed_ms >= 10_000 => Some(s.as_ref().clone()),
        _ => None,
    };
    let stats_a = a.wait_for("stats", recent).await;
    let stats_b = b.wait_for("stats", recent).await;
    for (name, sent, seen) in [
        ("alice->bob", stats_a.outbound_video.frames_sent, &b.seen),
        ("bob->alice", stats_b.outbound_video.frames_sent, &a.seen),
    ] {
        let seen = seen.lock().expect("probe");
        let frames = &seen.frames;
        assert!(
            sent >= 250,
            "{name}: only {sent} frames sent in 10+ s at 30 fps"
        );
        assert!(
            frames.windows(2).all(|w| w[1] > w[0]),
            "{name}: frame numbers out of order"
        );
        // Frames sent up to the stats snapshot must have been decoded (a few more may be
        // in flight, so compare against the decoded count at least).
        let decoded_upto = frames.iter().filter(|&&n| u64::from(n) < sent).count() as u64;
        assert!(
            decoded_upto * 100 >= sent * 95,
            "{name}: {decoded_upto} of {sent} frames decoded"
        );
        let tones = [440.0, 880.0];
        let heard = dominant_tone(&seen.audio, &tones);
        let expected = if name == "alice->bob" { 440.0 } else { 880.0 };
        assert_eq!(heard, Some(expected), "{name}: tone");
        eprintln!(
            "{name}: sent {sent}, decoded {decoded_upto}, latency p50 {} ms",
            {
                let mut l = seen.latencies_us.clone();
                l.sort_unstable();
                l.get(l.len() / 2).copied().unwrap_or(0) / 1000
            }
        );
    }
    assert!(stats_a.inbound_audio.packets_received > 400);
    assert!(stats_b.inbound_audio.packets_received > 400);

    a.send(Command::HangUp).await;
    assert_eq!(a.ended().await, EndReason::HungUp);
    assert_eq!(
        b.ended().await,
        EndReason::PeerLeft {
            reason: PeerLeftReason::HungUp
        }
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_rematches_with_whoever_is_waiting() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let auto = || ClientOptions {
        auto_search: true,
        ..Default::default()
    };
    let mut a = client(&url, "alice", auto());
    let mut b = client(&url, "bob", auto());
    a.search().await;
    b.search().await;
    assert_eq!(a.in_call().await, "bob");
    assert_eq!(b.in_call().await, "alice");
    let mut c = client(&url, "carol", auto());
    c.search().await;
    c.wait_state("searching", |s| *s == CallView::Searching)
        .await;

    a.send(Command::Next).await;
    // Alice meets Carol, who was waiting; Bob is told and searches again by himself.
    assert_eq!(a.in_call().await, "carol");
    assert_eq!(c.in_call().await, "alice");
    b.wait_state("searching again", |s| *s == CallView::Searching)
        .await;
    let mut d = client(&url, "dave", auto());
    d.search().await;
    assert_eq!(b.in_call().await, "dave");
    assert_eq!(d.in_call().await, "bob");
    for client in [a, b, c, d] {
        client.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_vanishes_ends_the_call_within_five_seconds() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let mut a = client(&url, "alice", ClientOptions::default());
    let mut b = client(&url, "bob", ClientOptions::default());
    a.search().await;
    b.search().await;
    a.in_call().await;
    b.in_call().await;
    // Bob's app dies: no hang-up, no close.
    b.task.abort();
    drop(b);
    let started = tokio::time::Instant::now();
    let reason = a.ended().await;
    let took = started.elapsed();
    assert!(
        matches!(reason, chingu_engine::EndReason::PeerLeft { .. }),
        "{reason}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_camera_the_call_sends_the_test_pattern_and_says_so() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let mut a = client(
        &url,
        "alice",
        ClientOptions {
            // An id no machine has: opening fails even where cameras exist.
            video: Some(chingu_engine::pipeline::VideoSource::Camera {
                id: Some("no-such-camera-0xc0ffee".into()),
                request: chingu_media::camera::CameraRequest::VGA,
            }),
            camera_fallback: true,
            ..Default::default()
        },
    );
    let mut b = client(&url, "bob", ClientOptions::default());
    a.search().await;
    b.search().await;
    a.in_call().await;
    b.in_call().await;
    let message = a
        .wait_for("camera notice", |e| match e {
            EngineEvent::DeviceError { device, message }
                if *device == chingu_engine::pipeline::Device::Camera =>
            {
                Some(message.clone())
            }
            _ => None,
        })
        .await;
    assert!(message.contains("test pattern"), "{message}");
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while b.frames_seen() < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob never saw alice's fallback video"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
    b.stop().await;
}
