//! The connection's event handler. Its callbacks run inside the webrtc-rs driver, so they
//! only forward: events to a bounded channel (never waiting), inbound tracks and the data
//! channel to pump tasks the peer owns ([`PeerTasks`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use chingu_proto::Signal;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::{Mutex, mpsc};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState,
};

use super::liveness::{Check, Liveness, Silent, WATCH_INTERVAL};
use super::privacy::CandidatePolicy;
use super::route::{self, MediaRoute};
use super::{CONTROL_CHANNEL, NudgeState, PeerEvent, PeerTasks};
use crate::packets::{InboundSinks, RtpIn};

pub(super) struct Handler {
    pub(super) events: mpsc::Sender<PeerEvent>,
    pub(super) policy: CandidatePolicy,
    pub(super) route: Option<Arc<dyn MediaRoute>>,
    pub(super) sinks: InboundSinks,
    pub(super) channel: Arc<Mutex<Option<Arc<dyn DataChannel>>>>,
    pub(super) connected: AtomicBool,
    /// Whether media is interrupted (told once, until it is restored).
    pub(super) liveness: Arc<Liveness>,
    pub(super) closing: Arc<AtomicBool>,
    pub(super) tasks: Arc<PeerTasks>,
    pub(super) nudge: Arc<NudgeState>,
    /// The negotiated RED payload type (0: none), shared with our audio track.
    pub(super) red_payload_type: Arc<std::sync::atomic::AtomicU8>,
}

impl Handler {
    fn emit(&self, event: PeerEvent) {
        if let Err(e) = self.events.try_send(event) {
            tracing::warn!("peer event dropped: {e}");
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => match self
                .policy
                .filter(&init.candidate)
                .and_then(|c| match &self.route {
                    Some(r) => route::local(r.as_ref(), &c),
                    None => Some(c),
                }) {
                Some(candidate) => self.emit(PeerEvent::Candidate(Signal::Candidate {
                    candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_mline_index: init.sdp_mline_index,
                })),
                None => tracing::debug!(candidate = init.candidate, "local candidate kept private"),
            },
            Err(e) => tracing::warn!("local candidate not serialisable: {e}"),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.emit(PeerEvent::GatheringComplete);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection state");
        match state {
            RTCPeerConnectionState::Connected => {
                self.nudge.connected();
                if !self.connected.swap(true, Ordering::SeqCst) {
                    self.emit(PeerEvent::Connected);
                } else if self.liveness.connected() {
                    self.emit(PeerEvent::Restored);
                }
            }
            // ICE found the path silent: media stopped, unless it still arrives (only STUN
            // counts for ICE, and on a lossy path its checks go unanswered; liveness.rs).
            RTCPeerConnectionState::Disconnected if self.connected.load(Ordering::SeqCst) => {
                match self.liveness.ice_silent(Instant::now()) {
                    Silent::Interrupted => self.emit(PeerEvent::Interrupted),
                    Silent::Watch => {
                        tracing::debug!("ICE checks unanswered but media still arrives: watching");
                        let liveness = Arc::clone(&self.liveness);
                        self.tasks.spawn(watch_media(liveness, self.events.clone()));
                    }
                    Silent::Nothing => {}
                }
            }
            // An ICE restart is under way (perhaps started by the peer before our own
            // checks noticed): media stopped.
            RTCPeerConnectionState::Connecting
                if self.connected.load(Ordering::SeqCst) && self.liveness.interrupt() =>
            {
                self.emit(PeerEvent::Interrupted)
            }
            RTCPeerConnectionState::Failed => {
                self.emit(PeerEvent::Failed("ICE/DTLS connection failed".into()))
            }
            RTCPeerConnectionState::Closed if !self.closing.load(Ordering::SeqCst) => {
                self.emit(PeerEvent::Failed("the connection was closed".into()))
            }
            _ => {}
        }
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        match channel.label().await {
            Ok(label) if label == CONTROL_CHANNEL => {}
            other => {
                tracing::warn!(?other, "unexpected data channel from the peer; closing it");
                let _ = channel.close().await;
                return;
            }
        }
        *self.channel.lock().await = Some(Arc::clone(&channel));
        self.tasks.spawn(pump_channel(channel, self.events.clone()));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let kind = track.kind().await;
        let sink = match kind {
            RtpCodecKind::Video => self.sinks.video.clone(),
            RtpCodecKind::Audio => self.sinks.audio.clone(),
            _ => return,
        };
        let ssrcs = track.ssrcs().await;
        tracing::debug!(?kind, ?ssrcs, "remote track");
        let red = (kind == RtpCodecKind::Audio).then(|| Arc::clone(&self.red_payload_type));
        let liveness = Arc::clone(&self.liveness);
        self.tasks
            .spawn(pump_track(track, sink, kind, red, liveness));
    }
}

/// While ICE is silent but media arrived lately: tells `Interrupted` once media is
/// silent too; ends when ICE is back.
async fn watch_media(liveness: Arc<Liveness>, events: mpsc::Sender<PeerEvent>) {
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        match liveness.check(Instant::now()) {
            Check::Watching => {}
            Check::Done => return,
            Check::Interrupted => {
                if let Err(e) = events.try_send(PeerEvent::Interrupted) {
                    tracing::warn!("peer event dropped: {e}");
                }
                return;
            }
        }
    }
}

