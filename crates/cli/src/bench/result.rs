//! What the bench reports: per call, and per direction.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::netsim::NetCounts;

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// Barcodes read whose capture time was implausible (misreads), left out.
    #[serde(default)]
    pub frames_misread: u64,
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
    /// The network scenario (`None`: plain loopback).
    pub net: Option<String>,
    /// A to B.
    pub up: DirectionResult,
    /// B to A.
    pub down: DirectionResult,
    /// What the simulator did over the whole run (with `--net`).
    pub link: Option<NetCounts>,
    /// What each way of the simulated path carried over the measured window, kbit/s:
    /// everything the call sent (video, audio, RTCP, headers) that was delivered.
    pub link_kbps: Option<Carried>,
}

/// Delivered kbit/s each way.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Carried {
    pub up: f64,
    pub down: f64,
}

/// Capture→render under this is settled, after a drop in the link's rate (the issue's
/// step goal: back under 300 ms within 2 s).
pub const SETTLED_UNDER: Duration = Duration::from_millis(300);
/// ... for at least this long (a later spike, such as a rung's keyframe, is another event).
pub const SETTLED_FOR: Duration = Duration::from_secs(1);

/// One direction's figures, over the measured window.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectionResult {
    /// Capture on the sender to decoded on the receiver, from the barcodes.
    pub capture_to_render_ms: Percentiles,
    /// Frames the sender sent, counted over as long a time as the receiver's window.
    pub frames_sent: u64,
    pub frames_decoded: u64,
    /// W3C freezes (a frame later than max(3 x the average gap, gap + 150 ms)).
    pub freeze_count: u64,
    /// Seconds frozen in all.
    pub total_freezes_duration: f64,
    /// The longest the picture stood still in the window: the longest wait between two
    /// shown frames, ms (a freeze by any definition when it is long).
    #[serde(default)]
    pub longest_still_ms: Option<f64>,
    /// Where the scenario drops this way's rate in the window: how long after the drop
    /// capture→render came back under [`SETTLED_UNDER`] to stay there for
    /// [`SETTLED_FOR`] (0: it never went over; until the next step or the window's end
    /// when it never came back), ms.
    #[serde(default)]
    pub settled_after_drop_ms: Option<f64>,
    /// Received video, kbit/s.
    pub video_kbps: f64,
    /// The sender's congestion-control estimate at the end, kbit/s.
    pub estimate_kbps: Option<f64>,
    /// What the receiver decoded last.
    pub frame_width: u32,
    pub frame_height: u32,
    /// Audio samples concealed by the receiver, % of those played.
    pub audio_concealed_pct: f64,
    /// Audio samples of comfort noise (the sender silent in DTX), % of those played.
    #[serde(default)]
    pub audio_comfort_noise_pct: f64,
    /// Audio the sender sent (Opus or RED payloads, no headers), kbit/s, and in how many
    /// packets a second (each costs ~50 bytes of headers on the wire besides).
    #[serde(default)]
    pub audio_kbps: f64,
    #[serde(default)]
    pub audio_packets_per_s: f64,
    /// Audio packets its jitter buffer threw away (late, or trimmed), % of those played.
    pub audio_discarded_pct: f64,
    pub pli_count: u64,
    /// Frames lost that nothing later referred to: skipped without a keyframe (Chingu's
    /// receiver only).
    #[serde(default)]
    pub frames_lost_unreferenced: u64,
    /// Frames that mended the picture from a long-term picture, not a keyframe.
    #[serde(default)]
    pub frames_recovered: u64,
    pub nack_count: u32,
    /// Packets the sender resent over RTX, and the receiver got over RTX.
    pub retransmitted_packets_sent: u64,
    pub retransmitted_packets_received: u64,
    /// With a `.y4m` source: mean Y-PSNR of the received pictures against the frames
    /// they came from (scaled to the received size; barcode rows left out), dB, and the
    /// tenth percentile (the worst pictures).
    pub psnr_y_db: Option<f64>,
    pub psnr_y_p10_db: Option<f64>,
    /// Standard deviation of the intervals between shown frames, ms (judder; from W3C
    /// `totalInterFrameDelay` and `totalSquaredInterFrameDelay`).
    pub inter_frame_delay_std_ms: f64,
    /// Mean time a frame was held after it was complete, for smooth playout, ms.
    pub video_jitter_buffer_ms: f64,
}
