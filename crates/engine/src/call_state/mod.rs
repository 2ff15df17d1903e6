//! What the user's call is doing, as a pure function: [`step`] takes the machine (the call
//! state and what it remembers between calls), one input (a user command, a server
//! message, a media event or the passage of time) and the current time, and returns the
//! next machine and the effects the engine must carry out. No I/O, no clock: every
//! transition is unit-tested.
//!
//! ```text
//! Idle --search--> Searching --matched--> Connecting --media up--> InCall
//!   ^                 |  ^                   |                       |
//!   +-----cancel------+  +--next / peer left (auto-search)----------+
//!   Ended{reason} <--- hang up, connect failure or timeout, media lost,
//!                      server lost while searching or connecting
//! ```
//!
//! Besides the state the machine keeps: the last search (reused by Next and by searching
//! again), whether the server connection is up (a search made while it is down waits
//! and is sent when it comes up), the microphone and camera switches (they outlast
//! calls), and the last call (what a report, rating or block is about).

use std::time::{Duration, Instant};

use chingu_proto::{CallId, PeerLeftReason, PeerProfile, ReportReason, Role};
use serde::Serialize;

use crate::control::MAX_CHAT_CHARS;

/// How long a matched call may take to get media flowing before it is abandoned.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What the user asked to be matched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPrefs {
    pub nickname: String,
    pub languages: Vec<String>,
    pub interests: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallState {
    Idle,
    Searching {
        since: Instant,
        /// Whether the server has our join. A search asked for while the server
        /// connection is down is joined when it comes up.
        joined: bool,
    },
    Connecting {
        call_id: CallId,
        role: Role,
        peer: PeerProfile,
        since: Instant,
    },
    InCall {
        call_id: CallId,
        peer: PeerProfile,
        since: Instant,
    },
    Ended {
        reason: EndReason,
    },
}

/// Why a call (or a search) ended. Tagged by `kind` in JSON (and TypeScript).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[non_exhaustive]
pub enum EndReason {
    /// We hung up.
    HungUp,
    /// The other person left (hung up, pressed Next, or their connection dropped).
    PeerLeft { reason: PeerLeftReason },
    /// Media did not start within [`CONNECT_TIMEOUT`].
    ConnectTimeout,
    /// The connection could not be made (bad description, ICE or DTLS failure).
    ConnectFailed { why: String },
    /// The media connection dropped during the call.
    MediaLost { why: String },
    /// The signaling server went away while searching or connecting.
    ServerLost,
}

/// A short, stable description for logs and the command line: `hung-up`,
/// `peer-left:next`, `connect-failed: …`.
impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::HungUp => f.write_str("hung-up"),
            EndReason::PeerLeft { reason } => write!(f, "peer-left:{}", reason.as_str()),
            EndReason::ConnectTimeout => f.write_str("connect-timeout"),
            EndReason::ConnectFailed { why } => write!(f, "connect-failed: {why}"),
            EndReason::MediaLost { why } => write!(f, "media-lost: {why}"),
            EndReason::ServerLost => f.write_str("server-lost"),
        }
    }
}

/// Why a command could not be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[non_exhaustive]
pub enum CommandFailure {
    #[error("not in a call")]
    NotInCall,
    #[error("there is no recent call to report, rate or block")]
    NoRecentCall,
    #[error("a chat message must have 1 to {MAX_CHAT_CHARS} characters")]
    BadChat,
    #[error("the chat message could not be sent: the chat channel is not open")]
    ChatNotSent,
    #[error("a rating is 1 to 5 stars")]
    BadRating,
}

