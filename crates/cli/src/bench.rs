//! `chingu-cli bench`: its own chingu-server and two engines in this process, calling
//! each other over loopback with moving synthetic video, at each frame size. Latency comes
//! from the barcode every frame carries (frame number and capture time), read after
//! decoding; CPU from /proc for the whole process (both peers and the idle server).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chingu_engine::pipeline::{AudioOutput, AudioSource, MediaConfig, VideoSource};
use chingu_engine::stats::CallStats;
use chingu_engine::{CallView, Command, Engine, EngineEvent};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::peer::{PeerSetup, Probe, bitrate_for, percentile_ms};

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

/// One frame size's figures (both directions together unless named otherwise).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub size: String,
    pub fps: u32,
    pub duration_s: f64,
    /// Matched until DTLS connected (the slower peer), ms.
    pub connected_ms: u64,
    /// Matched until the first decoded frame (the slower peer), ms.
    pub setup_ms: u64,
    /// From the barcodes: capture on one peer to decoded on the other, after the first
    /// second of the call.
    pub capture_to_render_ms: Percentiles,
    #[serde(rename = "framesSent")]
    pub frames_sent: u64,
    #[serde(rename = "framesDecoded")]
    pub frames_decoded: u64,
    pub frames_out_of_order: u64,
    /// Frames received but not decodable (lost packets, waiting for a keyframe).
    #[serde(rename = "framesDropped")]
    pub frames_dropped: u64,
    #[serde(rename = "nackCount")]
    pub nack_count: u64,
    #[serde(rename = "pliCount")]
    pub pli_count: u64,
    #[serde(rename = "packetsLost")]
    pub packets_lost: i64,
    #[serde(rename = "freezeCount")]
    pub freeze_count: u64,
    pub encode_ms_per_frame: f64,
    pub decode_ms_per_frame: f64,
    /// CPU time of this process (both peers) per wall second, % of one core.
    pub cpu_pct_one_core: f64,
    /// Video bitrate per direction, kbit/s.
    pub kbps: f64,
}

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

fn side(url: &str, name: &str, width: u32, height: u32, tone: f64) -> Side {
    let probe = Arc::new(Mutex::new(Probe::default()));
    let setup = PeerSetup {
        server: url.to_owned(),
        nickname: name.to_owned(),
        languages: vec!["ko".into()],
        interests: vec![],
        udp_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        relay_only: false,
    };
    let media = MediaConfig {
        video: Some(VideoSource::TestPattern {
            width,
            height,
            fps: 30,
        }),
        audio: Some(AudioSource::Tone { frequency_hz: tone }),
        output: AudioOutput::Discard,
        video_bitrate_bps: bitrate_for(width, height),
        camera_fallback: false,
        remote_video: Some(Probe::sink(&probe)),
        local_preview: None,
        remote_audio: None,
    };
    let (engine, events, task) = Engine::start(setup.engine_config("bench", media, false));
    Side {
        engine,
        events,
        task,
        probe,
        matched_at: None,
        connected_ms: None,
        stats: None,
    }
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

/// Runs one call at `width`x`height` for `duration` and measures it.
pub async fn run_size(
    url: &str,
    width: u32,
    height: u32,
    duration: Duration,
) -> anyhow::Result<BenchResult> {
    let mut a = side(url, "bench-a", width, height, 440.0);
    let mut b = side(url, "bench-b", width, height, 880.0);
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
    let window_start = Instant::now();
    let cpu0 = cpu_seconds()?;
    let end = tokio::time::Instant::now() + duration;
    loop {
        tokio::select! {
            Some(e) = a.events.recv() => a.handle(e)?,
            Some(e) = b.events.recv() => b.handle(e)?,
            () = tokio::time::sleep_until(end) => break,
        }
    }
    let cpu = cpu_seconds()? - cpu0;
    let wall = window_start.elapsed().as_secs_f64();
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
    let mut out_of_order = 0;
    for s in [&a, &b] {
        let p = s.probe.lock().map_err(|_| anyhow::anyhow!("probe"))?;
        let settle = p.first_frame.map(|f| f + Duration::from_secs(1));
        latencies.extend(
            p.latencies
                .iter()
                .filter(|(t, _)| settle.is_none_or(|s| *t >= s))
                .map(|(_, l)| *l),
        );
        out_of_order += p.out_of_order;
    }
    latencies.sort_unstable();
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
    };
    for s in [a, b] {
        drop(s.engine);
        drop(s.events);
        let _ = tokio::time::timeout(Duration::from_secs(10), s.task).await;
    }
    Ok(result)
}

/// Starts an in-process server and measures each size in turn.
pub async fn run(sizes: &[(u32, u32)], duration: Duration) -> anyhow::Result<Vec<BenchResult>> {
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
        results.push(run_size(&url, w, h, duration).await?);
    }
    server.shutdown();
    server.stopped().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(results)
}
