//! The engine actor: one task owns the signaling client, the call state machine, and the
//! current call's peer connection and media — it is their only owner. Commands come in on
//! a bounded channel; typed events go out on another. Decoded video does not go through
//! events: it is handed to the [`VideoSink`](crate::pipeline::VideoSink) callbacks on the
//! decoding thread.
//!
//! The actor never blocks: device and codec work happens on the media threads, and
//! every await here is on a channel or on the peer connection's driver. Decisions are the
//! call machine's ([`crate::call_state`]); this module carries out its effects.

use std::time::{Duration, Instant};

use chingu_proto::{CallId, ClientMessage, Friend, IceServer, Role, ServerMessage, Signal};
use tokio::sync::mpsc;

use crate::api::{CallView, Command, EngineConfig, EngineEvent};
use crate::call_state::{CallMachine, CallState, CommandFailure, Effect, Input};
use crate::control::ControlMessage;
use crate::packets::{self, InboundMedia};
use crate::peer::{Peer, PeerEvent};
use crate::pipeline::{CallMedia, MediaNotice};
use crate::signaling::{SignalingClient, SignalingEvent};
use crate::stats::CallStats;

/// Device errors and keyframe requests queued from the media threads.
const NOTICE_QUEUE: usize = 16;
/// Commands queued for the actor.
const COMMAND_QUEUE: usize = 64;
/// Events queued for the consumer; beyond this, events are dropped (logged).
const EVENT_QUEUE: usize = 256;
/// How often the device's addresses are looked at during a call.
const NETWORK_CHECK: Duration = Duration::from_millis(500);
/// How long an offerer waits for the answer to its ICE-restart offer before it may make
/// another (the offer may have gone to a server connection of the peer's that was dead).
const RESTART_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Handle to a running engine. Dropping every clone stops the engine: it hangs up or
/// leaves the queue, sends what is queued, and ends.
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
        let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
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

/// The call a peer connection exists for.
struct ActiveCall {
    call_id: CallId,
    peer: Peer,
    events: mpsc::Receiver<PeerEvent>,
    /// Handed to the media when the connection is up.
    inbound: Option<InboundMedia>,
    media: Option<CallMedia>,
    matched_at: Instant,
    connected_at: Option<Instant>,
    /// Whether we made the first offer: only the offerer ever offers (ICE restarts too).
    offerer: bool,
    /// The offerer's ICE restart awaiting its answer: when its offer went out. One restart
    /// at a time: a second offer before the first's answer would make that answer apply
    /// to the wrong offer.
    restart_sent: Option<Instant>,
    /// A restart was asked for while one was in flight: do it when the answer comes.
    restart_wanted: bool,
    /// What the peer last said its congestion control lets it send us, bits/s.
    peer_send_bps: Option<f64>,
}

struct Actor {
    config: EngineConfig,
    machine: CallMachine,
    signaling: SignalingClient,
    ice_servers: Vec<IceServer>,
    events: mpsc::Sender<EngineEvent>,
    call: Option<ActiveCall>,
    notices_tx: mpsc::Sender<MediaNotice>,
    /// The device's addresses when last looked at during a call.
    addresses: Vec<std::net::IpAddr>,
    /// The friend list as the server last told it.
    friends: Vec<Friend>,
    /// A friend list arriving in pages, until its last.
    friends_pages: Option<Vec<Friend>>,
}

