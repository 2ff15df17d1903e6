//! What crosses between the peer connection ([`crate::peer`]) and the media pipeline
//! ([`crate::pipeline`]), in plain types: inbound RTP packets and outbound encoded media.
//! Both sides depend on this module and neither on the other's internals, so webrtc-rs
//! stays inside `peer`.

use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

/// One inbound RTP packet, as the media pipeline needs it.
#[derive(Debug, Clone)]
pub struct RtpIn {
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
    /// When the transport handed it over (jitter is measured from this, not from when a
    /// playout tick got to it).
    pub arrived: Instant,
}

/// One encoded video frame (an H.264 access unit, Annex B) to send.
#[derive(Debug, Clone)]
pub struct EncodedVideo {
    pub data: Bytes,
    /// How far the 90 kHz RTP clock advances since the previous frame (capture time).
    pub ticks: u32,
}

/// One encoded audio packet (Opus) to send.
#[derive(Debug, Clone)]
pub struct EncodedAudio {
    pub data: Bytes,
    pub duration: Duration,
}

/// What congestion control says about our sending: written by the transport (the
/// estimate, from the peer's feedback) and the video writer (its backlog), read by the
/// encoder, which follows it.
#[derive(Debug, Default)]
pub struct Bandwidth {
    /// The target for everything we send, bits/s.
    pub target_bps: AtomicU64,
    /// The smoothed fraction of our packets the peer reports lost, per mille.
    pub loss_permille: AtomicU32,
    /// How far the one-way delay is above its recent least (a queue on the path), ms.
    pub queue_delay_ms: AtomicU32,
    /// The path's round-trip time from RTCP, ms (0: not known yet).
    pub rtt_ms: AtomicU32,
    /// Encoded video bytes handed to the transport and not yet sent.
    pub video_backlog_bytes: AtomicU64,
}

/// Inbound RTP per track queued from the transport to the pipeline (~1 s of 720p video).
pub const RTP_QUEUE: usize = 512;
/// Encoded video frames queued for the transport. The encoder does not encode while the
/// transport holds more than 250 ms of video at the estimate (video_send.rs), so this
/// only fills if the transport stalls; then a frame is dropped and the next is a
/// keyframe (a smaller queue overflowed behind every keyframe on a slow link, and each
/// drop cost another keyframe).
pub const ENCODED_VIDEO_QUEUE: usize = 16;
/// Encoded audio packets queued for the transport (160 ms).
pub const ENCODED_AUDIO_QUEUE: usize = 8;

/// Where the transport delivers inbound media.
#[derive(Debug)]
pub struct InboundSinks {
    pub video: mpsc::Sender<RtpIn>,
    pub audio: mpsc::Sender<RtpIn>,
}

/// The pipeline's ends of the inbound queues.
#[derive(Debug)]
pub struct InboundMedia {
    pub video: mpsc::Receiver<RtpIn>,
    pub audio: mpsc::Receiver<RtpIn>,
}

/// The transport's ends of the outbound queues.
#[derive(Debug)]
pub struct OutboundMedia {
    pub video: mpsc::Receiver<EncodedVideo>,
    pub audio: mpsc::Receiver<EncodedAudio>,
}

/// The pipeline's ends of the outbound queues.
#[derive(Debug, Clone)]
pub struct OutboundSinks {
    pub video: mpsc::Sender<EncodedVideo>,
    pub audio: mpsc::Sender<EncodedAudio>,
}

/// The queues of one call, both ways.
pub fn inbound() -> (InboundSinks, InboundMedia) {
    let (video_tx, video) = mpsc::channel(RTP_QUEUE);
    let (audio_tx, audio) = mpsc::channel(RTP_QUEUE / 4);
    (
        InboundSinks {
            video: video_tx,
            audio: audio_tx,
        },
        InboundMedia { video, audio },
    )
}

pub fn outbound() -> (OutboundSinks, OutboundMedia) {
    let (video_tx, video) = mpsc::channel(ENCODED_VIDEO_QUEUE);
    let (audio_tx, audio) = mpsc::channel(ENCODED_AUDIO_QUEUE);
    (
        OutboundSinks {
            video: video_tx,
            audio: audio_tx,
        },
        OutboundMedia { video, audio },
    )
}
