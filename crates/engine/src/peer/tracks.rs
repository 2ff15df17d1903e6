//! Our sending tracks: the codecs we offer, one H.264 video and one Opus audio track with
//! ids unique per peer, our own packetization and pacing of video, and the tasks that
//! write the pipeline's encoded media to them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX,
};
use rtc::rtp::packetizer::Packetizer;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;

use super::PeerError;
use crate::ids::random_u32;
use crate::packets::{Bandwidth, EncodedAudio, EncodedVideo, OutboundMedia};

/// Payload types we offer; the answer may pick others, so senders read the negotiated one.
pub(super) const H264_PT: u8 = 102;
pub(super) const OPUS_PT: u8 = 111;
/// H.264 retransmissions (RFC 4588 RTX, `apt` = [`H264_PT`]).
pub(super) const RTX_PT: u8 = 103;
const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
const RTP_MTU: usize = 1200;
/// Video leaves at this multiple of the congestion-control target (libwebrtc: 2.5), so a
/// keyframe is spread out rather than burst into the bottleneck's queue, yet a frame is
/// never held back long.
const PACING_FACTOR: f64 = 2.5;
/// While the path shows a queue, a keyframe at 2.5x the target goes straight into a
/// bottleneck that is already full: pace closer to the target then.
const QUEUED_PACING_FACTOR: f64 = 1.5;
/// Never pace slower than this, bits/s.
const MIN_PACING_BPS: f64 = 400_000.0;
/// While the path shows no queue, pace at least this fast: a keyframe leaves in a few
/// milliseconds on a fast path (call setup, a PLI) instead of in a third of a second at
/// 2.5 x a start-up estimate. A burst that makes a queue on a slow path is seen at once
/// and pacing falls back to the multiple.
const FAST_PACING_BPS: f64 = 100_000_000.0;
/// A queue (ms above the path's least one-way delay) that slows pacing down.
const QUEUE_SEEN_MS: u32 = 10;
/// The writer sleeps only when it is this far ahead of its pace (timer granularity).
const PACE_SLACK: Duration = Duration::from_millis(2);

pub(super) fn h264_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: H264_FMTP.to_owned(),
        rtcp_feedback: vec![],
    }
}

pub(super) fn rtx_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_RTX.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: format!("apt={H264_PT}"),
        rtcp_feedback: vec![],
    }
}

