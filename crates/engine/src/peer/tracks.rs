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
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::MediaEngine;

use super::PeerError;
use crate::ids::random_u32;
use crate::packets::{Bandwidth, EncodedAudio, EncodedVideo, OutboundMedia};
use crate::red::{MAX_COPIES, copies_for_loss};

/// Payload types we offer; the answer may pick others, so senders read the negotiated one.
pub(super) const H264_PT: u8 = 102;
pub(super) const OPUS_PT: u8 = 111;
/// Opus in RED (RFC 2198).
pub(super) const RED_PT: u8 = 63;
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
/// Up to this queue (ms), delays spread by jitter on a path with no narrow link do not
/// slow pacing down.
const JITTER_QUEUE_MS: u32 = 45;
/// The writer sleeps only when it is this far ahead of its pace (timer granularity).
const PACE_SLACK: Duration = Duration::from_millis(2);

/// Registers the formats we offer, in this order: H.264, its retransmissions on their
/// own SSRC (RFC 4588 RTX, as libwebrtc sends them: the receiver tells a repair from a
/// late packet, and padding never looks like media), Opus, and Opus in RED after it
/// (copies of earlier frames when the path loses packets; red.rs).
pub(super) fn register_codecs(media: &mut MediaEngine) -> Result<(), rtc::shared::error::Error> {
    for (rtp_codec, payload_type, kind) in [
        (h264_codec(), H264_PT, RtpCodecKind::Video),
        (rtx_codec(), RTX_PT, RtpCodecKind::Video),
        (opus_codec(), OPUS_PT, RtpCodecKind::Audio),
        (red_codec(), RED_PT, RtpCodecKind::Audio),
    ] {
        media.register_codec(
            RTCRtpCodecParameters {
                rtp_codec,
                payload_type,
            },
            kind,
        )?;
    }
    Ok(())
}

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

/// Opus in RED (RFC 2198): copies of earlier frames in each packet.
pub(super) const MIME_TYPE_RED: &str = "audio/red";

pub(super) fn red_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_RED.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: format!("{OPUS_PT}/{OPUS_PT}"),
        rtcp_feedback: vec![],
    }
}

pub(super) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        // usedtx=1: we take discontinuous transmission (pipeline/jitter.rs).
        sdp_fmtp_line: "minptime=10;useinbandfec=1;usedtx=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Whether the peer takes Opus DTX: its description's Opus format parameters have
