//! Calls through the network simulator (`chingu_cli::netsim`): two engines and a server
//! in this process, peer A's packets crossing a simulated link. These assert behaviours
//! with generous bounds (the figures are in docs/benchmarks.md, from `cargo xtask bench`):
//! congestion control brings the estimate under a capped uplink and the encoder follows
//! it down the ladder, audio keeps flowing while video congests, a call recovers after
//! its link steps down and up, lost packets are retransmitted over RTX, on a far, lossy
//! path repairs still keep the picture going, and a talker's pauses go as DTX.

use std::time::Duration;

use chingu_cli::bench::{BenchResult, run};
use chingu_cli::netsim::Scenario;

async fn call(scenario: &str, seconds: u64) -> BenchResult {
    let scenario: Scenario = scenario.parse().expect("scenario");
    let mut results = run(&[(640, 480)], Duration::from_secs(seconds), &[scenario])
        .await
        .expect("the call connects and is measured");
    let result = results.pop().expect("one result");
    eprintln!("{}", serde_json::to_string(&result).expect("json"));
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_capped_uplink_the_estimate_and_the_encoder_come_down_and_audio_flows() {
    // 400 kbit/s up; the sender's ceiling is 1 Mbit/s of video at 640x480.
    let r = call("up.rate=400k,seed=3", 12).await;
    let up = &r.up;
    let estimate = up.estimate_kbps.expect("the sender has an estimate");
    assert!(
        estimate < 600.0,
        "the estimate stayed far above a 400 kbit/s link: {estimate} kbit/s"
    );
    assert!(
        up.frame_width < 640,
        "the encoder did not step down the ladder: {}x{}",
        up.frame_width,
        up.frame_height
    );
    assert!(
        up.frames_decoded * 2 >= up.frames_sent,
        "most frames must get through a capped link: {} of {}",
        up.frames_decoded,
        up.frames_sent
    );
    // Audio is never starved by video: nearly all of it is played, not concealed.
    assert!(
        up.audio_concealed_pct < 25.0,
        "audio starved under video congestion: {} % concealed",
        up.audio_concealed_pct
    );
    // The other direction is not capped and not affected.
    assert!(r.down.frames_decoded * 10 >= r.down.frames_sent * 9);
    let link = r.link.expect("link counts");
    assert_eq!(link.overflow, 0, "the simulator itself fell behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_recovers_after_its_uplink_steps_down_and_back_up() {
    let r = call("up.rate=2M;300k@4s;2M@8s,seed=5", 14).await;
    let up = &r.up;
    assert!(
        up.frames_decoded * 10 >= up.frames_sent * 6,
        "video must keep going through the step: {} of {} decoded",
        up.frames_decoded,
        up.frames_sent
    );
    // Back up: the estimate left the step's level.
    let estimate = up.estimate_kbps.expect("estimate");
    assert!(
        estimate > 300.0,
        "the estimate did not climb after the link recovered: {estimate}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_packets_are_retransmitted_and_video_keeps_its_rate_under_random_loss() {
    let r = call("loss=5%,seed=7", 10).await;
    let up = &r.up;
    assert!(up.nack_count > 0, "no NACK under 5 % loss");
    // Repairs travel over RTX, on their own SSRC (RFC 4588), and arrive as such.
    for (direction, d) in [("up", up), ("down", &r.down)] {
        assert!(
            d.retransmitted_packets_sent > 0 && d.retransmitted_packets_received > 0,
            "{direction}: no retransmission over RTX: {} sent, {} received",
            d.retransmitted_packets_sent,
            d.retransmitted_packets_received
        );
    }
    assert!(
        up.frames_decoded * 10 >= up.frames_sent * 9,
        "retransmission must repair most of 5 % loss: {} of {}",
        up.frames_decoded,
        up.frames_sent
    );
    // Random loss without a queue is not congestion: the estimate does not collapse.
    let estimate = up.estimate_kbps.expect("estimate");
    assert!(
        estimate >= 400.0,
        "random loss cut the estimate to {estimate}"
    );
    let link = r.link.expect("link counts");
    assert!(link.up.lost > 0 && link.down.lost > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_far_lossy_path_repairs_keep_most_frames() {
    // 200 ms round trip, 10 % loss each way: the receiver asks again every 25 ms while a
    // repair is on its way; answering each request overran the repair budget and frames
    // were given up (here: 2–2.3 repairs sent per packet the link lost, 45–80 % of frames
    // decoded; since a packet is resent at most once per round trip: 0.7–0.8 and
    // 89–100 %).
    let r = call("delay=100ms,loss=10%,seed=2", 10).await;
    let link = r.link.expect("link counts");
    for (direction, d, lost) in [
        ("up", &r.up, link.up.lost),
        ("down", &r.down, link.down.lost),
    ] {
        assert!(lost > 0, "{direction}: the link lost nothing");
        assert!(
            d.retransmitted_packets_received > 0,
            "{direction}: nothing repaired"
        );
        assert!(
            d.retransmitted_packets_sent * 2 <= lost * 3,
            "{direction}: a repair per request, not per round trip: {} resent for {lost} lost",
            d.retransmitted_packets_sent
        );
        assert!(
            d.frames_decoded * 10 >= d.frames_sent * 7,
            "{direction}: repairs must save most frames of a far, lossy path: {} of {}",
            d.frames_decoded,
            d.frames_sent
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_y4m_file_is_sent_and_each_picture_measured_against_its_frame() {
    // 45 frames of the moving pattern at 320x240, 15 fps, as a .y4m file.
    let mut pattern = chingu_media::pattern::TestPattern::new();
    let frames: Vec<chingu_media::I420Frame> = (0..45u64)
        .map(|i| {
            let mut f = chingu_media::I420Frame::new(320, 240).expect("frame");
            pattern.draw(&mut f, i * 66_000);
            f
        })
        .collect();
    let path = std::env::temp_dir().join(format!("chingu-bench-{}.y4m", std::process::id()));
    let mut bytes = Vec::new();
    chingu_media::y4m::write(&mut bytes, &frames, 15).expect("y4m");
    std::fs::write(&path, bytes).expect("write");
    // Neighbouring frames of the pattern differ (motion): a picture compared with the
    // wrong frame scores far below what the call must reach.
    let neighbours = chingu_media::y4m::psnr_y(&frames[0], &frames[1], 0).expect("same size");
    assert!(neighbours < 18.0, "{neighbours}");
    let sources = chingu_cli::bench::Sources {
        video_file: Some(&path),
        talk: false,
    };
    let results = chingu_cli::bench::run_with(&[], Duration::from_secs(4), &[], sources)
        .await
        .expect("the call connects and is measured");
    let _ = std::fs::remove_file(&path);
    let r = &results[0];
    eprintln!("{}", serde_json::to_string(r).expect("json"));
    assert_eq!(r.size, "320x240", "the file's size is what is sent");
    for (direction, d) in [("up", &r.up), ("down", &r.down)] {
        assert!(
            d.frames_decoded > 20,
            "{direction}: {} decoded",
            d.frames_decoded
        );
        let psnr = d
            .psnr_y_db
            .expect("every picture is compared with its frame");
        // H.264 keeps the (hard to code) pattern at ~28–29 dB here; a picture from the
        // wrong frame, or a corrupted one, scores far lower.
        assert!(psnr > 23.0, "{direction}: Y-PSNR {psnr:.1} dB");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_talkspurts_dtx_sends_little_through_the_silences_and_they_are_not_concealed() {
    // Both tones a second on, a second off, through 10 % loss each way (audio in RED
    // with copies, which must not reach across a silence's gap).
    let scenario: Scenario = "loss=10%,seed=4".parse().expect("scenario");
    let sources = chingu_cli::bench::Sources {
        video_file: None,
        talk: true,
    };
    let results =
        chingu_cli::bench::run_with(&[(320, 240)], Duration::from_secs(10), &[scenario], sources)
            .await
            .expect("the call connects and is measured");
    let r = &results[0];
    eprintln!("{}", serde_json::to_string(r).expect("json"));
    for (direction, d) in [("up", &r.up), ("down", &r.down)] {
        // Half the time is a pause; the encoder goes DTX 0.4–0.6 s into each (17–24 %
        // of the time in the bench).
        assert!(
            d.audio_comfort_noise_pct > 10.0,
            "{direction}: the pauses were not sent as DTX: {} % comfort noise",
            d.audio_comfort_noise_pct
        );
        assert!(
            d.audio_concealed_pct < 5.0,
            "{direction}: a pause or its gaps taken for loss: {} % concealed",
            d.audio_concealed_pct
        );
        // A 20 ms frame a packet: 50 a second without DTX.
        assert!(
            d.audio_packets_per_s < 46.0,
            "{direction}: {} audio packets a second for half the time talking",
            d.audio_packets_per_s
        );
    }
}
