//! `chingu-cli bench`: its own chingu-server and two engines in this process, calling
//! each other over loopback with moving synthetic video, at each frame size. Latency comes
//! from the barcode every frame carries (frame number and capture time), read after
//! decoding; CPU from /proc for the whole process (both peers and the idle server).
//!
//! With `--net SCENARIO`, peer A's packets cross the network simulator ([`crate::netsim`]):
//! `up` is A to B (through the scenario's `up` link), `down` is B to A; each direction is
//! reported on its own.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chingu_engine::pipeline::{AudioOutput, AudioSource, MediaConfig, VideoSource};
use chingu_engine::stats::CallStats;
use chingu_engine::{CallView, Command, Engine, EngineEvent};
use chingu_media::opus_codec::FRAME_SAMPLES;
use tokio::sync::mpsc;

use crate::netsim::{NetSim, Scenario};
use crate::peer::{PeerSetup, Probe, Reference, bitrate_for, percentile_ms};

/// User plus system CPU seconds of this process, from /proc/self/stat.
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unexpected /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("short /proc/self/stat")?
            .parse::<f64>()?)
    };
    // USER_HZ is 100 on Linux for every architecture we build for.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

struct Side {
    engine: Engine,
    events: mpsc::Receiver<EngineEvent>,
    task: tokio::task::JoinHandle<()>,
    probe: Arc<Mutex<Probe>>,
    matched_at: Option<Instant>,
    connected_ms: Option<u64>,
    stats: Option<CallStats>,
}

#[allow(clippy::too_many_arguments)]
fn side(
    url: &str,
    name: &str,
    width: u32,
    height: u32,
    tone: f64,
    net: Option<&Arc<NetSim>>,
    sources: Sources<'_>,
) -> anyhow::Result<Side> {
    // Each side receives what the other sends: the same file.
    let video_file = sources.video_file;
    let reference = video_file.map(Reference::open).transpose()?;
    let probe = Arc::new(Mutex::new(Probe {
        reference,
        ..Probe::default()
    }));
    let setup = PeerSetup {
        server: url.to_owned(),
        nickname: name.to_owned(),
        languages: vec!["ko".into()],
        interests: vec![],
        udp_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        relay_only: false,
        net: None,
        device_id: None,
    };
    let media = MediaConfig {
        video: Some(match video_file {
            Some(path) => VideoSource::File(path.to_owned()),
            None => VideoSource::TestPattern {
                width,
                height,
                fps: 30,
            },
        }),
        audio: Some(if sources.talk {
            AudioSource::Talk { frequency_hz: tone }
        } else {
            AudioSource::Tone { frequency_hz: tone }
        }),
        output: AudioOutput::Discard,
        processing: Default::default(),
        video_bitrate_bps: bitrate_for(width, height),
        camera_fallback: false,
        remote_video: Some(Probe::sink(&probe)),
        local_preview: None,
        remote_audio: None,
    };
    let mut config = setup.engine_config("bench", media, false);
    config.peer.route = net.map(NetSim::route);
    let (engine, events, task) = Engine::start(config);
    Ok(Side {
        engine,
        events,
        task,
        probe,
        matched_at: None,
        connected_ms: None,
        stats: None,
    })
}

impl Side {
    fn handle(&mut self, event: EngineEvent) -> anyhow::Result<()> {
        match event {
            EngineEvent::State(CallView::Connecting { .. }) => {
                self.matched_at = Some(Instant::now())
            }
            EngineEvent::State(CallView::Ended { reason }) => bail!("the call ended: {reason}"),
            EngineEvent::MediaConnected { setup_ms } => self.connected_ms = Some(setup_ms),
            EngineEvent::Stats(s) => self.stats = Some(*s),
            _ => {}
        }
        Ok(())
    }
}

