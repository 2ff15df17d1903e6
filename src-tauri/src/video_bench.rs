//! The video transport benchmark (feature `video-bench`, run by `cargo xtask
//! bench-video`): a 1280x720 30 fps test pattern goes to the webview over one of three
//! transports, the page draws it with the real WebGL renderer and reports what it saw;
//! this side adds the CPU time of the app's process tree (and the X server's, when
//! given) and writes one JSON line.
//!
//! Transports, each with at most one frame in flight:
//! - `websocket`: the production path ([`crate::video`]), a loopback WebSocket with a
//!   per-session token, the page acknowledging each frame with a message;
//! - `protocol`: a custom URI scheme, `chingu-video://localhost/remote?after=<seq>`,
//!   long-polled with `fetch` (the request waits for a frame newer than `after`);
//! - `channel`: a Tauri channel carrying raw bytes, the page acknowledging each frame
//!   with a command.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chingu_media::I420Frame;
use chingu_media::frame::now_us;
use chingu_media::pattern::TestPattern;
use serde_json::{Value, json};
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::{AppHandle, State};
use tokio::sync::{Mutex, Notify};

use crate::video::VideoHub;
use crate::{CommandError, CommandResult};

pub const WIDTH: usize = 1280;
pub const HEIGHT: usize = 720;
pub const FPS: u32 = 30;

pub struct Bench {
    pub transport: String,
    hub: Arc<VideoHub>,
    ack: Notify,
    cpu_at_start: Mutex<Option<(Instant, f64)>>,
    stop: AtomicBool,
}

impl Bench {
    /// Starts the frame source.
    pub fn start(transport: String, hub: Arc<VideoHub>) -> Arc<Self> {
        let bench = Arc::new(Self {
            transport,
            hub,
            ack: Notify::new(),
            cpu_at_start: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let source = Arc::clone(&bench);
        std::thread::Builder::new()
            .name("chingu-bench-src".into())
            .spawn(move || source.produce())
            .map(|_| ())
            .unwrap_or_else(|e| eprintln!("video bench: no frame source thread: {e}"));
        bench
    }

    fn produce(&self) {
        let Ok(mut frame) = I420Frame::new(WIDTH, HEIGHT) else {
            return;
        };
        let mut pattern = TestPattern::new();
        let period = Duration::from_secs(1) / FPS;
        let mut next = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let capture_us = now_us();
            pattern.draw(&mut frame, capture_us);
            frame.capture_us = capture_us;
            self.hub.remote.push(&frame);
            next += period;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }
}

/// The scheme of the `protocol` candidate.
pub const SCHEME: &str = "chingu-video";

/// Answers one `chingu-video://localhost/remote?after=<seq>` request: the first frame
/// other than `after`, waiting up to 2 s (then 204, and the page asks again).
pub async fn respond(
    hub: &VideoHub,
    request: tauri::http::Request<Vec<u8>>,
) -> tauri::http::Response<Vec<u8>> {
    use tauri::http::{Response, StatusCode, header};
    let after = request
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("after="))
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let frame = match request.uri().path() {
        "/remote" => hub.remote.next(after, Duration::from_secs(2)).await,
        _ => None,
    };
    let status = if frame.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(frame.unwrap_or_default())
        .unwrap_or_default()
}

/// Which transport to measure; the page asks once at start.
#[tauri::command]
pub fn video_bench_transport(bench: State<'_, Arc<Bench>>) -> String {
    bench.transport.clone()
}

/// Channel transport: frames are pushed to `on_frame`, the next only after
/// [`video_bench_ack`].
#[tauri::command]
pub fn video_bench_channel(
    bench: State<'_, Arc<Bench>>,
    on_frame: Channel<InvokeResponseBody>,
) -> CommandResult<()> {
    let bench = Arc::clone(bench.inner());
    tauri::async_runtime::spawn(async move {
        let mut after = 0;
        loop {
            let Some(frame) = bench.hub.remote.next(after, Duration::from_secs(2)).await else {
                continue;
            };
            after = u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]);
            if on_frame.send(InvokeResponseBody::Raw(frame)).is_err() {
                return;
            }
            bench.ack.notified().await;
        }
    });
    Ok(())
}

#[tauri::command]
pub fn video_bench_ack(bench: State<'_, Arc<Bench>>) {
    bench.ack.notify_one();
}

/// The measured window starts: note the CPU time so far.
#[tauri::command]
pub async fn video_bench_start(bench: State<'_, Arc<Bench>>) -> CommandResult<()> {
    *bench.cpu_at_start.lock().await = Some((Instant::now(), cpu_seconds()));
    Ok(())
}

/// The page's figures: adds CPU, prints one JSON line (and appends it to
/// `CHINGU_VIDEO_BENCH_OUT`), and quits.
#[tauri::command]
pub async fn video_bench_done(
    app: AppHandle,
    bench: State<'_, Arc<Bench>>,
    report: Value,
) -> CommandResult<()> {
    let Some((started, cpu_start)) = *bench.cpu_at_start.lock().await else {
        return Err(CommandError::new(
            "not_started",
            "call video_bench_start first",
        ));
    };
    let wall = started.elapsed().as_secs_f64();
    let cpu = (cpu_seconds() - cpu_start) / wall * 100.0;
    bench.stop.store(true, Ordering::Relaxed);
    let line = json!({
        "transport": bench.transport,
        "width": WIDTH,
        "height": HEIGHT,
        "sourceFps": FPS,
        "seconds": wall,
        "cpuPercentOfOneCore": cpu,
        "page": report,
    })
    .to_string();
    println!("{line}");
    if let Ok(path) = std::env::var("CHINGU_VIDEO_BENCH_OUT") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
    app.exit(0);
    Ok(())
}

/// CPU seconds used so far by this process, its descendants (WebKit's web and network
/// processes) and the process in `CHINGU_VIDEO_BENCH_XPID` (the X server that
/// composites the window), from /proc.
fn cpu_seconds() -> f64 {
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    let ticks = 100.0;
    let mut stats = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the parenthesised command name: state ppid ... utime(14) stime(15).
            let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let (Some(ppid), Some(utime), Some(stime)) = (
                fields.get(1).and_then(|f| f.parse::<u32>().ok()),
                fields.get(11).and_then(|f| f.parse::<f64>().ok()),
                fields.get(12).and_then(|f| f.parse::<f64>().ok()),
            ) else {
                continue;
            };
            stats.push((pid, ppid, utime + stime));
        }
    }
    let mut wanted = vec![std::process::id()];
    if let Some(x) = std::env::var("CHINGU_VIDEO_BENCH_XPID")
        .ok()
        .and_then(|p| p.parse().ok())
    {
        wanted.push(x);
    }
    let mut i = 0;
    while i < wanted.len() {
        let parent = wanted[i];
        wanted.extend(
            stats
                .iter()
                .filter(|(pid, ppid, _)| *ppid == parent && !wanted.contains(pid))
                .map(|(pid, _, _)| *pid)
                .collect::<Vec<_>>(),
        );
        i += 1;
    }
    stats
        .iter()
        .filter(|(pid, _, _)| wanted.contains(pid))
        .map(|(_, _, t)| t / ticks)
        .sum()
}