/// `usedtx=1` (only Opus has the parameter). `CHINGU_NO_DTX` in the environment turns it
/// off, to measure what DTX does in one build.
pub(super) fn peer_takes_dtx(sdp: &str) -> bool {
    let offered = sdp.lines().any(|line| {
        line.trim_end()
            .strip_prefix("a=fmtp:")
            .and_then(|rest| rest.split_once(' '))
            .is_some_and(|(_, params)| params.split(';').any(|p| p.trim() == "usedtx=1"))
    });
    offered && std::env::var_os("CHINGU_NO_DTX").is_none()
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

/// The outgoing audio track: Opus samples, packetized by webrtc-rs; in RED (RFC 2198)
/// with copies of the frames before when the peer negotiated it.
pub(super) struct AudioTrack {
    pub(super) track: Arc<TrackLocalStaticSample>,
    pub(super) ssrc: u32,
    pub(super) payload_type: AtomicU8,
    /// The negotiated RED payload type (0: none; plain Opus).
    pub(super) red_payload_type: Arc<AtomicU8>,
    /// The last frames, newest last, empty for a frame not sent (only the audio writer
    /// task touches it).
    recent: std::sync::Mutex<std::collections::VecDeque<Bytes>>,
    bandwidth: Arc<Bandwidth>,
}

impl AudioTrack {
    pub(super) fn new(prefix: &str, bandwidth: Arc<Bandwidth>) -> Result<Self, PeerError> {
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
            red_payload_type: Arc::new(AtomicU8::new(0)),
            recent: Default::default(),
            bandwidth,
        })
    }

    /// The payload to send for the Opus frame `data` (RED around it when negotiated),
    /// and its payload type.
    fn payload(&self, pt: u8, data: Bytes, duration: Duration) -> (u8, Bytes) {
        let red = self.red_payload_type.load(Ordering::Relaxed);
        if red == 0 {
            return (pt, data);
        }
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if data.is_empty() {
            // Not sent (DTX): nothing to wrap, and no copies while nothing goes.
            remember(&mut recent, data.clone());
            let redundancy = &self.bandwidth.audio_redundancy_bps;
            redundancy.store(0, Ordering::Relaxed);
            return (red, data);
        }
        let copies = copies_for_loss(self.bandwidth.loss_permille.load(Ordering::Relaxed));
        let ticks = (duration.as_secs_f64() * 48_000.0).round() as u32;
        // Copies only of the frames since the last one not sent: each copy's place is
        // then its distance back in packets as well as in time, as a receiver that
        // places copies by sequence number needs.
        let mut blocks: Vec<(u32, &[u8])> = recent
            .iter()
            .rev()
            .take(copies)
            .take_while(|frame| !frame.is_empty())
            .enumerate()
            .map(|(i, frame)| (ticks * (i as u32 + 1), &frame[..]))
            .collect();
        blocks.reverse();
        let copy_bytes: usize = blocks.iter().map(|(_, b)| b.len() + 4).sum();
        let mut out = Vec::with_capacity(1 + copy_bytes + data.len());
        crate::red::encode(pt, &data, &blocks, &mut out);
        // What the copies add, for the encoder's budget (pipeline/ladder.rs).
        let per_second = 1.0 / duration.as_secs_f64().max(0.001);
        self.bandwidth.audio_redundancy_bps.store(
            (copy_bytes as f64 * 8.0 * per_second) as u64,
            Ordering::Relaxed,
        );
        remember(&mut recent, data);
        (red, Bytes::from(out))
    }

    /// Sends one Opus frame covering `duration`; an empty one is not sent, and only
    /// advances the timestamp (the packetizer makes no packet of an empty payload).
    async fn write(&self, data: Bytes, duration: Duration) -> Result<(), PeerError> {
        let pt = self.payload_type.load(Ordering::SeqCst);
        if pt == 0 {
            return Err(PeerError::NotNegotiated);
        }
        let (pt, data) = self.payload(pt, data, duration);
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

/// Keeps the last [`MAX_COPIES`] frames, newest last.
fn remember(recent: &mut std::collections::VecDeque<Bytes>, frame: Bytes) {
    recent.push_back(frame);
    if recent.len() > MAX_COPIES {
        recent.pop_front();
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
            } else if !self.bandwidth.bottleneck.load(Ordering::Relaxed)
                && self.bandwidth.queue_delay_ms.load(Ordering::Relaxed) < JITTER_QUEUE_MS
            {
                // Delays spread above the least, yet packets sent together arrive
                // together: jitter, not a narrow link. At 1.5x the target a 640x480
                // keyframe (~60 kB at 1 Mbit/s) took ~270 ms under ±30 ms of jitter
                // while the encoder skipped frames: a freeze at each step up the ladder.
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
            audio: Arc::new(AudioTrack::new(prefix, Arc::clone(&bandwidth))?),
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

    /// Notes from the peer's description whether it takes picture feedback
    /// (`keyframe::peer_recovers`) and DTX ([`peer_takes_dtx`]).
    pub(super) fn note_peer_takes(&self, sdp: &str) {
        let (bandwidth, relaxed) = (&self.bandwidth, Ordering::Relaxed);
        let recovers = super::keyframe::peer_recovers(sdp);
        bandwidth.peer_recovers.store(recovers, relaxed);
        bandwidth.peer_takes_dtx.store(peer_takes_dtx(sdp), relaxed);
    }

    /// Records the payload type the answer chose for a codec.
    pub(super) fn learn_payload_type(&self, mime_type: &str, payload_type: u8) {
        let target = if mime_type.eq_ignore_ascii_case(MIME_TYPE_RED) {
            &self.audio.red_payload_type
        } else if mime_type.eq_ignore_ascii_case(MIME_TYPE_H264) {
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
    fn audio_carries_more_copies_as_loss_grows_and_only_in_red() {
        assert_eq!(
            [0, 19, 20, 99, 100, 249, 250, 400].map(copies_for_loss),
            [0, 0, 1, 1, 2, 2, 3, 3]
        );
        let bandwidth = Arc::new(Bandwidth::default());
        let audio = AudioTrack::new("t", Arc::clone(&bandwidth)).expect("track");
        let frame = Duration::from_millis(20);
        // Not negotiated: plain Opus.
        let (pt, data) = audio.payload(111, Bytes::from_static(b"a"), frame);
        assert_eq!((pt, &data[..]), (111, &b"a"[..]));
        audio.red_payload_type.store(63, Ordering::Relaxed);
        bandwidth.loss_permille.store(150, Ordering::Relaxed);
        let mut last = Bytes::new();
        for frame_data in [b"b", b"c", b"d"] {
            let (pt, data) = audio.payload(111, Bytes::from_static(frame_data), frame);
            assert_eq!(pt, 63);
            last = data;
        }
        let red = crate::red::decode(&last).expect("RED");
        assert_eq!(&red.primary[..], b"d");
        let copies: Vec<(u32, &[u8])> =
            red.copies.iter().map(|c| (c.offset, &c.data[..])).collect();
        assert_eq!(copies, vec![(1920, &b"b"[..]), (960, &b"c"[..])]);
        assert!(bandwidth.audio_redundancy_bps.load(Ordering::Relaxed) > 0);
        // A clean path: no copies, and no redundancy charged to video.
        bandwidth.loss_permille.store(0, Ordering::Relaxed);
        let (_, data) = audio.payload(111, Bytes::from_static(b"e"), frame);
        assert!(crate::red::decode(&data).unwrap().copies.is_empty());
        assert_eq!(bandwidth.audio_redundancy_bps.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn red_copies_only_frames_since_the_last_frame_not_sent() {
        let bandwidth = Arc::new(Bandwidth::default());
        let audio = AudioTrack::new("t", Arc::clone(&bandwidth)).expect("track");
        let frame = Duration::from_millis(20);
        audio.red_payload_type.store(63, Ordering::Relaxed);
        bandwidth.loss_permille.store(400, Ordering::Relaxed);
        let mut copies: Vec<Vec<(u32, Bytes)>> = Vec::new();
        for frame_data in [&b"b"[..], b"c", b"", b"d", b"e"] {
            let (pt, data) = audio.payload(111, Bytes::from_static(frame_data), frame);
            assert_eq!(pt, 63);
            if frame_data.is_empty() {
                assert!(data.is_empty(), "a frame not sent stays empty");
                continue;
            }
            let red = crate::red::decode(&data).expect("RED");
            assert_eq!(&red.primary[..], frame_data);
            copies.push(
                red.copies
                    .iter()
                    .map(|c| (c.offset, c.data.clone()))
                    .collect(),
            );
        }
        let b = |s: &'static [u8]| Bytes::from_static(s);
        let expected: Vec<Vec<(u32, Bytes)>> =
            vec![vec![], vec![(960, b(b"b"))], vec![], vec![(960, b(b"d"))]];
        assert_eq!(copies, expected);
    }

    #[test]
    fn an_empty_frame_makes_no_packet_and_only_moves_the_timestamp_on() {
        // What the audio track relies on for DTX: webrtc-rs's packetizer makes no
        // packet of an empty payload, and still advances its timestamp.
        let codec = opus_codec();
        let payloader = codec.payloader().expect("payloader");
        let mut packetizer = rtc::rtp::packetizer::new_packetizer(
            Instant::now(),
            RTP_MTU,
            111,
            1,
            payloader,
            Box::new(rtc::rtp::sequence::new_random_sequencer()),
            48_000,
        );
        let now = Instant::now();
        let a = packetizer
            .packetize(now, &Bytes::from_static(b"a"), 960)
            .unwrap();
        let none = packetizer.packetize(now, &Bytes::new(), 960).unwrap();
        let b = packetizer
            .packetize(now, &Bytes::from_static(b"b"), 960)
            .unwrap();
        assert!(none.is_empty());
        let (a, b) = (&a[0].header, &b[0].header);
        assert_eq!(b.timestamp.wrapping_sub(a.timestamp), 1920);
        assert_eq!(b.sequence_number.wrapping_sub(a.sequence_number), 1);
    }

    #[test]
    fn dtx_goes_to_a_peer_whose_opus_parameters_take_it() {
        let ours = format!(
            "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 {}\r\n",
            opus_codec().sdp_fmtp_line
        );
        assert!(peer_takes_dtx(&ours));
        // A browser's offer by default.
        let browser = "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n";
        assert!(!peer_takes_dtx(browser));
        assert!(!peer_takes_dtx("a=fmtp:111 minptime=10;usedtx=0\r\n"));
        assert!(peer_takes_dtx("a=fmtp:111 usedtx=1; stereo=0\r\n"));
        assert!(!peer_takes_dtx("a=fmtp:111\r\nusedtx=1\r\n"));
    }

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
