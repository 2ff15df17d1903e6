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

use chingu_proto::{CallId, FriendId, PeerLeftReason, PeerProfile, ReportReason, Role};
use serde::Serialize;

use crate::control::MAX_CHAT_CHARS;

/// How long a matched call may take to get media flowing before it is abandoned.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a call may go without media (ICE disconnected, restarts failing) before it
/// ends: longer than a lift ride, shorter than anyone waits on a frozen picture.
pub const MEDIA_LOST_AFTER: Duration = Duration::from_secs(20);
/// While media stays interrupted, ICE is restarted again this often.
pub const RESTART_RETRY: Duration = Duration::from_secs(2);

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
        /// A call with a friend who was rung (or who rang), not a random match.
        friend: Option<FriendId>,
        since: Instant,
    },
    InCall {
        call_id: CallId,
        peer: PeerProfile,
        friend: Option<FriendId>,
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
    #[error("in a call: hang up first")]
    Busy,
    #[error("not connected to the server")]
    NotConnected,
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
    /// Ask to be friends with the person of the current or last call.
    AddFriend,
    /// Ring a friend.
    CallFriend(FriendId),
    // What the server (connection) says.
    ServerConnected,
    Matched {
        call_id: CallId,
        role: Role,
        peer: PeerProfile,
        friend: Option<FriendId>,
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
    /// Media stopped flowing (ICE disconnected: `true`) or flows again (`false`).
    MediaInterrupted {
        call_id: CallId,
        interrupted: bool,
    },
    /// The device's network changed: an address appeared or went away.
    NetworkChanged,
    /// The server moved our call to this connection (answer to `resume_call`).
    CallResumed {
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
    AddFriend {
        call_id: CallId,
    },
    CallFriend(FriendId),
    /// The command could not be carried out; tell the user why.
    Refuse(CommandFailure),
    /// Restart ICE: the offerer makes a new offer; the answerer asks it to.
    RestartIce(CallId),
    /// Take our call over on this (new) server connection.
    ResumeCall(CallId),
    /// Drop the server connection and connect again at once (the old one is probably
    /// dead: the network changed).
    ReconnectServer,
    /// Check that the server connection is alive (a ping that must be answered within a
    /// second), and reconnect at once if it is not: media and the server may have gone
    /// silent together (an outage).
    ProbeServer,
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
    /// Since when the current call's media has been interrupted.
    pub interrupted_since: Option<Instant>,
    /// When to restart ICE (again), while interrupted.
    pub restart_due: Option<Instant>,
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
            interrupted_since: None,
            restart_due: None,
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
            CallState::InCall { .. } => [
                self.interrupted_since.map(|t| t + MEDIA_LOST_AFTER),
                self.restart_due,
            ]
            .into_iter()
            .flatten()
            .min(),
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
        Input::AddFriend => about_last_call(machine, |call_id| Effect::AddFriend { call_id }),
        Input::CallFriend(friend) => match &machine.state {
            _ if !machine.server_up => vec![Effect::Refuse(CommandFailure::NotConnected)],
            CallState::Connecting { .. } | CallState::InCall { .. } => {
                vec![Effect::Refuse(CommandFailure::Busy)]
            }
            // The server takes the caller out of the queue.
            CallState::Searching { .. } => {
                next.state = CallState::Idle;
                vec![Effect::CallFriend(friend)]
            }
            CallState::Idle | CallState::Ended { .. } => vec![Effect::CallFriend(friend)],
        },
        Input::ChannelOpen { call_id } if machine.current_call() == Some(&call_id) => {
            vec![machine.announce()]
        }
        Input::ChannelOpen { .. } => Vec::new(),
        // The server connection.
        Input::ServerConnected if !matches!(machine.state, CallState::InCall { .. }) => {
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
            friend,
        } => {
            let (state, effects) = transition(
                machine,
                Input::Matched {
                    call_id: call_id.clone(),
                    role,
                    peer,
                    friend,
                },
                now,
            );
            if matches!(state, CallState::Connecting { .. }) {
                next.last_call = Some(call_id);
            }
            next.state = state;
            effects
        }
        Input::MediaInterrupted {
            call_id,
            interrupted,
        } => match &machine.state {
            CallState::InCall { call_id: id, .. } if *id == call_id => {
                if !interrupted {
                    next.interrupted_since = None;
                    next.restart_due = None;
                    Vec::new()
                } else if machine.interrupted_since.is_some() {
                    Vec::new()
                } else {
                    next.interrupted_since = Some(now);
                    restart(machine, &mut next, call_id, now)
                }
            }
            _ => Vec::new(),
        },
        Input::NetworkChanged => match &machine.state {
            // The old server connection is likely bound to an address that is gone: a
            // new one resumes the call, then ICE restarts.
            CallState::InCall { .. } => vec![Effect::ReconnectServer],
            _ => Vec::new(),
        },
        Input::CallResumed { call_id } => match &machine.state {
            CallState::InCall { call_id: id, .. } if *id == call_id => {
                restart(machine, &mut next, call_id, now)
            }
            _ => Vec::new(),
        },
        Input::Tick => match &machine.state {
            CallState::InCall { call_id, .. } => {
                if machine
                    .interrupted_since
                    .is_some_and(|t| now >= t + MEDIA_LOST_AFTER)
                {
                    let (state, effects) = ended(
                        machine,
                        call_id,
                        EndReason::MediaLost {
                            why: format!("no media for {} s", MEDIA_LOST_AFTER.as_secs()),
                        },
                        vec![Effect::SendHangUp(call_id.clone())],
                        now,
                    );
                    next.state = state;
                    effects
                } else if machine.restart_due.is_some_and(|t| now >= t) {
                    // Still interrupted after a restart: the server connection may be as
                    // dead as the path (a total outage); if so a fresh one resumes the
                    // call, which restarts ICE again.
                    let mut effects = restart(machine, &mut next, call_id.clone(), now);
                    effects.insert(0, Effect::ProbeServer);
                    effects
                } else {
                    Vec::new()
                }
            }
            _ => {
                let (state, effects) = transition(machine, Input::Tick, now);
                next.state = state;
                effects
            }
        },
        Input::ServerConnected if matches!(machine.state, CallState::InCall { .. }) => {
            next.server_up = true;
            let call_id = machine.current_call().cloned().expect("in a call");
            vec![Effect::ResumeCall(call_id)]
        }
        other => {
            let (state, effects) = transition(machine, other, now);
            next.state = state;
            effects
        }
    };
    if !matches!(next.state, CallState::InCall { .. }) {
        next.interrupted_since = None;
        next.restart_due = None;
    }
    (next, effects)
}

/// Restart ICE now if the server can carry it (else resuming will), and again later
/// while media stays interrupted.
fn restart(
    machine: &CallMachine,
    next: &mut CallMachine,
    call_id: CallId,
    now: Instant,
) -> Vec<Effect> {
    next.restart_due = next.interrupted_since.map(|_| now + RESTART_RETRY);
    if machine.server_up {
        vec![Effect::RestartIce(call_id)]
    } else {
        Vec::new()
    }
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

mod transition;
use transition::{ended, transition};

#[cfg(test)]
mod tests;
