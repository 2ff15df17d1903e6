//! Call statistics with the W3C getStats names (camelCase in JSON), so the same scripts
//! read Chingu's and a browser's figures. Network figures come from the peer connection
//! ([`NetStats`]); codec, freeze and playout figures from the media pipeline's
//! [`MediaCounters`], which webrtc-rs cannot see. This module depends on neither: both
//! write into its types.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use chingu_media::level::SILENCE_DBFS;
use serde::Serialize;

/// Counters the media threads keep, read for stats. Written with relaxed atomics from
/// the threads that own each figure.
#[derive(Debug, Default)]
pub struct MediaCounters {
    pub frames_encoded: AtomicU64,
    pub key_frames_encoded: AtomicU64,
    pub total_encode_time_us: AtomicU64,
    pub frames_dropped_before_send: AtomicU64,
    pub bytes_encoded: AtomicU64,
    pub encode_width: AtomicU32,
    pub encode_height: AtomicU32,
    pub frames_assembled: AtomicU64,
    pub frames_decoded: AtomicU64,
    pub key_frames_decoded: AtomicU64,
    pub total_decode_time_us: AtomicU64,
    pub frames_dropped: AtomicU64,
    /// Frames lost that no later frame refers to (non-reference pictures): skipped,
    /// without waiting for a keyframe.
    pub frames_lost_unreferenced: AtomicU64,
    /// Frames that mended the picture by referring to a long-term picture (the sender's
    /// answer to a recovery request), not a keyframe.
    pub frames_recovered: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Frames the decoder took without giving a picture back.
    pub frames_without_picture: AtomicU64,
    pub freeze_count: AtomicU64,
    pub total_freezes_duration_us: AtomicU64,
    /// Sums over rendered frames of the interval since the one before (µs) and of its
    /// square (µs²): W3C `totalInterFrameDelay`, `totalSquaredInterFrameDelay`.
    pub total_inter_frame_delay_us: AtomicU64,
    pub total_squared_inter_frame_delay_us2: AtomicU64,
    /// Video frames' time from complete to rendered, held for smooth playout (µs), and
    /// how many frames were rendered.
    pub video_jitter_buffer_delay_us: AtomicU64,
    pub video_jitter_buffer_emitted: AtomicU64,
    pub decode_width: AtomicU32,
    pub decode_height: AtomicU32,
    pub pli_sent: AtomicU64,
    pub keyframes_requested_by_peer: AtomicU64,
    pub audio_packets_received: AtomicU64,
    pub concealed_samples: AtomicU64,
    /// Audio packets the jitter buffer threw away: too late to play, or trimmed when it
    /// ran far ahead of its delay.
    pub audio_packets_discarded: AtomicU64,
    pub fec_recovered: AtomicU64,
    /// Samples of comfort noise played while the peer was silent (Opus DTX).
    pub comfort_noise_samples: AtomicU64,
    pub jitter_buffer_delay_us: AtomicU64,
    pub jitter_buffer_emitted: AtomicU64,
    pub total_samples_received: AtomicU64,
    /// Decoded frames not given to the speaker because it still had more than 60 ms
    /// queued (it started late or stalled).
    pub speaker_frames_dropped: AtomicU64,
    /// The echo canceller's own estimates, refreshed every second while a microphone is
    /// processed, each plus one (0: none yet): ERLE in hundredths of a dB, the echo's
    /// delay in ms.
    pub echo_erle_centi_db: AtomicU32,
    pub echo_delay_ms: AtomicU32,
    /// Audio levels in hundredths of a dB above silence (0 = -120 dBFS, what nothing
    /// measured yet reads as; 12_000 = full scale).
    local_level: AtomicU32,
    remote_level: AtomicU32,
}

impl MediaCounters {
    /// Stores the echo canceller's estimates (see the fields).
    pub fn set_echo(&self, erle_db: Option<f64>, delay_ms: Option<i32>) {
        let erle = erle_db.map_or(0, |db| (db.clamp(0.0, 200.0) * 100.0) as u32 + 1);
        let delay = delay_ms.map_or(0, |ms| ms.max(0) as u32 + 1);
        self.echo_erle_centi_db.store(erle, Relaxed);
        self.echo_delay_ms.store(delay, Relaxed);
    }

    pub fn local_level_dbfs(&self) -> f32 {
        load_level(&self.local_level)
    }

    pub fn remote_level_dbfs(&self) -> f32 {
        load_level(&self.remote_level)
    }

    /// The level of what we send, from its last 20 ms.
    pub fn set_local_level(&self, samples: &[i16]) {
        store_level(&self.local_level, samples);
    }