async fn run(
    config: EngineConfig,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<EngineEvent>,
) {
    let (notices_tx, mut notices) = mpsc::channel(NOTICE_QUEUE);
    let mut actor = Actor {
        machine: CallMachine::new(config.auto_search),
        signaling: SignalingClient::start(config.signaling.clone()),
        config,
        ice_servers: Vec::new(),
        events,
        call: None,
        notices_tx,
        addresses: Vec::new(),
        friends: Vec::new(),
        friends_pages: None,
    };
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    let mut level_tick = tokio::time::interval(Duration::from_millis(100));
    let mut network_tick = tokio::time::interval(NETWORK_CHECK);
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
            Some(notice) = notices.recv() => actor.media_notice(notice).await,
            _ = stats_tick.tick() => actor.stats().await,
            _ = level_tick.tick() => actor.levels(),
            _ = network_tick.tick() => actor.check_network().await,
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
            Effect::Notify(reason) => self.emit(EngineEvent::State(CallView::Ended { reason })),
            Effect::ApplyMedia {
                muted,
                camera_enabled,
            } => {
                if let Some(media) = self.call.as_ref().and_then(|c| c.media.as_ref()) {
                    media.set_muted(muted);
                    media.set_video_enabled(camera_enabled);
                }
            }
            Effect::AnnounceMedia { audio, video } => {
                if let Some(call) = &self.call {
                    // Before the channel opens this fails; the state is sent again on open.
                    let msg = ControlMessage::Media { audio, video };
                    let _ = call.peer.send_text(&msg.to_json()).await;
                }
            }
            Effect::SendChat(text) => {
                let sent = match &self.call {
                    Some(call) => call
                        .peer
                        .send_text(&ControlMessage::Chat { text }.to_json())
                        .await
                        .is_ok(),
                    None => false,
                };
                if !sent {
                    self.emit(EngineEvent::CommandFailed(CommandFailure::ChatNotSent));
                }
            }
            Effect::Report {
                call_id,
                reason,
                note,
            } => {
                self.send(ClientMessage::Report {
                    call_id,
                    reason,
                    note,
                })
                .await
            }
            Effect::Rate { call_id, stars } => {
                self.send(ClientMessage::Rate { call_id, stars }).await
            }
            Effect::Block { call_id } => self.send(ClientMessage::Block { call_id }).await,
            Effect::AddFriend { call_id } => self.send(ClientMessage::AddFriend { call_id }).await,
            Effect::CallFriend(friend) => self.send(ClientMessage::CallFriend { friend }).await,
            Effect::Refuse(failure) => self.emit(EngineEvent::CommandFailed(failure)),
            Effect::RestartIce(call_id) => self.restart_ice(call_id, true).await,
            Effect::ResumeCall(call_id) => self.send(ClientMessage::ResumeCall { call_id }).await,
            Effect::ReconnectServer => self.signaling.reconnect(),
            Effect::ProbeServer => self.signaling.probe(),
        }
        None
    }

    /// The offerer restarts ICE and sends the new offer; the answerer asks it to.
    /// `ours`: we decided to (not answering the peer's request).
    async fn restart_ice(&mut self, call_id: CallId, ours: bool) {
        let Some(call) = &mut self.call else { return };
        if call.call_id != call_id {
            return;
        }
        if !call.offerer {
            if ours {
                tracing::info!(%call_id, "asking the offerer to restart ICE");
                self.send(ClientMessage::Signal {
                    call_id,
                    signal: Signal::IceRestart,
                })
                .await;
            }
            return;
        }
        let now = Instant::now();
        if call
            .restart_sent
            .is_some_and(|t| now - t < RESTART_ANSWER_WAIT)
        {
            call.restart_wanted = true;
            return;
        }
        call.restart_sent = Some(now);
        call.restart_wanted = false;
        tracing::info!(%call_id, "restarting ICE");
        match call.peer.restart_offer().await {
            Ok(sdp) => {
                self.send(ClientMessage::Signal {
                    call_id,
                    signal: Signal::Offer { sdp },
                })
                .await
            }
            Err(e) => tracing::warn!(%call_id, "ICE restart failed: {e}"),
        }
    }

    /// During a call, notices the device's addresses changing.
    async fn check_network(&mut self) {
        if !matches!(self.machine.state, CallState::InCall { .. }) {
            self.addresses.clear();
            return;
        }
        let now = crate::peer::local_addresses();
        if self.addresses.is_empty() {
            self.addresses = now;
            return;
        }
        if now != self.addresses {
            tracing::info!(before = ?self.addresses, after = ?now, "the network changed");
            self.addresses = now;
            self.step(Input::NetworkChanged).await;
        }
    }

    async fn start_peer(&mut self, call_id: CallId, role: Role) -> Result<(), String> {
        self.close_call().await;
        let (sinks, inbound) = packets::inbound();
        let mut options = self.config.peer.clone();
        options.ice_servers = self.ice_servers.clone();
        // Congestion control never asks for more than lets the encoder reach its ceiling.
        options.max_bitrate_bps =
            crate::pipeline::ladder::target_for_video(self.config.media.video_bitrate_bps);
        let offerer = role == Role::Offerer;
        // Boxed: building a peer connection is a large future (~20 KiB).
        let built = Box::pin(Peer::new(options, offerer, sinks)).await;
        let (peer, events) = built.map_err(|e| e.to_string())?;
        let offer = if offerer {
            match peer.create_offer().await {
                Ok(sdp) => Some(sdp),
                Err(e) => {
                    peer.close().await;
                    return Err(e.to_string());
                }
            }
        } else {
            None
        };
        self.call = Some(ActiveCall {
            call_id: call_id.clone(),
            peer,
            events,
            inbound: Some(inbound),
            media: None,
            matched_at: Instant::now(),
            connected_at: None,
            offerer,
            restart_sent: None,
            restart_wanted: false,
            peer_send_bps: None,
        });
        if let Some(sdp) = offer {
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
        let input = match command {
            Command::Search(prefs) => Input::Search(prefs),
            Command::Cancel => Input::Cancel,
            Command::Next => Input::Next,
            Command::HangUp => Input::HangUp,
            Command::SetMuted(muted) => Input::SetMuted(muted),
            Command::SetCameraEnabled(on) => Input::SetCameraEnabled(on),
            Command::SendChat(text) => Input::Chat(text),
            Command::Report { reason, note } => Input::Report { reason, note },
            Command::Rate(stars) => Input::Rate(stars),
            Command::Block => Input::Block,
            Command::AddFriend => Input::AddFriend,
            Command::CallFriend(friend) => Input::CallFriend(friend),
            // The rest of the friends' commands are the server's business alone.
            Command::RemoveFriend(friend) => {
                return self.to_server(ClientMessage::RemoveFriend { friend }).await;
            }
            Command::BlockFriend(friend) => {
                return self.to_server(ClientMessage::BlockFriend { friend }).await;
            }
            Command::CancelFriendCall(friend) => {
                return self
                    .to_server(ClientMessage::CancelFriendCall { friend })
                    .await;
            }
            Command::AnswerFriendCall { friend, accept } => {
                return self
                    .to_server(ClientMessage::AnswerFriendCall { friend, accept })
                    .await;
            }
            // Which devices to use is configuration, not call state.
            Command::SetVideoSource(source) => {
                self.config.media.video = source.clone();
                if let Some(media) = self.call.as_ref().and_then(|c| c.media.as_ref()) {
                    media.set_video_source(source);
                }
                return;
            }
            Command::SetAudioSource(source) => {
                self.config.media.audio = source.clone();
                if let Some(media) = self.call.as_ref().and_then(|c| c.media.as_ref()) {
                    media.set_audio_source(source);
                }
                return;
            }
            Command::SetAudioProcessing(settings) => {
                self.config.media.processing = settings;
                if let Some(media) = self.call.as_ref().and_then(|c| c.media.as_ref()) {
                    media.set_processing(settings);
                }
                return;
            }
        };
        self.step(input).await;
    }

    /// Sends a command that only the server acts on, or says it cannot.
    async fn to_server(&self, msg: ClientMessage) {
        if self.machine.server_up {
            self.send(msg).await;
        } else {
            self.emit(EngineEvent::CommandFailed(CommandFailure::NotConnected));
        }
    }

    /// Applies a change to the friend list and reports the whole list.
    fn friends_changed(&mut self, change: impl FnOnce(&mut Vec<Friend>)) {
        change(&mut self.friends);
        self.emit(EngineEvent::Friends(self.friends.clone()));
    }

    async fn signaling_event(&mut self, event: SignalingEvent) {
        match event {
            SignalingEvent::Connected { ice_servers, .. } => {
                self.ice_servers = ice_servers;
                // A new connection: the server sends the list again if there is one.
                self.friends_pages = None;
                if !self.friends.is_empty() {
                    self.friends_changed(Vec::clear);
                }
                self.emit(EngineEvent::ServerConnected);
                self.step(Input::ServerConnected).await;
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
                friend,
            } => {
                self.step(Input::Matched {
                    call_id,
                    role,
                    peer,
                    friend,
                })
                .await
            }
            ServerMessage::Friends { friends, more } => {
                let mut pages = self.friends_pages.take().unwrap_or_default();
                pages.extend(friends);
                if more {
                    self.friends_pages = Some(pages);
                } else {
                    self.friends_changed(|list| *list = pages);
                }
            }
            ServerMessage::FriendRequested { .. } => self.emit(EngineEvent::FriendRequested),
            ServerMessage::FriendAdded { friend } => {
                let added = friend.clone();
                self.friends_changed(|list| {
                    list.retain(|f| f.id != friend.id);
                    list.insert(0, friend);
                });
                self.emit(EngineEvent::FriendAdded(added));
            }
            ServerMessage::FriendRemoved { friend } => {
                self.friends_changed(|list| list.retain(|f| f.id != friend));
            }
            ServerMessage::Presence { friend, presence } => self.friends_changed(|list| {
                for f in list.iter_mut().filter(|f| f.id == friend) {
                    f.presence = presence;
                }
            }),
            ServerMessage::Ringing { friend } => self.emit(EngineEvent::Ringing(friend)),
            ServerMessage::IncomingCall { friend } => self.emit(EngineEvent::IncomingCall(friend)),
            ServerMessage::RingEnded { friend } => self.emit(EngineEvent::RingEnded(friend)),
            ServerMessage::FriendCallFailed { friend, reason } => {
                self.emit(EngineEvent::FriendCallFailed { friend, reason })
            }
            ServerMessage::PeerLeft { call_id, reason } => {
                self.step(Input::PeerLeft { call_id, reason }).await
            }
            ServerMessage::Signal { call_id, signal } => self.signal(call_id, signal).await,
            ServerMessage::Error { code, message, .. } => {
                self.emit(EngineEvent::ServerError { code, message })
            }
            ServerMessage::OnlineCount { online, waiting } => {
                self.emit(EngineEvent::OnlineCount { online, waiting })
            }
            ServerMessage::Reported { .. } => self.emit(EngineEvent::Reported),
            ServerMessage::Blocked { .. } => self.emit(EngineEvent::Blocked),
            ServerMessage::Rated { .. } => self.emit(EngineEvent::Rated),
            ServerMessage::CallResumed { call_id } => {
                tracing::info!(%call_id, "the call resumed on the new server connection");
                self.step(Input::CallResumed { call_id }).await
            }
            ServerMessage::IceServers { ice_servers } => {
                if let Some(call) = &self.call {
                    call.peer.set_ice_servers(&ice_servers).await;
                }
                self.ice_servers = ice_servers;
            }
            _ => {}
        }
    }

    async fn signal(&mut self, call_id: CallId, signal: Signal) {
        let Some(call) = &self.call else { return };
        if call.call_id != call_id {
            return; // a late message for a previous call
        }
        let result = match signal {
            Signal::Offer { sdp } => match call.peer.accept_offer(sdp).await {
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
            Signal::Answer { sdp } => {
                let restarting = call.restart_sent.is_some();
                let result = call.peer.accept_answer(sdp).await;
                if let Some(call) = &mut self.call {
                    call.restart_sent = None;
                    if restarting && result.is_err() {
                        // An answer to an offer that was superseded (or lost its way):
                        // the restart is simply tried again.
                        call.restart_wanted = true;
                    }
                    if std::mem::take(&mut call.restart_wanted) {
                        self.restart_ice(call_id, false).await;
                        return;
                    }
                }
                if restarting {
                    if let Err(e) = result {
                        tracing::info!(%call_id, "ICE restart answer not applied: {e}");
                    }
                    return;
                }
                result
            }
            Signal::IceRestart => {
                self.restart_ice(call_id, false).await;
                return;
            }
            other => call.peer.add_candidate(other).await,
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
                if let Some(inbound) = call.inbound.take() {
                    match CallMedia::start(
                        self.config.media.clone(),
                        inbound,
                        self.notices_tx.clone(),
                        call.peer.bandwidth(),
                    ) {
                        Ok((media, outbound)) => {
                            media.set_muted(self.machine.muted);
                            media.set_video_enabled(self.machine.camera_enabled);
                            call.peer.send_media(outbound);
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
                // Talking with a friend now: the list says so (the server, which keeps the
                // date, says it on the next connection).
                if let CallState::InCall {
                    friend: Some(friend),
                    ..
                } = &self.machine.state
                {
                    let friend = friend.clone();
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    self.friends_changed(|list| {
                        for f in list.iter_mut().filter(|f| f.id == friend) {
                            f.last_call_unix = now;
                        }
                    });
                }
            }
            PeerEvent::Failed(why) => self.step(Input::MediaFailed { call_id, why }).await,
            PeerEvent::Interrupted | PeerEvent::Restored => {
                let interrupted = matches!(event, PeerEvent::Interrupted);
                self.emit(EngineEvent::MediaInterrupted(interrupted));
                self.step(Input::MediaInterrupted {
                    call_id,
                    interrupted,
                })
                .await
            }
            PeerEvent::ChannelOpen => self.step(Input::ChannelOpen { call_id }).await,
            PeerEvent::ChannelMessage(text) => match ControlMessage::from_peer(&text) {
                Some(ControlMessage::Chat { text }) => self.emit(EngineEvent::Chat(text)),
                Some(ControlMessage::Media { audio, video }) => {
                    self.emit(EngineEvent::PeerMedia { audio, video })
                }
                Some(ControlMessage::Net { send_kbps }) => {
                    if let Some(call) = &mut self.call {
                        call.peer_send_bps = Some(f64::from(send_kbps) * 1000.0);
                    }
                }
                None => {}
            },
            PeerEvent::KeyframeRequested => {
                if let Some(media) = &call.media {
                    media.request_keyframe();
                }
            }
            PeerEvent::PictureFeedback(feedback) => {
                if let Some(media) = &call.media {
                    media.picture_feedback(feedback);
                }
            }
        }
    }

    async fn media_notice(&mut self, notice: MediaNotice) {
        match notice {
            MediaNotice::DeviceError { device, message } => {
                self.emit(EngineEvent::DeviceError { device, message })
            }
            MediaNotice::KeyframeNeeded => {
                if let Some(call) = &self.call {
                    call.peer.request_keyframe().await;
                }
            }
            MediaNotice::PictureFeedback(feedback) => {
                if let Some(call) = &self.call {
                    call.peer.send_picture_feedback(feedback).await;
                }
            }
        }
    }

    async fn stats(&self) {
        let Some(call) = &self.call else { return };
        let (Some(media), Some(connected)) = (&call.media, call.connected_at) else {
            return;
        };
        let net = call.peer.net_stats().await;
        if let Some(bps) = net.available_outgoing_bitrate {
            let net = ControlMessage::Net {
                send_kbps: (bps / 1000.0) as u32,
            };
            // Before the channel opens there is no one to tell yet.
            let _ = call.peer.send_text(&net.to_json()).await;
        }
        let mut stats = CallStats::collect(
            connected.elapsed().as_millis() as u64,
            &net,
            &media.counters,
        );
        stats.peer_available_outgoing_bitrate = call.peer_send_bps;
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