pub(super) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// One sending track: ids unique per peer (`prefix`), one encoding with our SSRC.
fn media_track(
    prefix: &str,
    kind: RtpCodecKind,
    ssrc: u32,
    codec: RTCRtpCodec,
) -> MediaStreamTrack {
    MediaStreamTrack::new(
        format!("{prefix}-stream"),
        format!("{prefix}-{kind}"),
        format!("{prefix}-{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )
}

/// The outgoing audio track: Opus samples, packetized by webrtc-rs.
pub(super) struct AudioTrack {
    pub(super) track: Arc<TrackLocalStaticSample>,
    pub(super) ssrc: u32,
    pub(super) payload_type: AtomicU8,
}

impl AudioTrack {
    pub(super) fn new(prefix: &str) -> Result<Self, PeerError> {
        let ssrc = random_u32();
        let track = TrackLocalStaticSample::new(
            Instant::now(),
            media_track(prefix, RtpCodecKind::Audio, ssrc, opus_codec()),
        )
        .map_err(|e| PeerError::Codec(e.to_string()))?;
        Ok(Self {
            track: Arc::new(track),
            ssrc,
            payload_type: AtomicU8::new(0),
        })
    }

    /// Sends one Opus packet covering `duration`.
    async fn write(&self, data: Bytes, duration: Duration) -> Result<(), PeerError> {
        let pt = self.payload_type.load(Ordering::SeqCst);
        if pt == 0 {
            return Err(PeerError::NotNegotiated);
        }
        self.track
            .write_sample(
                self.ssrc,
                pt,
                &Sample {
                    data,
                    duration,
                    ..Sample::new(Instant::now())
                },
                &[],
            )
            .await
            .map_err(|e| PeerError::Send(e.to_string()))
    }
}

/// The outgoing video track. We packetize ourselves so a large frame (a keyframe is ~150
/// packets at 720p) goes out in paced batches rather than one burst, which overflowed
/// the receiving socket's buffer even on loopback, and so RTP timestamps are exactly the
/// capture-time ticks we choose.
pub(super) struct VideoTrack {
    pub(super) track: Arc<TrackLocalStaticRTP>,
    pub(super) ssrc: u32,
    pub(super) payload_type: AtomicU8,
    /// Only the video writer task packetizes; the lock is never contended.
    packetizer: std::sync::Mutex<Box<dyn Packetizer + Send>>,
    bandwidth: Arc<Bandwidth>,
}

impl VideoTrack {
    pub(super) fn new(prefix: &str, bandwidth: Arc<Bandwidth>) -> Result<Self, PeerError> {
        let ssrc = random_u32();
        let codec = h264_codec();
        let payloader = codec
            .payloader()
            .map_err(|e| PeerError::Codec(e.to_string()))?;
        let packetizer = rtc::rtp::packetizer::new_packetizer(
            Instant::now(),
            RTP_MTU,
            0,
            ssrc,
            payloader,
            Box::new(rtc::rtp::sequence::new_random_sequencer()),
            codec.clock_rate,
        );
        let track = TrackLocalStaticRTP::new(media_track(prefix, RtpCodecKind::Video, ssrc, codec));
        Ok(Self {
            track: Arc::new(track),
            ssrc,
            payload_type: AtomicU8::new(0),
            packetizer: std::sync::Mutex::new(Box::new(packetizer)),
            bandwidth,
        })
    }

    /// Waits until the pace lets a packet of `bytes` leave; `next` is when it lets the
    /// following one (the writer task's own state).
    async fn pace(&self, bytes: usize, next: &mut Option<tokio::time::Instant>) {
        let target = self.bandwidth.target_bps.load(Ordering::Relaxed) as f64;
        let (factor, floor) =
            if self.bandwidth.queue_delay_ms.load(Ordering::Relaxed) < QUEUE_SEEN_MS {
                (PACING_FACTOR, FAST_PACING_BPS)
            } else {
                (QUEUED_PACING_FACTOR, MIN_PACING_BPS)
            };
        let rate = (target * factor).max(floor);
        let now = tokio::time::Instant::now();
        let start = next.map_or(now, |n| n.max(now));
        *next = Some(start + Duration::from_secs_f64(bytes as f64 * 8.0 / rate));
        let wait = start.saturating_duration_since(now);
        if wait >= PACE_SLACK {
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends one encoded H.264 access unit (Annex B) that advances the RTP clock by
    /// `ticks` (90 kHz) since the previous one, paced at a multiple of the estimate.
    async fn write(
        &self,
        frame: EncodedVideo,
        next: &mut Option<tokio::time::Instant>,
    ) -> Result<(), PeerError> {
        let pt = self.payload_type.load(Ordering::SeqCst);
        if pt == 0 {
            return Err(PeerError::NotNegotiated);
        }
        let packets = {
            let mut packetizer = self
                .packetizer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // The packetizer stamps the current timestamp, then advances it: advance
            // first so each frame carries its own capture time.
            packetizer.skip_samples(frame.ticks);
            packetizer
                .packetize(Instant::now(), &frame.data, 0)
                .map_err(|e| PeerError::Packetize(e.to_string()))?
        };
        for mut packet in packets {
            self.pace(packet.payload.len() + 40, next).await;
            packet.header.payload_type = pt;
            self.track
                .write_rtp(packet)
                .await
                .map_err(|e| PeerError::Send(e.to_string()))?;
        }
        Ok(())
    }
}

/// Our two sending tracks.
pub(super) struct Tracks {
    pub(super) video: Arc<VideoTrack>,
    pub(super) audio: Arc<AudioTrack>,
    /// Encoded video frames handed to the transport.
    pub(super) frames_sent: Arc<AtomicU64>,
    pub(super) bandwidth: Arc<Bandwidth>,
}

impl Tracks {
    pub(super) fn new(prefix: &str, bandwidth: Arc<Bandwidth>) -> Result<Self, PeerError> {
        Ok(Self {
            video: Arc::new(VideoTrack::new(prefix, Arc::clone(&bandwidth))?),
            audio: Arc::new(AudioTrack::new(prefix)?),
            frames_sent: Arc::new(AtomicU64::new(0)),
            bandwidth,
        })
    }

    pub(super) fn as_track_locals(&self) -> [Arc<dyn TrackLocal>; 2] {
        [
            Arc::clone(&self.video.track) as Arc<dyn TrackLocal>,
            Arc::clone(&self.audio.track) as Arc<dyn TrackLocal>,
        ]
    }

    /// Records the payload type the answer chose for a codec.
    pub(super) fn learn_payload_type(&self, mime_type: &str, payload_type: u8) {
        let target = if mime_type.eq_ignore_ascii_case(MIME_TYPE_H264) {
            &self.video.payload_type
        } else if mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS) {
            &self.audio.payload_type
        } else {
            return;
        };
        target.store(payload_type, Ordering::SeqCst);
    }

    /// The two tasks that write the pipeline's encoded media until its queues close.
    pub(super) fn writers(
        &self,
        media: OutboundMedia,
    ) -> [std::pin::Pin<Box<dyn Future<Output = ()> + Send>>; 2] {
        let OutboundMedia {
            video: mut video_rx,
            audio: mut audio_rx,
        } = media;
        let video = Arc::clone(&self.video);
        let sent = Arc::clone(&self.frames_sent);
        let audio = Arc::clone(&self.audio);
        [
            Box::pin(async move {
                let mut next_departure = None;
                // Each frame leaves the backlog when `write` is done with it.
                while let Some(frame) = video_rx.recv().await {
                    match video.write(frame, &mut next_departure).await {
                        Ok(()) => {
                            if sent.fetch_add(1, Ordering::Relaxed) == 0 {
                                tracing::debug!("video: first frame sent");
                            }
                        }
                        Err(e) => tracing::debug!("video not sent: {e}"),
                    }
                }
            }),
            Box::pin(async move {
                while let Some(EncodedAudio { data, duration }) = audio_rx.recv().await {
                    if let Err(e) = audio.write(data, duration).await {
                        tracing::debug!("audio not sent: {e}");
                    }
                }
            }),
        ]
    }
}

/// A duration whose tick count at `clock_rate` truncates to exactly `ticks` (the
/// packetizer multiplies in floating point and truncates: 1/30 s would give 2999).
pub fn duration_for_ticks(ticks: u32, clock_rate: u32) -> Duration {
    let nanos = (u64::from(ticks) * 1_000_000_000).div_ceil(u64::from(clock_rate));
    Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_give_exact_ticks() {
        for ticks in [1u32, 2999, 3000, 3001, 960, 1920, 90_000] {
            let d = duration_for_ticks(ticks, 90_000);
            assert_eq!((d.as_secs_f64() * 90_000.0) as u32, ticks, "{ticks}");
            let d = duration_for_ticks(ticks, 48_000);
            assert_eq!((d.as_secs_f64() * 48_000.0) as u32, ticks, "{ticks}");
        }
    }
}