/// Runs one call at `width`x`height` for `duration` and measures it; with `net`, A's
/// packets cross the simulator, whose clock starts as the two join the queue.
pub async fn run_size(
    url: &str,
    width: u32,
    height: u32,
    duration: Duration,
    net: Option<&Scenario>,
    sources: Sources<'_>,
) -> anyhow::Result<BenchResult> {
    let sim = net.map(|s| NetSim::start(s.clone()));
    let mut a = side(url, "bench-a", width, height, 440.0, sim.as_ref(), sources)?;
    let mut b = side(url, "bench-b", width, height, 880.0, None, sources)?;
    for (s, name) in [(&a, "bench-a"), (&b, "bench-b")] {
        s.engine
            .send(Command::Search(chingu_engine::call_state::SearchPrefs {
                nickname: name.into(),
                languages: vec!["ko".into()],
                interests: vec![],
            }))
            .await?;
    }
    // Until both decode video, then the measured window.
    let setup_deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first = |s: &Side| s.probe.lock().ok().and_then(|p| p.first_frame);
    while first(&a).is_none() || first(&b).is_none() {
        tokio::select! {
            Some(e) = a.events.recv() => a.handle(e)?,
            Some(e) = b.events.recv() => b.handle(e)?,
            () = tokio::time::sleep_until(setup_deadline) => bail!("no video within 20 s"),
        }
    }
    // Counters at the start of the window: the first stats each side reports from now
    // on, so each direction's figures cover the window alone on both sides (the last
    // report from before could be seconds old on one side and not the other: the
    // sender's frames then counted over a longer time than the receiver's).
    a.stats = None;
    b.stats = None;
    let stats_deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while a.stats.is_none() || b.stats.is_none() {
        tokio::select! {
            Some(e) = a.events.recv() => a.handle(e)?,
            Some(e) = b.events.recv() => b.handle(e)?,
            () = tokio::time::sleep_until(stats_deadline) => bail!("no stats"),
        }
    }
    let window_start = Instant::now();
    let (base_a, base_b) = (
        a.stats.clone().unwrap_or_default(),
        b.stats.clone().unwrap_or_default(),
    );
    let cpu0 = cpu_seconds()?;
    let link0 = sim.as_ref().map(|s| s.counts());
    let end = tokio::time::Instant::now() + duration;
    loop {
        tokio::select! {
            Some(e) = a.events.recv() => a.handle(e)?,
            Some(e) = b.events.recv() => b.handle(e)?,
            () = tokio::time::sleep_until(end) => break,
        }
    }
    let window_end = Instant::now();
    let cpu = cpu_seconds()? - cpu0;
    let wall = window_start.elapsed().as_secs_f64();
    let link_kbps = sim.as_ref().zip(link0).map(|(s, before)| {
        let after = s.counts();
        let kbps = |a: u64, b: u64| a.saturating_sub(b) as f64 * 8.0 / wall.max(1e-3) / 1000.0;
        Carried {
            up: kbps(after.up.delivered_bytes, before.up.delivered_bytes),
            down: kbps(after.down.delivered_bytes, before.down.delivered_bytes),
        }
    });
    // One more stats round so the counters cover the window.
    let (mut sa, mut sb) = (None, None);
    let stats_deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while sa.is_none() || sb.is_none() {
        tokio::select! {
            Some(e) = a.events.recv() => if let EngineEvent::Stats(s) = e { sa = Some(*s) },
            Some(e) = b.events.recv() => if let EngineEvent::Stats(s) = e { sb = Some(*s) },
            () = tokio::time::sleep_until(stats_deadline) => bail!("no stats"),
        }
    }
    let (sa, sb) = (sa.context("stats a")?, sb.context("stats b")?);
    a.engine.send(Command::HangUp).await?;

    let setup_ms = [&a, &b]
        .iter()
        .filter_map(|s| Some(first(s)?.saturating_duration_since(s.matched_at?)))
        .max()
        .map_or(0, |d| d.as_millis() as u64);
    let connected_ms = a.connected_ms.max(b.connected_ms).unwrap_or(0);
    let mut latencies = Vec::new();
    let mut per_side = Vec::new();
    let mut psnr_per_side = Vec::new();
    let (mut out_of_order, mut misread) = (0, 0);
    let (mut still, mut settled_ms) = (Vec::new(), Vec::new());
    for (s, up) in [(&a, false), (&b, true)] {
        let p = s.probe.lock().map_err(|_| anyhow::anyhow!("probe"))?;
        still.push(p.longest_still(window_start, window_end));
        // After a drop in the rate of the way this side receives: when delay settled.
        let drop = sim.as_ref().and_then(|sim| sim.first_drop(up));
        settled_ms.push(
            drop.filter(|(at, _)| *at >= window_start && *at < window_end)
                .map(|(at, next)| {
                    let end = next.unwrap_or(window_end).min(window_end);
                    let settled = p.settled(at, end, SETTLED_UNDER, SETTLED_FOR);
                    (settled.unwrap_or(end) - at).as_secs_f64() * 1000.0
                }),
        );
        let settle = p.first_frame.map(|f| f + Duration::from_secs(1));
        let mut psnr = settled(&p.psnr, settle);
        psnr.sort_unstable_by(f64::total_cmp);
        psnr_per_side.push(psnr);
        let mut mine = settled(&p.latencies, settle);
        latencies.extend_from_slice(&mine);
        mine.sort_unstable();
        per_side.push(mine);
        out_of_order += p.out_of_order;
        misread += p.implausible;
    }
    latencies.sort_unstable();
    // B receives what A sends (up); A receives what B sends (down).
    let mut up = direction(&base_a, &sa, &base_b, &sb, &per_side[1], &psnr_per_side[1]);
    let mut down = direction(&base_b, &sb, &base_a, &sa, &per_side[0], &psnr_per_side[0]);
    up.longest_still_ms = Some(still[1].as_secs_f64() * 1000.0);
    down.longest_still_ms = Some(still[0].as_secs_f64() * 1000.0);
    (up.settled_after_drop_ms, down.settled_after_drop_ms) = (settled_ms[1], settled_ms[0]);
    let both = |f: fn(&CallStats) -> f64| f(&sa) + f(&sb);
    let frames_encoded = both(|s| s.outbound_video.frames_encoded as f64);
    let frames_decoded = both(|s| s.inbound_video.frames_decoded as f64);
    let elapsed_s = (sa.elapsed_ms.min(sb.elapsed_ms) as f64 / 1000.0).max(0.001);
    let result = BenchResult {
        size: format!("{width}x{height}"),
        fps: 30,
        duration_s: wall,
        connected_ms,
        setup_ms,
        capture_to_render_ms: Percentiles {
            p50: percentile_ms(&latencies, 50.0),
            p95: percentile_ms(&latencies, 95.0),
            p99: percentile_ms(&latencies, 99.0),
        },
        frames_sent: both(|s| s.outbound_video.frames_sent as f64) as u64,
        frames_decoded: frames_decoded as u64,
        frames_out_of_order: out_of_order,
        frames_misread: misread,
        frames_dropped: both(|s| s.inbound_video.frames_dropped as f64) as u64,
        nack_count: both(|s| f64::from(s.inbound_video.nack_count)) as u64,
        pli_count: both(|s| s.inbound_video.pli_count as f64) as u64,
        packets_lost: both(|s| s.inbound_video.packets_lost as f64) as i64,
        freeze_count: both(|s| s.inbound_video.freeze_count as f64) as u64,
        encode_ms_per_frame: both(|s| s.outbound_video.total_encode_time) * 1000.0
            / frames_encoded.max(1.0),
        decode_ms_per_frame: both(|s| s.inbound_video.total_decode_time) * 1000.0
            / frames_decoded.max(1.0),
        cpu_pct_one_core: cpu / wall * 100.0,
        kbps: both(|s| s.outbound_video.bytes_sent as f64) * 8.0 / 1000.0 / elapsed_s / 2.0,
        net: net.map(|s| s.name.clone()),
        up,
        down,
        link: sim.as_ref().map(|s| s.counts()),
        link_kbps,
    };
    for s in [a, b] {
        drop(s.engine);
        drop(s.events);
        let _ = tokio::time::timeout(Duration::from_secs(10), s.task).await;
    }
    Ok(result)
}