#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Input {
    // What the user does.
    Search(SearchPrefs),
    Cancel,
    Next,
    HangUp,
    SetMuted(bool),
    SetCameraEnabled(bool),
    Chat(String),
    Report {
        reason: ReportReason,
        note: Option<String>,
    },
    Rate(u8),
    Block,
    // What the server (connection) says.
    ServerConnected,
    Matched {
        call_id: CallId,
        role: Role,
        peer: PeerProfile,
    },
    PeerLeft {
        call_id: CallId,
        reason: PeerLeftReason,
    },
    ServerLost,
    // What the peer connection reports.
    MediaConnected {
        call_id: CallId,
    },
    MediaFailed {
        call_id: CallId,
        why: String,
    },
    /// The control channel to the peer opened.
    ChannelOpen {
        call_id: CallId,
    },
    /// Time passed; see [`CallMachine::poll_timeout`].
    Tick,
}

/// What the engine must do after a step.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Effect {
    JoinQueue(SearchPrefs),
    LeaveQueue,
    SendNext(CallId),
    SendHangUp(CallId),
    /// Create the peer connection; the offerer then sends the offer.
    StartPeer {
        call_id: CallId,
        role: Role,
    },
    /// Close the peer connection (always closed, never just dropped: webrtc-rs leaks).
    ClosePeer(CallId),
    /// Tell the user the last call ended, when the new state does not say it (the engine
    /// searched again on its own).
    Notify(EndReason),
    /// Apply the switches to the call's media, if it has started (media that starts
    /// later reads them from the machine).
    ApplyMedia {
        muted: bool,
        camera_enabled: bool,
    },
    /// Tell the peer whether we send audio and video. Before the control channel opens
    /// this is lost; it is sent again when the channel opens.
    AnnounceMedia {
        audio: bool,
        video: bool,
    },
    SendChat(String),
    Report {
        call_id: CallId,
        reason: ReportReason,
        note: Option<String>,
    },
    Rate {
        call_id: CallId,
        stars: u8,
    },
    Block {
        call_id: CallId,
    },
    /// The command could not be carried out; tell the user why.
    Refuse(CommandFailure),
}

/// The engine's call state plus what it remembers between calls.
#[derive(Debug, Clone, PartialEq)]
pub struct CallMachine {
    pub state: CallState,
    /// The last search, reused by Next and by searching again after the peer leaves.
    pub prefs: Option<SearchPrefs>,
    /// Search again on its own when the peer leaves (the random-chat default).
    pub auto_search: bool,
    /// Whether the signaling server connection is up.
    pub server_up: bool,
    pub muted: bool,
    pub camera_enabled: bool,
    /// The current or last call, for reports, ratings and blocks after it ended.
    pub last_call: Option<CallId>,
}

impl CallMachine {
    pub fn new(auto_search: bool) -> Self {
        Self {
            state: CallState::Idle,
            prefs: None,
            auto_search,
            server_up: false,
            muted: false,
            camera_enabled: true,
            last_call: None,
        }
    }

    /// Applies one input; returns the effects, in order.
    pub fn step(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        let (next, effects) = step(self, input, now);
        *self = next;
        effects
    }

    /// When to feed [`Input::Tick`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            CallState::Connecting { since, .. } => Some(since + CONNECT_TIMEOUT),
            _ => None,
        }
    }

    /// The call a peer connection exists for.
    pub fn current_call(&self) -> Option<&CallId> {
        match &self.state {
            CallState::Connecting { call_id, .. } | CallState::InCall { call_id, .. } => {
                Some(call_id)
            }
            _ => None,
        }
    }

    fn announce(&self) -> Effect {
        Effect::AnnounceMedia {
            audio: !self.muted,
            video: self.camera_enabled,
        }
    }

    fn apply_media(&self) -> Effect {
        Effect::ApplyMedia {
            muted: self.muted,
            camera_enabled: self.camera_enabled,
        }
    }
}

