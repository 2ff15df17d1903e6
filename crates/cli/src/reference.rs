//! `chingu-cli reference`: libwebrtc's figures for the call `chingu-cli bench` makes,
//! measured the same way. Headless Chromium opens `reference/page.html`: two peer
//! connections in one page call each other over the host's network, H.264 and Opus both
//! ways at 640x480/30 fps under the same 1 Mbit/s video ceiling, sending a canvas drawn
//! like Chingu's synthetic camera with a barcode of its capture time, read back from each
//! frame as it is presented. The page prints its figures as one console line, which this
//! module reads from Chromium's log.
//!
//! Chromium gathers candidates only on the interface of the default route (the page asks
//! for no camera permission), so the host or namespace needs one.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::bench::DirectionResult;

const PAGE: &str = include_str!("reference/page.html");
/// What the page prints before its JSON.
const MARKER: &str = "CHINGU-REF ";

/// One call between two libwebrtc peer connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceResult {
    /// Offer made until both connections were `connected`, ms.
    pub connected_ms: u64,
    /// Offer made until a frame was shown each way, ms.
    pub setup_ms: u64,
    /// The measured window, s.
    pub duration_s: f64,
    /// The video codec negotiated (video/H264 unless this Chromium lacks it).
    pub codec: Option<String>,
    /// The first peer connection to the second.
    pub up: DirectionResult,
    /// The second to the first.
    pub down: DirectionResult,
    /// Chromium's processes together (both peers, drawing the canvas, reading barcodes,
    /// rendering), % of one core over the whole run.
    #[serde(default)]
    pub cpu_pct_one_core: f64,
    #[serde(default)]
    pub chromium: String,
}

/// The page's console line: a result, or why there is none.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum PageLine {
    /// The measured window starts.
    Window,
    Result(Box<ReferenceResult>),
    Error {
        message: String,
    },
}

/// Reads a page line out of one line of Chromium's log (`... "CHINGU-REF {json}", source:
/// ...`); `None` for every other line.
fn page_line(log_line: &str) -> Option<anyhow::Result<PageLine>> {
    let start = log_line.find(MARKER)? + MARKER.len();
    let rest = &log_line[start..];
    let end = rest.rfind('}')? + 1;
    Some(serde_json::from_str(&rest[..end]).context("the page's figures are not readable"))
}

/// Where Chromium is: `CHINGU_CHROMIUM`, else the first of Debian's and other distributions'
/// names on the `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHINGU_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| {
            ["chromium", "chromium-browser", "google-chrome"].map(|name| dir.join(name))
        })
        .find(|p| p.is_file())
}

/// User plus system CPU seconds of process `root` and every process below it (Chromium's
/// renderer, GPU and utility processes), from /proc.
fn tree_cpu_seconds(root: u32) -> f64 {
    let mut parents = std::collections::HashMap::new();
    let mut seconds = std::collections::HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state, ppid, ... utime (12th),
        // stime (13th).
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let number = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        if let (Some(ppid), Some(user), Some(system)) = (number(1), number(11), number(12)) {
            parents.insert(pid, ppid as u32);
            seconds.insert(pid, (user + system) / 100.0);
        }
    }
    let below_root = |mut pid: u32| {
        // Parent links end at pid 1 (or 0); a bounded walk in case /proc changed under us.
        for _ in 0..64 {
            if pid == root {
                return true;
            }
            match parents.get(&pid) {
                Some(&parent) if parent > 1 => pid = parent,
                _ => return false,
            }
        }
        false
    };
    seconds
        .iter()
        .filter(|&(&pid, _)| below_root(pid))
        .map(|(_, s)| s)
        .sum()
}

