//! The engine actor: one task owns the signaling client, the call state machine, the
//! peer connection and the call's media. Commands come in on a bounded channel; typed
//! events go out on another. Decoded video does not go through events: it is handed to
//! the [`VideoSink`](crate::pipeline::VideoSink) callbacks on the decoding thread.
//!
//! The actor never blocks: device and codec work happens on the media threads, and
//! every await here is on a channel or on the peer connection's driver.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chingu_proto::{
    CallId, ClientMessage, ErrorCode, IceServer, PeerProfile, ReportReason, Role, ServerMessage,
    Signal,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::call_state::{CallMachine, CallState, Effect, EndReason, Input, SearchPrefs};
use crate::peer::{MediaSinks, Peer, PeerEvent, PeerOptions, RTP_QUEUE, RtpIn};
use crate::pipeline::{AudioSource, CallMedia, MediaConfig, MediaNotice, VideoSource};
use crate::signaling::{SignalingClient, SignalingConfig, SignalingEvent};
use crate::stats::CallStats;

/// Longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 1000;
/// Longest control-channel message accepted from a peer, in bytes.
const MAX_CONTROL_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub signaling: SignalingConfig,
    pub peer: PeerOptions,
    pub media: MediaConfig,
    /// After the peer leaves, search again with the same preferences.
    pub auto_search: bool,
}

/// What the user (or a program) asks the engine to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    Search(SearchPrefs),
    Cancel,
    Next,
    HangUp,
    SetMuted(bool),
    SetCameraEnabled(bool),
    /// Switch the camera (or the synthetic source) mid-call; `None` sends no video.
    SetVideoSource(Option<VideoSource>),
    /// Switch the microphone mid-call; `None` sends silence.
    SetAudioSource(Option<AudioSource>),
    SendChat(String),
    Report {
        reason: ReportReason,
        note: Option<String>,
    },
    Block,
    /// How the current or last call was, 1 to 5 stars (for call quality analysis).
    Rate(u8),
}

/// The call state as the UI shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum CallView {
    Idle,
    Searching,
    Connecting { peer: PeerProfile },
    InCall { peer: PeerProfile },
    Ended { reason: String },
}

impl CallView {
    fn of(state: &CallState) -> Self {
        match state {
            CallState::Idle => Self::Idle,
            CallState::Searching { .. } => Self::Searching,
            CallState::Connecting { peer, .. } => Self::Connecting { peer: peer.clone() },
            CallState::InCall { peer, .. } => Self::InCall { peer: peer.clone() },
            CallState::Ended { reason } => Self::Ended {
                reason: describe(reason),
            },
        }
    }
}