    /// The level of what we play, from its last 20 ms.
    pub fn set_remote_level(&self, samples: &[i16]) {
        store_level(&self.remote_level, samples);
    }
}

fn store_level(slot: &AtomicU32, samples: &[i16]) {
    let above_silence = chingu_media::level::dbfs(samples) - SILENCE_DBFS;
    slot.store(
        (above_silence * 100.0).clamp(0.0, -SILENCE_DBFS * 100.0) as u32,
        Relaxed,
    );
}

fn load_level(slot: &AtomicU32) -> f32 {
    slot.load(Relaxed) as f32 / 100.0 + SILENCE_DBFS
}

/// What the transport knows, per direction and kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetStats {
    pub video_packets_sent: u64,
    pub video_bytes_sent: u64,
    pub video_nack_count_received: u32,
    pub video_pli_count_received: u32,
    pub video_packets_received: u64,
    pub video_bytes_received: u64,
    pub video_packets_lost: i64,
    pub video_jitter: f64,
    pub video_nack_count_sent: u32,
    /// Sent over RTX (RFC 4588) in answer to NACKs.
    pub video_retransmitted_packets_sent: u64,
    /// Received over RTX and restored to the media stream.
    pub video_retransmitted_packets_received: u64,
    pub audio_packets_sent: u64,
    pub audio_bytes_sent: u64,
    pub audio_packets_received: u64,
    pub audio_bytes_received: u64,
    pub audio_packets_lost: i64,
    pub audio_jitter: f64,
    /// Seconds; from RTCP receiver reports, else the ICE candidate pair.
    pub round_trip_time: Option<f64>,
    pub available_outgoing_bitrate: Option<f64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Encoded video frames handed to the transport.
    pub video_frames_sent: u64,
    /// The candidate pair ICE selected (none before it did).
    pub path: Option<CallPath>,
    /// Every candidate of the peer's that ICE knows: signalled, and peer-reflexive ones
    /// learnt from its checks.
    pub remote_candidates: Vec<PathCandidate>,
}

/// How a candidate was obtained (RFC 8445 §5.1.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum CandidateKind {
    /// An address of the machine's own interface.
    #[default]
    Host,
    /// The address a NAT maps it to, as a STUN server saw it.
    Srflx,
    /// An address learnt from the peer's connectivity checks.
    Prflx,
    /// An address on a TURN relay.
    Relay,
}

/// One end of a candidate pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct PathCandidate {
    pub kind: CandidateKind,
    /// IP address (empty when the stack redacted it).
    pub address: String,
    pub port: u16,
    /// "udp" or "tcp": how media travels from this candidate.
    pub protocol: String,
    /// For our relay candidates, how we reach the TURN server ("udp", "tcp", "tls").
    pub relay_protocol: Option<String>,
}