/// The transition function. Inputs that do not apply to the state (a late message about
/// an old call, a second hang-up) change nothing and cause nothing.
pub fn step(machine: &CallMachine, input: Input, now: Instant) -> (CallMachine, Vec<Effect>) {
    let mut next = machine.clone();
    let effects = match input {
        // Commands that do not change the call state.
        Input::SetMuted(muted) => {
            next.muted = muted;
            switches(&next)
        }
        Input::SetCameraEnabled(on) => {
            next.camera_enabled = on;
            switches(&next)
        }
        Input::Chat(text) => {
            let text = text.trim();
            if text.is_empty() || text.chars().count() > MAX_CHAT_CHARS {
                vec![Effect::Refuse(CommandFailure::BadChat)]
            } else if machine.current_call().is_some() {
                vec![Effect::SendChat(text.to_owned())]
            } else {
                vec![Effect::Refuse(CommandFailure::NotInCall)]
            }
        }
        Input::Report { reason, note } => about_last_call(machine, |call_id| Effect::Report {
            call_id,
            reason,
            note,
        }),
        Input::Rate(stars) if !(1..=5).contains(&stars) => {
            vec![Effect::Refuse(CommandFailure::BadRating)]
        }
        Input::Rate(stars) => about_last_call(machine, |call_id| Effect::Rate { call_id, stars }),
        Input::Block => about_last_call(machine, |call_id| Effect::Block { call_id }),
        Input::ChannelOpen { call_id } if machine.current_call() == Some(&call_id) => {
            vec![machine.announce()]
        }
        Input::ChannelOpen { .. } => Vec::new(),
        // The server connection.
        Input::ServerConnected => {
            next.server_up = true;
            match &machine.state {
                CallState::Searching {
                    since,
                    joined: false,
                } => match &machine.prefs {
                    Some(prefs) => {
                        next.state = CallState::Searching {
                            since: *since,
                            joined: true,
                        };
                        vec![Effect::JoinQueue(prefs.clone())]
                    }
                    None => Vec::new(),
                },
                _ => Vec::new(),
            }
        }
        Input::ServerLost => {
            next.server_up = false;
            let (state, effects) = transition(machine, Input::ServerLost, now);
            next.state = state;
            effects
        }
        Input::Search(prefs) => {
            next.prefs = Some(prefs.clone());
            let (state, effects) = transition(machine, Input::Search(prefs), now);
            next.state = state;
            effects
        }
        Input::Matched {
            call_id,
            role,
            peer,
        } => {
            let (state, effects) = transition(
                machine,
                Input::Matched {
                    call_id: call_id.clone(),
                    role,
                    peer,
                },
                now,
            );
            if matches!(state, CallState::Connecting { .. }) {
                next.last_call = Some(call_id);
            }
            next.state = state;
            effects
        }
        other => {
            let (state, effects) = transition(machine, other, now);
            next.state = state;
            effects
        }
    };
    (next, effects)
}

/// After a switch changed: apply it to the media, and tell the peer if there is one.
fn switches(machine: &CallMachine) -> Vec<Effect> {
    let mut effects = vec![machine.apply_media()];
    if machine.current_call().is_some() {
        effects.push(machine.announce());
    }
    effects
}

fn about_last_call(machine: &CallMachine, effect: impl FnOnce(CallId) -> Effect) -> Vec<Effect> {
    match &machine.last_call {
        Some(call_id) => vec![effect(call_id.clone())],
        None => vec![Effect::Refuse(CommandFailure::NoRecentCall)],
    }
}

