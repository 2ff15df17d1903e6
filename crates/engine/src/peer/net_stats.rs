//! The transport's statistics report (webrtc-rs types) mapped to our [`NetStats`].

use rtc::peer_connection::transport::{RTCIceCandidateType, RTCIceServerTransportProtocol};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::statistics::stats::ice_candidate::RTCIceCandidateStats;
use webrtc::peer_connection::{RTCStatsReport, RTCStatsReportEntry as E};

use crate::stats::{CallPath, CandidateKind, NetStats, PathCandidate};

/// `tcp_bridges`: the TURN bridges, by server URL and loopback address (a relay allocated
/// through one is TURN over TCP, or TLS for a `turns:` server).
pub(super) fn net_stats(
    report: &RTCStatsReport,
    video_frames_sent: u64,
    tcp_bridges: &[(String, std::net::SocketAddr)],
) -> NetStats {
    let mut n = NetStats {
        video_frames_sent,
        ..NetStats::default()
    };
    let mut rtt_from_rr = None;
    let mut selected_pair_id = None;
    let mut nominated_pair = None;
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
                        n.video_retransmitted_packets_sent += s.retransmitted_packets_sent;
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
                        n.video_retransmitted_packets_received += s.retransmitted_packets_received;
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
            E::Transport(t) if !t.selected_candidate_pair_id.is_empty() => {
                selected_pair_id = Some(t.selected_candidate_pair_id.as_str());
            }
            E::RemoteCandidate(c) => {
                n.remote_candidates
                    .push(path_candidate(c, false, tcp_bridges))
            }
            E::IceCandidatePair(p) if p.nominated => {
                nominated_pair = Some(p);
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
    let pair = selected_pair_id
        .and_then(|id| match report.get(id) {
            Some(E::IceCandidatePair(p)) => Some(p),
            _ => None,
        })
        .or(nominated_pair);
    n.path = pair.and_then(|p| {
        // Pairs name candidates by their bare ids, the report by prefixed ones. A
        // peer-reflexive remote candidate (learnt from a check) is not in the report.
        let candidate = |prefix: &str, id: &str| match report
            .get(&format!("{prefix}{id}"))
            .or_else(|| report.get(id))
        {
            Some(E::LocalCandidate(c)) => Some(path_candidate(c, true, tcp_bridges)),
            Some(E::RemoteCandidate(c)) => Some(path_candidate(c, false, tcp_bridges)),
            _ => None,
        };
        let local = candidate("RTCLocalIceCandidate_", &p.local_candidate_id)?;
        let remote =
            candidate("RTCRemoteIceCandidate_", &p.remote_candidate_id).unwrap_or(PathCandidate {
                kind: CandidateKind::Prflx,
                ..PathCandidate::default()
            });
        Some(CallPath {
            relayed: local.kind == CandidateKind::Relay || remote.kind == CandidateKind::Relay,
            local,
            remote,
        })
    });
    n
}

fn path_candidate(
    c: &RTCIceCandidateStats,
    local: bool,
    tcp_bridges: &[(String, std::net::SocketAddr)],
) -> PathCandidate {
    let bridge = tcp_bridges
        .iter()
        .find(|(_, local)| c.url.contains(&local.to_string()));
    PathCandidate {
        kind: match c.candidate_type {
            RTCIceCandidateType::Srflx => CandidateKind::Srflx,
            RTCIceCandidateType::Prflx => CandidateKind::Prflx,
            RTCIceCandidateType::Relay => CandidateKind::Relay,
            _ => CandidateKind::Host,
        },
        address: c.address.clone().unwrap_or_default(),
        port: c.port,
        protocol: c.protocol.clone(),
        relay_protocol: match c.relay_protocol {
            // Allocated through one of our TURN/TCP bridges (tcp_turn.rs): webrtc-rs
            // spoke UDP to the bridge, the bridge TCP to the server.
            _ if local && c.candidate_type == RTCIceCandidateType::Relay && bridge.is_some() => {
                let tls = bridge.is_some_and(|(url, _)| url.starts_with("turns:"));
                Some(if tls { "tls" } else { "tcp" }.into())
            }
            RTCIceServerTransportProtocol::Udp => Some("udp".into()),
            RTCIceServerTransportProtocol::Tcp => Some("tcp".into()),
            RTCIceServerTransportProtocol::Tls => Some("tls".into()),
            // webrtc-rs 0.21.1 leaves this unset, but it allocates relays only over UDP
            // (its TURN relayer skips `turn:?transport=tcp` and `turns:`; see
            // docs/decisions/0008-real-networks.md), so any other local relay is TURN/UDP.
            _ if local && c.candidate_type == RTCIceCandidateType::Relay => Some("udp".into()),
            _ => None,
        },
    }
}
