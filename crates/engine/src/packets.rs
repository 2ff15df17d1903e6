//! What crosses between the peer connection ([`crate::peer`]) and the media pipeline
//! ([`crate::pipeline`]), in plain types: inbound RTP packets and outbound encoded media.
//! Both sides depend on this module and neither on the other's internals, so webrtc-rs
//! stays inside `peer`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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
    /// A copy of an earlier frame from this packet's redundancy (RED), not a packet of
    /// its own (audio only).
    pub copy: bool,
    /// How many copies of earlier frames the packet carried (audio only).
    pub copies: u8,
    /// When the transport handed it over (jitter is measured from this, not from when a
    /// playout tick got to it).
    pub arrived: Instant,
}

/// What a receiver tells the sender of our video about the pictures it has, for recovery
/// without keyframes (long-term references; `chingu_media::h264::H264Encoder::recover`).
/// Frames are named by `chingu_media::h264_syntax::fingerprint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureFeedback {
    /// The receiver decoded this frame, which made a picture long-term.
    LongTermDecoded { frame: u32 },
    /// The receiver lost pictures after `last_decoded` and has frames up to `current`
    /// that it cannot decode.
    Recover { last_decoded: u32, current: u32 },
}

/// One encoded video frame (an H.264 access unit, Annex B) to send. Its bytes count in
/// [`Bandwidth::video_backlog_bytes`] from when it is made until it is dropped (sent, or
/// given up): the count is added before the frame can reach the transport, so the
/// transport can never take it off first (which, done by hand after queueing, left a
/// keyframe's bytes counted for good now and then, and the encoder skipped every frame
/// as "the transport is behind": a picture frozen for the rest of the call).
#[derive(Debug)]
pub struct EncodedVideo {
    pub data: Bytes,
    /// How far the 90 kHz RTP clock advances since the previous frame (capture time).
    pub ticks: u32,
    _backlog: Backlog,
}

impl EncodedVideo {
    pub fn new(data: Bytes, ticks: u32, bandwidth: &Arc<Bandwidth>) -> Self {
        let bytes = data.len() as u64;
        bandwidth
            .video_backlog_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        Self {
            data,
            ticks,
            _backlog: Backlog {
                bandwidth: Arc::clone(bandwidth),
                bytes,
            },
        }
    }
}

/// A frame's share of the video backlog, given back when the frame is dropped.
#[derive(Debug)]
struct Backlog {
    bandwidth: Arc<Bandwidth>,
    bytes: u64,
}

impl Drop for Backlog {
    fn drop(&mut self) {
        self.bandwidth
            .video_backlog_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// One encoded audio packet (Opus) to send.
#[derive(Debug, Clone)]
pub struct EncodedAudio {
    /// Empty for a frame not sent (in a DTX silence): only its time passes, so the next
    /// packet's timestamp is its own.
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
    /// How far the one-way delay is above its recent least (a queue on the path), ms: the
    /// mean over the last feedback, which jitter lifts too (±30 ms: ~30 ms).
    pub queue_delay_ms: AtomicU32,
    /// Our packets sent close together arrive further apart (a bottleneck narrower than
    /// our pace, recently), or nothing says otherwise yet. False under jitter alone.
    pub bottleneck: AtomicBool,
    /// The path's round-trip time from RTCP, ms (0: not known yet).
    pub rtt_ms: AtomicU32,
    /// Encoded video bytes handed to the transport and not yet sent (kept by
    /// [`EncodedVideo`] itself).
    pub video_backlog_bytes: AtomicU64,
    /// What audio redundancy (RED copies) adds to the audio rate now, bits/s.
    pub audio_redundancy_bps: AtomicU64,
    /// The peer answers [`PictureFeedback`] (its description offers `nack rpsi` for
    /// video): ask it to recover from a long-term picture before asking for a keyframe.
    pub peer_recovers: AtomicBool,
    /// The peer takes Opus DTX (its description has `usedtx=1`): send nothing for most
    /// frames of a silence.
    pub peer_takes_dtx: AtomicBool,
}

/// From this loss (per mille) on a path with no queue, the loss is random (a lossy radio
/// link, not a full one): repairs go twice (peer/retransmit.rs) and the picture keeps its
/// frame rate (pipeline/ladder.rs).
pub const RANDOM_LOSS_PERMILLE: u32 = 100;
/// A queue above this (ms) means the path is full (congestion), whatever it loses.
pub const CONGESTED_QUEUE_MS: u32 = 30;

impl Bandwidth {
    /// Whether our outgoing path loses packets at random: the peer reports
    /// [`RANDOM_LOSS_PERMILLE`] or more lost, and no queue above [`CONGESTED_QUEUE_MS`].
    pub fn random_loss(&self) -> bool {
        self.queue_delay_ms.load(Ordering::Relaxed) <= CONGESTED_QUEUE_MS
            && self.loss_permille.load(Ordering::Relaxed) >= RANDOM_LOSS_PERMILLE
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_counts_in_the_backlog_until_it_is_dropped() {
        let bandwidth = Arc::new(Bandwidth::default());
        let backlog = || bandwidth.video_backlog_bytes.load(Ordering::Relaxed);
        let key = EncodedVideo::new(Bytes::from(vec![0; 30_000]), 3000, &bandwidth);
        let delta = EncodedVideo::new(Bytes::from(vec![0; 2_000]), 3000, &bandwidth);
        assert_eq!(backlog(), 32_000, "counted as soon as made");
        drop(key);
        assert_eq!(backlog(), 2_000, "sent");
        // The transport takes a frame off the queue before the encoder returns from
        // queueing it: the count was already there to take off.
        let (tx, mut rx) = mpsc::channel(1);
        tx.try_send(delta).expect("room");
        drop(rx.try_recv().expect("queued"));
        assert_eq!(backlog(), 0);
        // A frame the full queue refuses leaves the backlog too.
        tx.try_send(EncodedVideo::new(
            Bytes::from_static(&[1; 10]),
            3000,
            &bandwidth,
        ))
        .expect("room");
        let refused = tx.try_send(EncodedVideo::new(
            Bytes::from_static(&[2; 7]),
            3000,
            &bandwidth,
        ));
        assert_eq!(backlog(), 17, "the refused frame still held by the error");
        drop(refused);
        assert_eq!(backlog(), 10);
        drop((tx, rx));
        assert_eq!(backlog(), 0, "a closed queue drops what it held");
    }
}