/// A short, stable description of why a call ended.
pub fn describe(reason: &EndReason) -> String {
    match reason {
        EndReason::HungUp => "hung-up".into(),
        EndReason::PeerLeft(r) => format!(
            "peer-left:{}",
            serde_json::to_string(r)
                .unwrap_or_default()
                .trim_matches('"')
        ),
        EndReason::ConnectTimeout => "connect-timeout".into(),
        EndReason::ConnectFailed(why) => format!("connect-failed: {why}"),
        EndReason::MediaLost(why) => format!("media-lost: {why}"),
        EndReason::ServerLost => "server-lost".into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EngineEvent {
    ServerConnected,
    ServerDisconnected {
        why: String,
        retry_in: Duration,
    },
    /// The server refused this client for good (protocol version).
    ServerRefused {
        message: String,
    },
    State(CallView),
    /// Matched until DTLS connected, in milliseconds.
    MediaConnected {
        setup_ms: u64,
    },
    /// `true`: nothing has arrived from the peer for a few seconds (the network may be
    /// down; the call ends if it stays so); `false`: it flows again.
    MediaInterrupted(bool),
    /// The peer's chat message.
    Chat(String),
    /// Whether the peer sends audio and video (they muted or turned the camera off).
    PeerMedia {
        audio: bool,
        video: bool,
    },
    Stats(Box<CallStats>),
    AudioLevels {
        local_dbfs: f32,
        remote_dbfs: f32,
    },
    DeviceError {
        device: String,
        message: String,
    },
    /// A command could not be carried out, or the server said no.
    Error {
        code: Option<ErrorCode>,
        message: String,
    },
    OnlineCount {
        online: u32,
        waiting: u32,
    },
    Reported,
    Blocked,
    Rated,
}

/// Messages on the data channel between two Chingu peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlMessage {
    Chat { text: String },
    Media { audio: bool, video: bool },
}

/// Handle to a running engine. Dropping it stops the engine.
#[derive(Debug, Clone)]
pub struct Engine {
    commands: mpsc::Sender<Command>,
}

impl Engine {
    /// Starts the engine task; returns its handle, its events and the task itself.
    pub fn start(
        config: EngineConfig,
    ) -> (
        Self,
        mpsc::Receiver<EngineEvent>,
        tokio::task::JoinHandle<()>,
    ) {
        let (commands, commands_rx) = mpsc::channel(64);
        let (events_tx, events) = mpsc::channel(256);
        let task = tokio::spawn(run(config, commands_rx, events_tx));
        (Self { commands }, events, task)
    }

    /// Sends a command; fails only when the engine has stopped.
    pub async fn send(&self, command: Command) -> Result<(), EngineStopped> {
        self.commands.send(command).await.map_err(|_| EngineStopped)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the engine has stopped")]
pub struct EngineStopped;

struct ActiveCall {
    call_id: CallId,
    peer: Arc<Peer>,
    events: mpsc::Receiver<PeerEvent>,
    rtp: Option<(mpsc::Receiver<RtpIn>, mpsc::Receiver<RtpIn>)>,
    media: Option<CallMedia>,
    matched_at: Instant,
    connected_at: Option<Instant>,
}

struct Actor {
    config: EngineConfig,
    machine: CallMachine,
    signaling: SignalingClient,
    ice_servers: Vec<IceServer>,
    events: mpsc::Sender<EngineEvent>,
    call: Option<ActiveCall>,
    notices_tx: mpsc::Sender<MediaNotice>,
    /// A search asked for before the server connection was up.
    pending_search: Option<SearchPrefs>,
    muted: bool,
    camera_enabled: bool,
    /// The last call's id, for reports and blocks after it ended.
    last_call: Option<CallId>,
}

async fn run(
    config: EngineConfig,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<EngineEvent>,
) {
    let (notices_tx, mut notices) = mpsc::channel(16);
    let mut actor = Actor {
        machine: CallMachine::new(config.auto_search),
        signaling: SignalingClient::start(config.signaling.clone()),
        config,
        ice_servers: Vec::new(),
        events,
        call: None,
        notices_tx,
        pending_search: None,
        muted: false,
        camera_enabled: true,
        last_call: None,
    };
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    let mut level_tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        let timeout = actor.machine.poll_timeout();
        tokio::select! {
            command = commands.recv() => match command {
                Some(c) => actor.command(c).await,
                None => break,
            },
            event = actor.signaling.next_event() => match event {
                Some(e) => actor.signaling_event(e).await,
                None => break,
            },
            Some(event) = next_peer_event(&mut actor.call) => actor.peer_event(event).await,
            Some(notice) = notices.recv() => match notice {
                MediaNotice::DeviceError { device, message } => {
                    actor.emit(EngineEvent::DeviceError { device: device.into(), message });
                }
            },
            _ = stats_tick.tick() => actor.stats().await,
            _ = level_tick.tick() => actor.levels(),
            () = sleep_until(timeout) => actor.step(Input::Tick).await,
        }
        if actor.events.is_closed() {
            break;
        }
    }
    // Leaving: tell the server (and so the peer) rather than just vanishing.
    match actor.machine.state {
        CallState::Connecting { .. } | CallState::InCall { .. } => actor.step(Input::HangUp).await,
        CallState::Searching { .. } => actor.step(Input::Cancel).await,
        _ => {}
    }
    actor.close_call().await;
    actor.signaling.stop().await;
}

async fn next_peer_event(call: &mut Option<ActiveCall>) -> Option<PeerEvent> {
    match call {
        Some(c) => c.events.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    fn emit(&self, event: EngineEvent) {
        if let Err(mpsc::error::TrySendError::Full(event)) = self.events.try_send(event) {
            tracing::warn!(?event, "engine event dropped: the consumer is behind");
        }
    }

    fn error(&self, message: impl Into<String>) {
        self.emit(EngineEvent::Error {
            code: None,
            message: message.into(),
        });
    }

    /// Feeds the state machine and carries out its effects; an effect that fails feeds
    /// the machine again (a peer that cannot start is a media failure).
    async fn step(&mut self, input: Input) {
        let before = CallView::of(&self.machine.state);
        let mut inputs = std::collections::VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let effects = self.machine.step(input, Instant::now());
            for effect in effects {
                if let Some(follow_up) = self.apply(effect).await {
                    inputs.push_back(follow_up);
                }
            }
        }
        let after = CallView::of(&self.machine.state);
        if after != before {
            self.emit(EngineEvent::State(after));
        }
    }

    async fn send(&self, msg: ClientMessage) {
        tracing::trace!(kind = msg.type_name(), "to server");
        if let Err(e) = self.signaling.send(msg).await {
            tracing::debug!("not sent: {e}");
        }
    }

    async fn apply(&mut self, effect: Effect) -> Option<Input> {
        match effect {
            Effect::JoinQueue(prefs) => {
                self.send(ClientMessage::JoinQueue {
                    nickname: prefs.nickname,
                    languages: prefs.languages,
                    interests: prefs.interests,
                })
                .await;
            }
            Effect::LeaveQueue => self.send(ClientMessage::LeaveQueue).await,
            Effect::SendNext(call_id) => self.send(ClientMessage::Next { call_id }).await,
            Effect::SendHangUp(call_id) => self.send(ClientMessage::HangUp { call_id }).await,
            Effect::StartPeer { call_id, role } => {
                if let Err(why) = self.start_peer(call_id.clone(), role).await {
                    return Some(Input::MediaFailed { call_id, why });
                }
            }
            Effect::ClosePeer(_) => self.close_call().await,
            Effect::Notify(reason) => self.emit(EngineEvent::State(CallView::Ended {
                reason: describe(&reason),
            })),
        }
        None
    }

    async fn start_peer(&mut self, call_id: CallId, role: Role) -> Result<(), String> {
        self.close_call().await;
        self.last_call = Some(call_id.clone());
        let (vtx, vrx) = mpsc::channel(RTP_QUEUE);
        let (atx, arx) = mpsc::channel(RTP_QUEUE / 4);
        let mut options = self.config.peer.clone();
        options.ice_servers = self.ice_servers.clone();
        let offerer = role == Role::Offerer;
        // Boxed: building a peer connection is a large future (~20 KiB).
        let built = Box::pin(Peer::new(
            options,
            offerer,
            MediaSinks {
                video: vtx,
                audio: atx,
            },
        ))
        .await;
        let (peer, events) = built.map_err(|e| e.to_string())?;
        let peer = Arc::new(peer);
        self.call = Some(ActiveCall {
            call_id: call_id.clone(),
            peer: Arc::clone(&peer),
            events,
            rtp: Some((vrx, arx)),
            media: None,
            matched_at: Instant::now(),
            connected_at: None,
        });
        if offerer {
            let sdp = peer.create_offer().await.map_err(|e| e.to_string())?;
            self.send(ClientMessage::Signal {
                call_id,
                signal: Signal::Offer { sdp },
            })
            .await;
        }
        Ok(())
    }

    async fn close_call(&mut self) {
        if let Some(call) = self.call.take() {
            tracing::debug!(call_id = %call.call_id, "closing the call");
            if let Some(media) = call.media {
                media.stop().await;
            }
            tracing::debug!(call_id = %call.call_id, "media stopped");
            call.peer.close().await;
            tracing::debug!(call_id = %call.call_id, "peer closed");
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Search(prefs) => {
                if self.signaling.is_connected() {
                    self.step(Input::Search(prefs)).await;
                } else {
                    // Joined as soon as the server connection is up.
                    self.pending_search = Some(prefs);
                    self.emit(EngineEvent::State(CallView::Searching));
                }
            }
            Command::Cancel => {
                if self.pending_search.take().is_some() {
                    self.emit(EngineEvent::State(CallView::Idle));
                }
                self.step(Input::Cancel).await;
            }
            Command::Next => self.step(Input::Next).await,
            Command::HangUp => self.step(Input::HangUp).await,
            Command::SetMuted(muted) => {
                self.muted = muted;
                if let Some(media) = self.call.as_ref().and_then(|c| c.media.as_ref()) {
                    media.set_muted(muted);
                }
                self.announce_media().await;
            }
            Command::SetCameraEnabled(on) => {
                self.camera_enabled = on;
                if let Some(media) = self.call.as_ref().and_then(|c| c.media.as_ref()) {
                    media.set_video_enabled(on);
                }
                self.announce_media().await;
            }
            Command::SetVideoSource(source) => {
                self.config.media.video = source.clone();
                if let Some(media) = self.call.as_ref().and_then(|c| c.media.as_ref()) {
                    media.set_video_source(source);
                }
            }
            Command::SetAudioSource(source) => {
                self.config.media.audio = source.clone();
                if let Some(media) = self.call.as_ref().and_then(|c| c.media.as_ref()) {
                    media.set_audio_source(source);
                }
            }
            Command::SendChat(text) => {
                let text = text.trim().to_owned();
                if text.is_empty() || text.chars().count() > MAX_CHAT_CHARS {
                    self.error(format!(
                        "a chat message must have 1 to {MAX_CHAT_CHARS} characters"
                    ));
                    return;
                }
                let Some(call) = &self.call else {
                    self.error("not in a call");
                    return;
                };
                let msg = ControlMessage::Chat { text };
                let json = serde_json::to_string(&msg).unwrap_or_default();
                if let Err(e) = call.peer.send_text(&json).await {
                    self.error(format!("chat not sent: {e}"));
                }
            }
            Command::Report { reason, note } => match self.last_call.clone() {
                Some(call_id) => {
                    self.send(ClientMessage::Report {
                        call_id,
                        reason,
                        note,
                    })
                    .await
                }
                None => self.error("no call to report"),
            },
            Command::Rate(stars) => match self.last_call.clone() {
                Some(call_id) => self.send(ClientMessage::Rate { call_id, stars }).await,
                None => self.error("no call to rate"),
            },
            Command::Block => match self.last_call.clone() {
                Some(call_id) => self.send(ClientMessage::Block { call_id }).await,
                None => self.error("no call to block"),
            },
        }
    }

    async fn announce_media(&self) {
        if let Some(call) = &self.call {
            let msg = ControlMessage::Media {
                audio: !self.muted,
                video: self.camera_enabled,
            };
            let json = serde_json::to_string(&msg).unwrap_or_default();
            // Before the channel opens this fails; the state is sent again on open.
            let _ = call.peer.send_text(&json).await;
        }
    }

    async fn signaling_event(&mut self, event: SignalingEvent) {
        match event {
            SignalingEvent::Connected { ice_servers, .. } => {
                self.ice_servers = ice_servers;
                self.emit(EngineEvent::ServerConnected);
                if let Some(prefs) = self.pending_search.take() {
                    self.step(Input::Search(prefs)).await;
                }
            }
            SignalingEvent::Disconnected { why, retry_in } => {
                self.emit(EngineEvent::ServerDisconnected { why, retry_in });
                self.step(Input::ServerLost).await;
            }
            SignalingEvent::Refused { message, .. } => {
                self.emit(EngineEvent::ServerRefused { message });
                self.step(Input::ServerLost).await;
            }
            SignalingEvent::Message(msg) => self.server_message(msg).await,
        }
    }

    async fn server_message(&mut self, msg: ServerMessage) {
        match msg {
            ServerMessage::Matched {
                call_id,
                role,
                peer,
            } => {
                self.step(Input::Matched {
                    call_id,
                    role,
                    peer,
                })
                .await
            }
            ServerMessage::PeerLeft { call_id, reason } => {
                self.step(Input::PeerLeft { call_id, reason }).await
            }
            ServerMessage::Signal { call_id, signal } => self.signal(call_id, signal).await,
            ServerMessage::Error { code, message, .. } => self.emit(EngineEvent::Error {
                code: Some(code),
                message,
            }),
            ServerMessage::OnlineCount { online, waiting } => {
                self.emit(EngineEvent::OnlineCount { online, waiting })
            }
            ServerMessage::Reported { .. } => self.emit(EngineEvent::Reported),
            ServerMessage::Blocked { .. } => self.emit(EngineEvent::Blocked),
            ServerMessage::Rated { .. } => self.emit(EngineEvent::Rated),
            _ => {}
        }
    }

    async fn signal(&mut self, call_id: CallId, signal: Signal) {
        let Some(call) = &self.call else { return };
        if call.call_id != call_id {
            return; // a late message for a previous call
        }
        let peer = Arc::clone(&call.peer);
        let result = match signal {
            Signal::Offer { sdp } => match peer.accept_offer(sdp).await {
                Ok(answer) => {
                    self.send(ClientMessage::Signal {
                        call_id: call_id.clone(),
                        signal: Signal::Answer { sdp: answer },
                    })
                    .await;
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Signal::Answer { sdp } => peer.accept_answer(sdp).await,
            other => peer.add_candidate(other).await,
        };
        if let Err(e) = result {
            tracing::info!(%call_id, "bad signaling from the peer: {e}");
            self.step(Input::MediaFailed {
                call_id,
                why: e.to_string(),
            })
            .await;
        }
    }

    async fn peer_event(&mut self, event: PeerEvent) {
        let Some(call) = &mut self.call else { return };
        let call_id = call.call_id.clone();
        match event {
            PeerEvent::Candidate(signal) => {
                self.send(ClientMessage::Signal { call_id, signal }).await
            }
            PeerEvent::GatheringComplete => {
                self.send(ClientMessage::Signal {
                    call_id,
                    signal: Signal::EndOfCandidates,
                })
                .await
            }
            PeerEvent::Connected => {
                let now = Instant::now();
                call.connected_at = Some(now);
                let setup_ms = (now - call.matched_at).as_millis() as u64;
                if let Some((video, audio)) = call.rtp.take() {
                    match CallMedia::start(
                        Arc::clone(&call.peer),
                        self.config.media.clone(),
                        video,
                        audio,
                        self.notices_tx.clone(),
                    ) {
                        Ok(media) => {
                            media.set_muted(self.muted);
                            media.set_video_enabled(self.camera_enabled);
                            call.media = Some(media);
                        }
                        Err(e) => {
                            self.step(Input::MediaFailed {
                                call_id,
                                why: format!("media threads: {e}"),
                            })
                            .await;
                            return;
                        }
                    }
                }
                self.emit(EngineEvent::MediaConnected { setup_ms });
                self.step(Input::MediaConnected { call_id }).await;
            }
            PeerEvent::Failed(why) => self.step(Input::MediaFailed { call_id, why }).await,
            PeerEvent::Interrupted => self.emit(EngineEvent::MediaInterrupted(true)),
            PeerEvent::Restored => self.emit(EngineEvent::MediaInterrupted(false)),
            PeerEvent::ChannelOpen => self.announce_media().await,
            PeerEvent::ChannelMessage(text) => self.control_message(&text),
            PeerEvent::KeyframeRequested => {
                if let Some(media) = &call.media {
                    media.request_keyframe();
                }
            }
        }
    }

    fn control_message(&self, text: &str) {
        if text.len() > MAX_CONTROL_BYTES {
            tracing::info!("oversized control message from the peer ignored");
            return;
        }
        match serde_json::from_str::<ControlMessage>(text) {
            Ok(ControlMessage::Chat { text }) => {
                let text: String = text.chars().take(MAX_CHAT_CHARS).collect();
                self.emit(EngineEvent::Chat(text));
            }
            Ok(ControlMessage::Media { audio, video }) => {
                self.emit(EngineEvent::PeerMedia { audio, video })
            }
            Err(e) => tracing::info!("unreadable control message from the peer ignored: {e}"),
        }
    }

    async fn stats(&self) {
        let Some(call) = &self.call else { return };
        let (Some(media), Some(connected)) = (&call.media, call.connected_at) else {
            return;
        };
        let net = call.peer.net_stats().await;
        let stats = CallStats::collect(
            connected.elapsed().as_millis() as u64,
            &net,
            &media.counters,
        );
        self.emit(EngineEvent::Stats(Box::new(stats)));
    }

    fn levels(&self) {
        if let Some(media) = self.call.as_ref().and_then(|c| c.media.as_ref()) {
            self.emit(EngineEvent::AudioLevels {
                local_dbfs: media.counters.local_level_dbfs(),
                remote_dbfs: media.counters.remote_level_dbfs(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_are_strict() {
        let chat: ControlMessage = serde_json::from_str(r#"{"type":"chat","text":"hi"}"#).unwrap();
        assert_eq!(chat, ControlMessage::Chat { text: "hi".into() });
        assert!(serde_json::from_str::<ControlMessage>(r#"{"type":"chat"}"#).is_err());
        assert!(
            serde_json::from_str::<ControlMessage>(r#"{"type":"chat","text":"a","x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<ControlMessage>("not json").is_err());
    }
}
