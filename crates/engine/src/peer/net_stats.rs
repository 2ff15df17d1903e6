//! The transport's statistics report (webrtc-rs types) mapped to our [`NetStats`].

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use webrtc::peer_connection::{RTCStatsReport, RTCStatsReportEntry as E};

use crate::stats::NetStats;

pub(super) fn net_stats(report: &RTCStatsReport, video_frames_sent: u64) -> NetStats {
    let mut n = NetStats {
        video_frames_sent,
        ..NetStats::default()
    };
    let mut rtt_from_rr = None;
    for entry in report.iter() {
        match entry {
            E::OutboundRtp(s) => {
                let sent = &s.sent_rtp_stream_stats;
                match sent.rtp_stream_stats.kind {
                    RtpCodecKind::Video => {
                        n.video_packets_sent += sent.packets_sent;
                        n.video_bytes_sent += sent.bytes_sent;
                        n.video_nack_count_received += s.nack_count;
                        n.video_pli_count_received += s.pli_count;
                    }
                    RtpCodecKind::Audio => {
                        n.audio_packets_sent += sent.packets_sent;
                        n.audio_bytes_sent += sent.bytes_sent;
                    }
                    _ => {}
                }
            }
            E::InboundRtp(s) => {
                let recv = &s.received_rtp_stream_stats;
                match recv.rtp_stream_stats.kind {
                    RtpCodecKind::Video => {
                        n.video_packets_received += recv.packets_received;
                        n.video_bytes_received += s.bytes_received;
                        n.video_packets_lost += recv.packets_lost;
                        n.video_jitter = recv.jitter;
                        n.video_nack_count_sent += s.nack_count;
                    }
                    RtpCodecKind::Audio => {
                        n.audio_packets_received += recv.packets_received;
                        n.audio_bytes_received += s.bytes_received;
                        n.audio_packets_lost += recv.packets_lost;
                        n.audio_jitter = recv.jitter;
                    }
                    _ => {}
                }
            }
            E::RemoteInboundRtp(s) if s.round_trip_time_measurements > 0 => {
                rtt_from_rr = Some(s.round_trip_time);
            }
            E::IceCandidatePair(p) if p.nominated => {
                n.bytes_sent = p.bytes_sent;
                n.bytes_received = p.bytes_received;
                if p.current_round_trip_time > 0.0 {
                    n.round_trip_time = Some(p.current_round_trip_time);
                }
                if p.available_outgoing_bitrate > 0.0 {
                    n.available_outgoing_bitrate = Some(p.available_outgoing_bitrate);
                }
            }
            _ => {}
        }
    }
    if rtt_from_rr.is_some() {
        n.round_trip_time = rtt_from_rr;
    }
    n
}