/// The values of `samples` seen from `settle` on (all of them without one).
fn settled<T: Copy>(samples: &[(Instant, T)], settle: Option<Instant>) -> Vec<T> {
    samples
        .iter()
        .filter(|(t, _)| settle.is_none_or(|s| *t >= s))
        .map(|&(_, v)| v)
        .collect()
}

/// One direction over the window: the sender's stats at its start and end, the
/// receiver's, and the receiver's sorted latencies (µs).
fn direction(
    sender0: &CallStats,
    sender: &CallStats,
    receiver0: &CallStats,
    receiver: &CallStats,
    latencies: &[u32],
    psnr_sorted: &[f64],
) -> DirectionResult {
    let window_s =
        (receiver.elapsed_ms.saturating_sub(receiver0.elapsed_ms) as f64 / 1000.0).max(0.001);
    let (rv, rv0) = (&receiver.inbound_video, &receiver0.inbound_video);
    let (ra, ra0) = (&receiver.inbound_audio, &receiver0.inbound_audio);
    let samples = ra
        .total_samples_received
        .saturating_sub(ra0.total_samples_received);
    let concealed = ra.concealed_samples.saturating_sub(ra0.concealed_samples);
    let comfort = ra
        .comfort_noise_samples
        .saturating_sub(ra0.comfort_noise_samples);
    let per_sample = 100.0 / samples.max(1) as f64;
    let pct = |part: f64| if samples > 0 { part * per_sample } else { 0.0 };
    let sender_s = (sender.elapsed_ms.saturating_sub(sender0.elapsed_ms) as f64 / 1e3).max(1e-3);
    let (audio, audio0) = (&sender.outbound_audio, &sender0.outbound_audio);
    let audio_bytes = audio.bytes_sent.saturating_sub(audio0.bytes_sent);
    let audio_packets = audio.packets_sent.saturating_sub(audio0.packets_sent);
    DirectionResult {
        capture_to_render_ms: Percentiles {
            p50: percentile_ms(latencies, 50.0),
            p95: percentile_ms(latencies, 95.0),
            p99: percentile_ms(latencies, 99.0),
        },
        // Over as long a time as the receiver's window: the two sides report stats at
        // their own moments, up to a second apart, and a sender's window a second longer
        // than the receiver's read as 8 % of frames lost.
        frames_sent: {
            let sent = sender
                .outbound_video
                .frames_sent
                .saturating_sub(sender0.outbound_video.frames_sent);
            let sender_window = sender.elapsed_ms.saturating_sub(sender0.elapsed_ms);
            let receiver_window = receiver.elapsed_ms.saturating_sub(receiver0.elapsed_ms);
            if sender_window == 0 {
                sent
            } else {
                (sent as f64 * receiver_window as f64 / sender_window as f64).round() as u64
            }
        },
        frames_decoded: rv.frames_decoded.saturating_sub(rv0.frames_decoded),
        freeze_count: rv.freeze_count.saturating_sub(rv0.freeze_count),
        total_freezes_duration: (rv.total_freezes_duration - rv0.total_freezes_duration).max(0.0),
        longest_still_ms: None,
        settled_after_drop_ms: None,
        video_kbps: rv.bytes_received.saturating_sub(rv0.bytes_received) as f64 * 8.0
            / 1000.0
            / window_s,
        estimate_kbps: sender.available_outgoing_bitrate.map(|b| b / 1000.0),
        frame_width: rv.frame_width,
        frame_height: rv.frame_height,
        audio_concealed_pct: pct(concealed as f64),
        audio_comfort_noise_pct: pct(comfort as f64),
        audio_kbps: audio_bytes as f64 * 8.0 / 1e3 / sender_s,
        audio_packets_per_s: audio_packets as f64 / sender_s,
        audio_discarded_pct: pct(
            ra.packets_discarded.saturating_sub(ra0.packets_discarded) as f64
                * FRAME_SAMPLES as f64,
        ),
        pli_count: rv.pli_count.saturating_sub(rv0.pli_count),
        frames_lost_unreferenced: rv
            .frames_lost_unreferenced
            .saturating_sub(rv0.frames_lost_unreferenced),
        frames_recovered: rv.frames_recovered.saturating_sub(rv0.frames_recovered),
        nack_count: rv.nack_count.saturating_sub(rv0.nack_count),
        retransmitted_packets_sent: sender
            .outbound_video
            .retransmitted_packets_sent
            .saturating_sub(sender0.outbound_video.retransmitted_packets_sent),
        retransmitted_packets_received: rv
            .retransmitted_packets_received
            .saturating_sub(rv0.retransmitted_packets_received),
        psnr_y_db: (!psnr_sorted.is_empty())
            .then(|| psnr_sorted.iter().sum::<f64>() / psnr_sorted.len() as f64),
        psnr_y_p10_db: psnr_sorted.get(psnr_sorted.len() / 10).copied(),
        inter_frame_delay_std_ms: {
            let n = rv
                .jitter_buffer_emitted_count
                .saturating_sub(rv0.jitter_buffer_emitted_count)
                .max(1) as f64;
            let mean = (rv.total_inter_frame_delay - rv0.total_inter_frame_delay) / n;
            let squares =
                (rv.total_squared_inter_frame_delay - rv0.total_squared_inter_frame_delay) / n;
            (squares - mean * mean).max(0.0).sqrt() * 1000.0
        },
        video_jitter_buffer_ms: (rv.jitter_buffer_delay - rv0.jitter_buffer_delay) * 1000.0
            / rv.jitter_buffer_emitted_count
                .saturating_sub(rv0.jitter_buffer_emitted_count)
                .max(1) as f64,
    }
}

