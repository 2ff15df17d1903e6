//! Call statistics with the W3C getStats names (camelCase in JSON), so the same scripts
//! read Chingu's and a browser's figures. Network figures come from the peer connection;
//! codec, freeze and playout figures from the media pipeline, which webrtc-rs cannot see.

use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use crate::pipeline::Counters;

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
    pub freeze_count: u64,
    /// Seconds.
    pub total_freezes_duration: f64,
    pub packets_received: u64,
    pub packets_lost: i64,
    pub jitter: f64,
    pub bytes_received: u64,
    pub frame_width: u32,
    pub frame_height: u32,
    pub nack_count: u32,
    pub pli_count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct OutboundAudio {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// dBFS of what we send (0 = full scale).
    pub audio_level_dbfs: f32,
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
    pub fec_packets_recovered: u64,
    /// Seconds, summed over emitted packets (divide by the count for the average).
    pub jitter_buffer_delay: f64,
    pub jitter_buffer_emitted_count: u64,
    pub audio_level_dbfs: f32,
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
    pub available_outgoing_bitrate: Option<f64>,
}

impl CallStats {
    pub fn collect(elapsed_ms: u64, net: &NetStats, c: &Counters) -> Self {
        let secs = |us: &std::sync::atomic::AtomicU64| us.load(Relaxed) as f64 / 1e6;
        Self {
            elapsed_ms,
            outbound_video: OutboundVideo {
                frames_encoded: c.frames_encoded.load(Relaxed),
                key_frames_encoded: c.key_frames_encoded.load(Relaxed),
                total_encode_time: secs(&c.total_encode_time_us),
                frames_sent: c.frames_sent.load(Relaxed),
                packets_sent: net.video_packets_sent,
                bytes_sent: net.video_bytes_sent,
                frame_width: c.encode_width.load(Relaxed),
                frame_height: c.encode_height.load(Relaxed),
                nack_count: net.video_nack_count_received,
                pli_count: net
                    .video_pli_count_received
                    .max(c.keyframes_requested_by_peer.load(Relaxed) as u32),
            },
            inbound_video: InboundVideo {
                frames_received: c.frames_assembled.load(Relaxed),
                frames_decoded: c.frames_decoded.load(Relaxed),
                key_frames_decoded: c.key_frames_decoded.load(Relaxed),
                total_decode_time: secs(&c.total_decode_time_us),
                frames_dropped: c.frames_dropped.load(Relaxed),
                freeze_count: c.freeze_count.load(Relaxed),
                total_freezes_duration: secs(&c.total_freezes_duration_us),
                packets_received: net.video_packets_received,
                packets_lost: net.video_packets_lost,
                jitter: net.video_jitter,
                bytes_received: net.video_bytes_received,
                frame_width: c.decode_width.load(Relaxed),
                frame_height: c.decode_height.load(Relaxed),
                nack_count: net.video_nack_count_sent,
                pli_count: c.pli_sent.load(Relaxed),
            },
            outbound_audio: OutboundAudio {
                packets_sent: net.audio_packets_sent,
                bytes_sent: net.audio_bytes_sent,
                audio_level_dbfs: c.local_level_dbfs(),
            },
            inbound_audio: InboundAudio {
                packets_received: net.audio_packets_received,
                packets_lost: net.audio_packets_lost,
                jitter: net.audio_jitter,
                total_samples_received: c.total_samples_received.load(Relaxed),
                concealed_samples: c.concealed_samples.load(Relaxed),
                fec_packets_recovered: c.fec_recovered.load(Relaxed),
                jitter_buffer_delay: secs(&c.jitter_buffer_delay_us),
                jitter_buffer_emitted_count: c.jitter_buffer_emitted.load(Relaxed),
                audio_level_dbfs: c.remote_level_dbfs(),
            },
            round_trip_time: net.round_trip_time,
            available_outgoing_bitrate: net.available_outgoing_bitrate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_uses_the_w3c_names() {
        let c = Counters::default();
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