/// Runs the reference call in headless Chromium for `duration` and returns its figures.
pub fn run(chromium: &Path, duration: Duration) -> anyhow::Result<ReferenceResult> {
    let dir = std::env::temp_dir().join(format!("chingu-reference-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let outcome = run_in(&dir, chromium, duration);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn run_in(dir: &Path, chromium: &Path, duration: Duration) -> anyhow::Result<ReferenceResult> {
    let page = dir.join("page.html");
    std::fs::write(&page, PAGE).with_context(|| format!("writing {}", page.display()))?;
    let version = Command::new(chromium)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let url = format!(
        "file://{}?duration={}",
        page.display(),
        duration.as_secs_f64()
    );
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            // This machine's network is closed: no background requests to time out.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--autoplay-policy=no-user-gesture-required",
            // Host candidates as addresses, not mDNS names (nothing answers mDNS here).
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", chromium.display()))?;
    let stderr = child.stderr.take().context("Chromium's log")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(parsed) = page_line(&line)
                && tx.send(parsed).is_err()
            {
                break;
            }
        }
    });
    // Setup, the settling second and the window, with room for a slow start.
    let deadline = Instant::now() + duration + Duration::from_secs(60);
    let mut window = None;
    let outcome = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(PageLine::Window)) => {
                window = Some((Instant::now(), tree_cpu_seconds(child.id())));
            }
            Ok(Ok(PageLine::Result(result))) => {
                let mut result = *result;
                // CPU over the page's window, as `bench` measures its own.
                if let Some((at, cpu)) = window {
                    let spent = tree_cpu_seconds(child.id()) - cpu;
                    result.cpu_pct_one_core = 100.0 * spent / at.elapsed().as_secs_f64();
                }
                result.chromium = version;
                break Ok(result);
            }
            Ok(Ok(PageLine::Error { message })) => {
                break Err(anyhow::anyhow!("the reference page failed: {message}"));
            }
            Ok(Err(e)) => break Err(e),
            Err(_) => {
                break Err(anyhow::anyhow!(
                    "no figures from Chromium within {} s",
                    (duration + Duration::from_secs(60)).as_secs()
                ));
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    // Not joined: Chromium's own children hold the log pipe until they notice the browser
    // is gone; the reader ends then.
    drop(reader);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_line_with_figures_is_read_and_other_lines_are_not() {
        let figures = r#"{"captureToRenderMs":{"p50":33,"p95":57,"p99":65},"framesSent":133,"framesDecoded":130,"freezeCount":1,"totalFreezesDuration":0.4,"videoKbps":900.5,"estimateKbps":null,"frameWidth":480,"frameHeight":360,"audioConcealedPct":0.5,"audioDiscardedPct":0,"pliCount":0,"nackCount":3,"retransmittedPacketsSent":2,"retransmittedPacketsReceived":2,"psnrYDb":null,"psnrYP10Db":null,"interFrameDelayStdMs":16.0,"qualityLimitationReason":"bandwidth","videoJitterBufferMs":7.3}"#;
        let line = format!(
            r#"[1:1:1201/022853.1:INFO:CONSOLE:28] "CHINGU-REF {{"kind":"result","connectedMs":270,"setupMs":454,"durationS":5.0,"codec":"video/H264","up":{figures},"down":{figures}}}", source: file:///tmp/page.html (28)"#
        );
        let Some(Ok(PageLine::Result(r))) = page_line(&line) else {
            panic!("not read: {line}");
        };
        assert_eq!(r.connected_ms, 270);
        assert_eq!(r.up.frames_decoded, 130);
        assert_eq!(r.down.frame_width, 480);
        assert_eq!(r.up.estimate_kbps, None);

        let error = r#"[1:1:1201/0:INFO:CONSOLE:28] "CHINGU-REF {"kind":"error","message":"Error: no frame in 30 s"}", source: x (28)"#;
        assert!(matches!(
            page_line(error),
            Some(Ok(PageLine::Error { message })) if message.contains("no frame")
        ));
        assert!(page_line("[1:1:WARNING:vaapi_wrapper.cc] no devices").is_none());
        // A damaged line is an error, not a panic or a result.
        assert!(matches!(
            page_line(r#""CHINGU-REF {"kind":"result","connectedMs":"#),
            None | Some(Err(_))
        ));
        assert!(matches!(
            page_line(r#""CHINGU-REF {"kind":"result"}"#),
            Some(Err(_))
        ));
    }
}
