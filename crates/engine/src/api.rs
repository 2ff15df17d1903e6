//! The engine's public types: how to configure it ([`EngineConfig`]), what to ask of it
//! ([`Command`]) and what it reports ([`EngineEvent`], [`CallView`]). The handle that
//! starts it, [`crate::Engine`], and the actor behind it live in `actor`.

use std::time::Duration;

use chingu_proto::{ErrorCode, Friend, FriendCallFailure, FriendId, PeerProfile, ReportReason};
use serde::Serialize;

use crate::call_state::{CallState, CommandFailure, EndReason, SearchPrefs};
use crate::peer::PeerOptions;
use crate::pipeline::{AudioSource, Device, MediaConfig, ProcessingSettings, VideoSource};
use crate::signaling::SignalingConfig;
use crate::stats::CallStats;

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
    /// Join the queue (as soon as the server connection is up).
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
    /// Turn echo cancellation, noise suppression or gain control on or off, for this
    /// call (at once) and the next ones.
    SetAudioProcessing(ProcessingSettings),
    SendChat(String),
    Report {
        reason: ReportReason,
        note: Option<String>,
    },
    Block,
    /// How the current or last call was, 1 to 5 stars (for call quality analysis).
    Rate(u8),
    /// Ask to be friends with the person of the current or last call; a friendship
    /// needs both to ask (`EngineEvent::FriendAdded`).
    AddFriend,
    RemoveFriend(FriendId),
    /// Remove the friend and never be matched with them again.
    BlockFriend(FriendId),
    /// Ring a friend who is online; leaves the queue if searching.
    CallFriend(FriendId),
    CancelFriendCall(FriendId),
    /// Take or turn down a friend's call (`EngineEvent::IncomingCall`).
    AnswerFriendCall {
        friend: FriendId,
        accept: bool,
    },
}

/// The call state as the UI shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum CallView {
    Idle,
    Searching,
    Connecting {
        peer: PeerProfile,
        friend: Option<FriendId>,
    },
    InCall {
        peer: PeerProfile,
        friend: Option<FriendId>,
    },
    Ended {
        reason: EndReason,
    },
}

impl CallView {
    pub fn of(state: &CallState) -> Self {
        match state {
            CallState::Idle => Self::Idle,
            CallState::Searching { .. } => Self::Searching,
            CallState::Connecting { peer, friend, .. } => Self::Connecting {
                peer: peer.clone(),
                friend: friend.clone(),
            },
            CallState::InCall { peer, friend, .. } => Self::InCall {
                peer: peer.clone(),
                friend: friend.clone(),
            },
            CallState::Ended { reason } => Self::Ended {
                reason: reason.clone(),
            },
        }
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
        device: Device,
        message: String,
    },
    /// The server said no to something we sent.
    ServerError {
        code: ErrorCode,
        message: String,
    },
    /// A command could not be carried out.
    CommandFailed(CommandFailure),
    OnlineCount {
        online: u32,
        waiting: u32,
    },
    Reported,
    Blocked,
    Rated,
    /// The friend list, whole, each time anything in it changes (a friend added or
    /// removed, a presence). Empty after connecting until the server sends it.
    Friends(Vec<Friend>),
    /// Our friend request is noted (nothing is said about whether the other asked).
    FriendRequested,
    /// A new friend: both asked.
    FriendAdded(Friend),
    /// A friend's devices are ringing.
    Ringing(FriendId),
    /// A friend is calling.
    IncomingCall(FriendId),
    /// A ring to us stopped (the caller gave up, it timed out, or we answered elsewhere).
    RingEnded(FriendId),
    /// A call to a friend did not happen.
    FriendCallFailed {
        friend: FriendId,
        reason: FriendCallFailure,
    },
}
