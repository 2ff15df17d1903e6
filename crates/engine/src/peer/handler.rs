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
    /// Media is interrupted (told once, until it is restored).
    pub(super) interrupted: AtomicBool,
    pub(super) closing: Arc<AtomicBool>,
    pub(super) tasks: Arc<PeerTasks>,
    pub(super) nudge: Arc<NudgeState>,
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
                } else if self.interrupted.swap(false, Ordering::SeqCst) {
                    self.emit(PeerEvent::Restored);
                }
            }
            // Media stopped: ICE found the path silent, or (after connecting) an ICE restart
            // is under way, perhaps started by the peer before our own checks noticed.
            RTCPeerConnectionState::Disconnected | RTCPeerConnectionState::Connecting
                if self.connected.load(Ordering::SeqCst)
                    && !self.interrupted.swap(true, Ordering::SeqCst) =>
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
        self.tasks.spawn(pump_track(track, sink, kind));
    }
}

/// Forwards inbound RTP to the pipeline. A full queue drops the packet (the pipeline is
/// behind: NACK and PLI recover) rather than stalling the driver.
async fn pump_track(track: Arc<dyn TrackRemote>, sink: mpsc::Sender<RtpIn>, kind: RtpCodecKind) {
    let mut dropped = 0u64;
    let mut forwarded = 0u64;
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                if forwarded == 0 {
                    tracing::debug!(?kind, "remote track: first packet");
                }
                forwarded += 1;
                let rtp = RtpIn {
                    sequence: packet.header.sequence_number,
                    timestamp: packet.header.timestamp,
                    marker: packet.header.marker,
                    payload: packet.payload,
                    arrived: Instant::now(),
                };
                match sink.try_send(rtp) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        dropped += 1;
                        if dropped.is_power_of_two() {
                            tracing::warn!(dropped, "media pipeline behind: RTP dropped");
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
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