/// Hands `emit` what the pipeline gets for one RTP packet: itself, or, for audio in RED
/// (`red`: the negotiated payload type), the copies of earlier frames it carries (each
/// at its own timestamp, which is what the jitter buffer places frames by; its sequence
/// number assumes one 20 ms frame per packet, true of copies from us, not across a peer's
/// DTX gap) and then its own frame. Nothing is allocated per packet.
pub(super) fn inbound(
    packet: rtc::rtp::Packet,
    red: Option<u8>,
    arrived: Instant,
    mut emit: impl FnMut(RtpIn),
) {
    let header = &packet.header;
    let plain = |payload| RtpIn {
        sequence: header.sequence_number,
        timestamp: header.timestamp,
        marker: header.marker,
        payload,
        copy: false,
        copies: 0,
        arrived,
    };
    if red.is_none_or(|red| red == 0 || red != header.payload_type) {
        emit(plain(packet.payload.clone()));
        return;
    }
    let red = match crate::red::decode(&packet.payload) {
        Ok(red) => red,
        Err(e) => {
            tracing::debug!("audio packet dropped: {e}");
            return;
        }
    };
    const FRAME_TICKS: u32 = 960;
    for copy in &red.copies {
        let back = copy.offset / FRAME_TICKS;
        if copy.offset % FRAME_TICKS != 0 || back == 0 || back > 16 {
            continue;
        }
        emit(RtpIn {
            sequence: header.sequence_number.wrapping_sub(back as u16),
            timestamp: header.timestamp.wrapping_sub(copy.offset),
            marker: false,
            payload: copy.data.clone(),
            copy: true,
            copies: 0,
            arrived,
        });
    }
    emit(RtpIn {
        copies: red.copies.len().min(u8::MAX as usize) as u8,
        ..plain(red.primary)
    });
}

/// Forwards inbound RTP to the pipeline. A full queue drops the packet (the pipeline is
/// behind: NACK and PLI recover) rather than stalling the driver.
async fn pump_track(
    track: Arc<dyn TrackRemote>,
    sink: mpsc::Sender<RtpIn>,
    kind: RtpCodecKind,
    red: Option<Arc<std::sync::atomic::AtomicU8>>,
    liveness: Arc<Liveness>,
) {
    let mut dropped = 0u64;
    let mut forwarded = 0u64;
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                if forwarded == 0 {
                    tracing::debug!(?kind, "remote track: first packet");
                }
                forwarded += 1;
                let red = red
                    .as_ref()
                    .map(|r| r.load(std::sync::atomic::Ordering::Relaxed));
                let mut closed = false;
                let now = Instant::now();
                liveness.media(now);
                inbound(packet, red, now, |rtp| match sink.try_send(rtp) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        dropped += 1;
                        if dropped.is_power_of_two() {
                            tracing::warn!(dropped, "media pipeline behind: RTP dropped");
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
                });
                if closed {
                    break;
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    tracing::debug!(?kind, forwarded, dropped, "remote track ended");
}

/// Forwards the control channel's opening and text messages as events.
pub(super) async fn pump_channel(channel: Arc<dyn DataChannel>, events: mpsc::Sender<PeerEvent>) {
    while let Some(event) = channel.poll().await {
        let out = match event {
            DataChannelEvent::OnOpen => PeerEvent::ChannelOpen,
            DataChannelEvent::OnMessage(msg) => match String::from_utf8(msg.data.to_vec()) {
                Ok(text) if msg.is_string => PeerEvent::ChannelMessage(text),
                _ => {
                    tracing::warn!("non-text message on the control channel ignored");
                    continue;
                }
            },
            DataChannelEvent::OnClose => break,
            _ => continue,
        };
        if events.send(out).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, ts: u32, pt: u8, payload: Vec<u8>) -> rtc::rtp::Packet {
        let mut p = rtc::rtp::Packet::default();
        p.header.sequence_number = seq;
        p.header.timestamp = ts;
        p.header.payload_type = pt;
        p.payload = bytes::Bytes::from(payload);
        p
    }

    fn inbound_all(packet: rtc::rtp::Packet, red: Option<u8>, now: Instant) -> Vec<RtpIn> {
        let mut out = Vec::new();
        inbound(packet, red, now, |rtp| out.push(rtp));
        out
    }

    #[test]
    fn red_packets_become_their_frame_and_the_copies_they_carry() {
        let now = Instant::now();
        let mut red = Vec::new();
        crate::red::encode(111, b"ten", &[(1920, b"eight"), (960, b"nine")], &mut red);
        let out = inbound_all(packet(10, 9600, 63, red), Some(63), now);
        let got: Vec<(u16, u32, &[u8], bool, u8)> = out
            .iter()
            .map(|p| (p.sequence, p.timestamp, &p.payload[..], p.copy, p.copies))
            .collect();
        assert_eq!(
            got,
            vec![
                (8, 7680, &b"eight"[..], true, 0),
                (9, 8640, &b"nine"[..], true, 0),
                (10, 9600, &b"ten"[..], false, 2),
            ]
        );
        // Plain Opus (another payload type, or no RED negotiated) passes as it is.
        for red in [Some(63), Some(0), None] {
            let out = inbound_all(packet(11, 1, 111, b"opus".to_vec()), red, now);
            assert_eq!(out.len(), 1);
            assert_eq!((&out[0].payload[..], out[0].copy), (&b"opus"[..], false));
        }
        // A RED payload that does not parse is dropped, with no panic; copies at offsets
        // that are not whole frames are skipped.
        assert!(inbound_all(packet(12, 1, 63, vec![0x80 | 111, 0]), Some(63), now).is_empty());
        let mut odd = Vec::new();
        crate::red::encode(111, b"p", &[(500, b"odd")], &mut odd);
        let out = inbound_all(packet(13, 1000, 63, odd), Some(63), now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].copies, 1);
    }
}