/// The call state's transitions.
fn transition(machine: &CallMachine, input: Input, now: Instant) -> (CallState, Vec<Effect>) {
    use CallState as S;
    use Input as I;
    let state = &machine.state;
    let unchanged = || (state.clone(), Vec::new());
    let current_call = machine.current_call();
    // After a call ends: search again (with a notice) or stop with the reason.
    let end = |call_id: &CallId, reason: EndReason, mut effects: Vec<Effect>| {
        effects.insert(0, Effect::ClosePeer(call_id.clone()));
        match (machine.auto_search, &machine.prefs) {
            (true, Some(prefs)) if matches!(reason, EndReason::PeerLeft { .. }) => {
                if machine.server_up {
                    effects.push(Effect::JoinQueue(prefs.clone()));
                }
                effects.push(Effect::Notify(reason));
                (
                    S::Searching {
                        since: now,
                        joined: machine.server_up,
                    },
                    effects,
                )
            }
            _ => (S::Ended { reason }, effects),
        }
    };
    match (state, input) {
        (S::Idle | S::Ended { .. }, I::Search(prefs)) => search(machine, now, prefs),
        // New preferences while searching keep the place in the queue (server rule).
        (S::Searching { since, .. }, I::Search(prefs)) => {
            let (_, effects) = search(machine, now, prefs);
            (
                S::Searching {
                    since: *since,
                    joined: machine.server_up,
                },
                effects,
            )
        }
        (S::Searching { joined, .. }, I::Cancel) => (
            S::Idle,
            if *joined {
                vec![Effect::LeaveQueue]
            } else {
                Vec::new()
            },
        ),
        (
            S::Searching { joined: true, .. },
            I::Matched {
                call_id,
                role,
                peer,
            },
        ) => (
            S::Connecting {
                call_id: call_id.clone(),
                role,
                peer,
                since: now,
            },
            vec![Effect::StartPeer { call_id, role }],
        ),
        (S::Connecting { call_id, peer, .. }, I::MediaConnected { call_id: id })
            if *call_id == id =>
        {
            (
                S::InCall {
                    call_id: id,
                    peer: peer.clone(),
                    since: now,
                },
                Vec::new(),
            )
        }
        (S::Connecting { call_id, since, .. }, I::Tick) if now >= *since + CONNECT_TIMEOUT => end(
            call_id,
            EndReason::ConnectTimeout,
            vec![Effect::SendHangUp(call_id.clone())],
        ),
        (S::Connecting { .. }, I::MediaFailed { call_id: id, why })
            if current_call == Some(&id) =>
        {
            end(
                &id,
                EndReason::ConnectFailed { why },
                vec![Effect::SendHangUp(id.clone())],
            )
        }
        (S::InCall { .. }, I::MediaFailed { call_id: id, why }) if current_call == Some(&id) => {
            end(
                &id,
                EndReason::MediaLost { why },
                vec![Effect::SendHangUp(id.clone())],
            )
        }
        (
            S::Connecting { call_id, .. } | S::InCall { call_id, .. },
            I::PeerLeft {
                call_id: id,
                reason,
            },
        ) if *call_id == id => end(&id, EndReason::PeerLeft { reason }, Vec::new()),
        (S::Connecting { call_id, .. } | S::InCall { call_id, .. }, I::HangUp) => (
            S::Ended {
                reason: EndReason::HungUp,
            },
            vec![
                Effect::ClosePeer(call_id.clone()),
                Effect::SendHangUp(call_id.clone()),
            ],
        ),
        // Next: the server ends the call and queues us again with the same preferences.
        // With the server away it has already ended the call; we join when it is back.
        (S::Connecting { call_id, .. } | S::InCall { call_id, .. }, I::Next) => {
            let mut effects = vec![Effect::ClosePeer(call_id.clone())];
            if machine.server_up {
                effects.push(Effect::SendNext(call_id.clone()));
            }
            (
                S::Searching {
                    since: now,
                    joined: machine.server_up,
                },
                effects,
            )
        }
        // Media flows peer to peer: a call in progress outlives the signaling server.
        // Searching and connecting need it, so they end; a search still waiting for the
        // server to come up goes on waiting.
        (S::Searching { joined: true, .. }, I::ServerLost) => (
            S::Ended {
                reason: EndReason::ServerLost,
            },
            Vec::new(),
        ),
        (S::Connecting { call_id, .. }, I::ServerLost) => (
            S::Ended {
                reason: EndReason::ServerLost,
            },
            vec![Effect::ClosePeer(call_id.clone())],
        ),
        _ => unchanged(),
    }
}

/// A new search: joined at once if the server is up, else when it comes up.
fn search(machine: &CallMachine, now: Instant, prefs: SearchPrefs) -> (CallState, Vec<Effect>) {
    let joined = machine.server_up;
    (
        CallState::Searching { since: now, joined },
        if joined {
            vec![Effect::JoinQueue(prefs)]
        } else {
            Vec::new()
        },
    )
}

#[cfg(test)]
mod tests;