/// The path the call's media takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct CallPath {
    /// Through a TURN relay (ours or the peer's), rather than directly between the two.
    pub relayed: bool,
    pub local: PathCandidate,
    pub remote: PathCandidate,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct OutboundVideo {
    pub frames_encoded: u64,
    pub key_frames_encoded: u64,
    /// Seconds.
    pub total_encode_time: f64,
    pub frames_sent: u64,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub frame_width: u32,
    pub frame_height: u32,
    pub nack_count: u32,
    pub pli_count: u32,
    /// Sent over RTX in answer to NACKs.
    pub retransmitted_packets_sent: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct InboundVideo {
    pub frames_received: u64,
    pub frames_decoded: u64,
    pub key_frames_decoded: u64,
    /// Seconds.
    pub total_decode_time: f64,
    pub frames_dropped: u64,
    /// Frames lost that nothing later referred to: skipped without a keyframe.
    pub frames_lost_unreferenced: u64,
    /// Frames that mended the picture from a long-term picture, not a keyframe.
    pub frames_recovered: u64,
    pub freeze_count: u64,
    /// Seconds.
    pub total_freezes_duration: f64,
    /// Seconds, and seconds squared: the intervals between rendered frames (their
    /// spread is judder).
    pub total_inter_frame_delay: f64,
    pub total_squared_inter_frame_delay: f64,
    /// Seconds frames were held before rendering (W3C `jitterBufferDelay`, counted here
    /// from when a frame was complete), and how many were rendered.
    pub jitter_buffer_delay: f64,
    pub jitter_buffer_emitted_count: u64,
    pub packets_received: u64,
    pub packets_lost: i64,
    pub jitter: f64,
    pub bytes_received: u64,
    pub frame_width: u32,
    pub frame_height: u32,
    pub nack_count: u32,
    pub pli_count: u64,
    /// Received over RTX (restored to the media stream, counted in `packets_received` too).
    pub retransmitted_packets_received: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct OutboundAudio {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// dBFS of what we send (0 = full scale).
    pub audio_level_dbfs: f32,
    /// W3C media-source `echoReturnLossEnhancement`: the echo canceller's own estimate
    /// of what it removes (its linear filter), dB; null without a processed microphone.
    pub echo_return_loss_enhancement: Option<f64>,
    /// The echo's delay (speaker to microphone) the canceller found, ms.
    pub echo_delay_ms: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct InboundAudio {
    pub packets_received: u64,
    pub packets_lost: i64,
    pub jitter: f64,
    pub total_samples_received: u64,
    pub concealed_samples: u64,
    /// W3C `packetsDiscarded`: too late to play, or dropped to bring the delay back down.
    pub packets_discarded: u64,
    pub fec_packets_recovered: u64,
    /// Samples of comfort noise played while the peer sent nothing in a silence (Opus
    /// DTX): part of `totalSamplesReceived`, not of `concealedSamples` (nothing was lost).
    pub comfort_noise_samples: u64,
    /// Seconds, summed over emitted packets (divide by the count for the average).
    pub jitter_buffer_delay: f64,
    pub jitter_buffer_emitted_count: u64,
    pub audio_level_dbfs: f32,
    /// Decoded frames not played because the speaker still had 60 ms queued (it started
    /// late or stalled): each is 20 ms of delay taken back out.
    pub speaker_frames_dropped: u64,
}

/// One snapshot, emitted every second during a call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct CallStats {
    /// Milliseconds since the call connected.
    pub elapsed_ms: u64,
    pub outbound_video: OutboundVideo,
    pub inbound_video: InboundVideo,
    pub outbound_audio: OutboundAudio,
    pub inbound_audio: InboundAudio,
    pub round_trip_time: Option<f64>,
    /// What our congestion control lets us send, bits/s.
    pub available_outgoing_bitrate: Option<f64>,
    /// What the peer's lets it send to us (it tells us on the control channel), bits/s.
    pub peer_available_outgoing_bitrate: Option<f64>,
    /// The path media takes (none until ICE has selected one).
    pub path: Option<CallPath>,
    /// The peer's candidates ICE knows (what the peer revealed of its addresses).
    pub remote_candidates: Vec<PathCandidate>,
}

impl CallStats {
    pub fn collect(elapsed_ms: u64, net: &NetStats, c: &MediaCounters) -> Self {
        let secs = |us: &std::sync::atomic::AtomicU64| us.load(Relaxed) as f64 / 1e6;
        Self {
            elapsed_ms,
            outbound_video: OutboundVideo {
                frames_encoded: c.frames_encoded.load(Relaxed),
                key_frames_encoded: c.key_frames_encoded.load(Relaxed),
                total_encode_time: secs(&c.total_encode_time_us),
                frames_sent: net.video_frames_sent,
                packets_sent: net.video_packets_sent,
                bytes_sent: net.video_bytes_sent,
                frame_width: c.encode_width.load(Relaxed),
                frame_height: c.encode_height.load(Relaxed),
                nack_count: net.video_nack_count_received,
                pli_count: net
                    .video_pli_count_received
                    .max(c.keyframes_requested_by_peer.load(Relaxed) as u32),
                retransmitted_packets_sent: net.video_retransmitted_packets_sent,
            },
            inbound_video: InboundVideo {
                frames_received: c.frames_assembled.load(Relaxed),
                frames_decoded: c.frames_decoded.load(Relaxed),
                key_frames_decoded: c.key_frames_decoded.load(Relaxed),
                total_decode_time: secs(&c.total_decode_time_us),
                frames_dropped: c.frames_dropped.load(Relaxed),
                frames_lost_unreferenced: c.frames_lost_unreferenced.load(Relaxed),
                frames_recovered: c.frames_recovered.load(Relaxed),
                freeze_count: c.freeze_count.load(Relaxed),
                total_freezes_duration: secs(&c.total_freezes_duration_us),
                total_inter_frame_delay: secs(&c.total_inter_frame_delay_us),
                total_squared_inter_frame_delay: c.total_squared_inter_frame_delay_us2.load(Relaxed)
                    as f64
                    / 1e12,
                jitter_buffer_delay: secs(&c.video_jitter_buffer_delay_us),
                jitter_buffer_emitted_count: c.video_jitter_buffer_emitted.load(Relaxed),
                packets_received: net.video_packets_received,
                packets_lost: net.video_packets_lost,
                jitter: net.video_jitter,
                bytes_received: net.video_bytes_received,
                frame_width: c.decode_width.load(Relaxed),
                frame_height: c.decode_height.load(Relaxed),
                nack_count: net.video_nack_count_sent,
                pli_count: c.pli_sent.load(Relaxed),
                retransmitted_packets_received: net.video_retransmitted_packets_received,
            },
            outbound_audio: OutboundAudio {
                packets_sent: net.audio_packets_sent,
                bytes_sent: net.audio_bytes_sent,
                audio_level_dbfs: c.local_level_dbfs(),
                echo_return_loss_enhancement: c
                    .echo_erle_centi_db
                    .load(Relaxed)
                    .checked_sub(1)
                    .map(|centi| f64::from(centi) / 100.0),
                echo_delay_ms: c.echo_delay_ms.load(Relaxed).checked_sub(1),
            },
            inbound_audio: InboundAudio {
                packets_received: net.audio_packets_received,
                packets_lost: net.audio_packets_lost,
                jitter: net.audio_jitter,
                total_samples_received: c.total_samples_received.load(Relaxed),
                concealed_samples: c.concealed_samples.load(Relaxed),
                packets_discarded: c.audio_packets_discarded.load(Relaxed),
                fec_packets_recovered: c.fec_recovered.load(Relaxed),
                comfort_noise_samples: c.comfort_noise_samples.load(Relaxed),
                jitter_buffer_delay: secs(&c.jitter_buffer_delay_us),
                jitter_buffer_emitted_count: c.jitter_buffer_emitted.load(Relaxed),
                audio_level_dbfs: c.remote_level_dbfs(),
                speaker_frames_dropped: c.speaker_frames_dropped.load(Relaxed),
            },
            round_trip_time: net.round_trip_time,
            available_outgoing_bitrate: net.available_outgoing_bitrate,
            peer_available_outgoing_bitrate: None,
            path: net.path.clone(),
            remote_candidates: net.remote_candidates.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_kept_in_dbfs() {
        let c = MediaCounters::default();
        assert_eq!(
            c.local_level_dbfs(),
            SILENCE_DBFS,
            "nothing measured yet reads as silence"
        );
        c.set_local_level(&[0; 960]);
        assert_eq!(c.local_level_dbfs(), SILENCE_DBFS);
        c.set_remote_level(&[i16::MAX; 960]);
        assert!(c.remote_level_dbfs() > -0.1, "full scale");
    }

    #[test]
    fn the_echo_cancellers_estimates_are_none_until_set() {
        let c = MediaCounters::default();
        let stats = CallStats::collect(1000, &NetStats::default(), &c);
        assert_eq!(stats.outbound_audio.echo_return_loss_enhancement, None);
        assert_eq!(stats.outbound_audio.echo_delay_ms, None);
        c.set_echo(Some(23.456), Some(0));
        let stats = CallStats::collect(1000, &NetStats::default(), &c);
        assert_eq!(
            stats.outbound_audio.echo_return_loss_enhancement,
            Some(23.45)
        );
        assert_eq!(stats.outbound_audio.echo_delay_ms, Some(0));
        c.set_echo(None, Some(-5));
        let stats = CallStats::collect(1000, &NetStats::default(), &c);
        assert_eq!(stats.outbound_audio.echo_return_loss_enhancement, None);
        assert_eq!(stats.outbound_audio.echo_delay_ms, Some(0));
        let json = serde_json::to_value(&stats).unwrap();
        assert!(
            json["outboundAudio"]
                .get("echoReturnLossEnhancement")
                .is_some()
        );
    }

    #[test]
    fn json_uses_the_w3c_names() {
        let c = MediaCounters::default();
        c.frames_decoded.store(7, Relaxed);
        let stats = CallStats::collect(1000, &NetStats::default(), &c);
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["inboundVideo"]["framesDecoded"], 7);
        for key in [
            "framesEncoded",
            "totalEncodeTime",
            "keyFramesEncoded",
            "framesSent",
        ] {
            assert!(json["outboundVideo"].get(key).is_some(), "{key}");
        }
        for key in [
            "freezeCount",
            "totalFreezesDuration",
            "packetsLost",
            "jitter",
        ] {
            assert!(json["inboundVideo"].get(key).is_some(), "{key}");
        }
        for key in [
            "jitterBufferDelay",
            "jitterBufferEmittedCount",
            "concealedSamples",
        ] {
            assert!(json["inboundAudio"].get(key).is_some(), "{key}");
        }
        assert!(json.get("roundTripTime").is_some());
        assert!(json.get("availableOutgoingBitrate").is_some());
    }
}