/// Starts an in-process server and measures each size in turn (each scenario in turn
/// with `nets`; plain loopback without).
pub async fn run(
    sizes: &[(u32, u32)],
    duration: Duration,
    nets: &[Scenario],
) -> anyhow::Result<Vec<BenchResult>> {
    run_with(sizes, duration, nets, Sources::default()).await
}

/// As [`run`], with other `sources`: with a `video_file`, both peers send that `.y4m`
/// file (at its size and frame rate; `sizes` is not used) and each received picture is
/// compared with the frame it came from (`psnr_y_db`).
pub async fn run_with(
    sizes: &[(u32, u32)],
    duration: Duration,
    nets: &[Scenario],
    sources: Sources<'_>,
) -> anyhow::Result<Vec<BenchResult>> {
    let file_size;
    let sizes = match sources.video_file {
        Some(path) => {
            let header = chingu_media::y4m::Y4mFile::open(path)?.header();
            file_size = [(header.width as u32, header.height as u32)];
            &file_size[..]
        }
        None => sizes,
    };
    let dir = std::env::temp_dir().join(format!("chingu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let server = chingu_server::start(chingu_server::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.clone(),
        cooldown_s: 0,
        ..chingu_server::Config::default()
    })
    .await?;
    let url = server.ws_url();
    let mut results = Vec::new();
    for &(w, h) in sizes {
        if nets.is_empty() {
            results.push(run_size(&url, w, h, duration, None, sources).await?);
        }
        for net in nets {
            results.push(
                run_size(&url, w, h, duration, Some(net), sources)
                    .await
                    .with_context(|| format!("scenario {}", net.name))?,
            );
        }
    }
    server.shutdown();
    server.stopped().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(results)
}

/// One scenario's outcome for the table: its figures, or why it could not be measured.
pub type Row = Result<BenchResult, (String, String)>;

mod result;
mod table;
pub use result::{BenchResult, Carried, DirectionResult, Percentiles, SETTLED_FOR, SETTLED_UNDER};
pub use table::{markdown, video_cells};

/// What both peers send, where it is not the default (the moving pattern and a tone).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources<'a> {
    /// This `.y4m` file, at its size and frame rate, instead of the pattern.
    pub video_file: Option<&'a Path>,
    /// The tone in talkspurts (`AudioSource::Talk`: a second on, a second off), so
    /// that silences (and DTX) are measured.
    pub talk: bool,
}
