//! What the user's call is doing, as a pure function: [`step`] takes the state, one input
//! (a user command, a server message, a media event or the passage of time) and the
//! current time, and returns the next state and the effects the engine must carry out.
//! No I/O, no clock: every transition is unit-tested.
//!
//! ```text
//! Idle --search--> Searching --matched--> Connecting --media up--> InCall
//!   ^                 |  ^                   |                       |
//!   +-----cancel------+  +--next / peer left (auto-search)----------+
//!   Ended{reason} <--- hang up, connect failure or timeout, media lost,
//!                      server lost while searching or connecting
//! ```

use std::time::{Duration, Instant};

use chingu_proto::{CallId, PeerLeftReason, PeerProfile, Role};

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

/// Why a call (or a search) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    HungUp,
    PeerLeft(PeerLeftReason),
    ConnectTimeout,
    ConnectFailed(String),
    /// The media connection dropped during the call.
    MediaLost(String),
    ServerLost,
}

#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Input {
    // What the user does.
    Search(SearchPrefs),
    Cancel,
    Next,
    HangUp,
    // What the server says.
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
    /// Time passed; see [`poll_timeout`].
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
}

/// The engine's call state plus what it remembers between calls.
#[derive(Debug, Clone, PartialEq)]
pub struct CallMachine {
    pub state: CallState,
    /// The last search, reused by Next and by searching again after the peer leaves.
    pub prefs: Option<SearchPrefs>,
    /// Search again on its own when the peer leaves (the random-chat default).
    pub auto_search: bool,
}

impl CallMachine {
    pub fn new(auto_search: bool) -> Self {
        Self {
            state: CallState::Idle,
            prefs: None,
            auto_search,
        }
    }

    /// Applies one input; returns the effects, in order.
    pub fn step(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        let (state, effects) = step(
            &self.state,
            self.prefs.as_ref(),
            self.auto_search,
            input.clone(),
            now,
        );
        if let Input::Search(prefs) = input {
            self.prefs = Some(prefs);
        }
        self.state = state;
        effects
    }

    /// When to feed [`Input::Tick`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        poll_timeout(&self.state)
    }
}

/// When the state has a deadline.
pub fn poll_timeout(state: &CallState) -> Option<Instant> {
    match state {
        CallState::Connecting { since, .. } => Some(*since + CONNECT_TIMEOUT),
        _ => None,
    }
}

/// The transition function. Inputs that do not apply to the state (a late message about
/// an old call, a second hang-up) change nothing and cause nothing.
pub fn step(
    state: &CallState,
    prefs: Option<&SearchPrefs>,
    auto_search: bool,
    input: Input,
    now: Instant,
) -> (CallState, Vec<Effect>) {
    use CallState as S;
    use Input as I;
    let unchanged = || (state.clone(), Vec::new());
    let current_call = match state {
        S::Connecting { call_id, .. } | S::InCall { call_id, .. } => Some(call_id),
        _ => None,
    };
    // After a call ends: search again (with a notice) or stop with the reason.
    let end = |call_id: &CallId, reason: EndReason, mut effects: Vec<Effect>| {
        effects.insert(0, Effect::ClosePeer(call_id.clone()));
        match (auto_search, prefs) {
            (true, Some(prefs)) if matches!(reason, EndReason::PeerLeft(_)) => {
                effects.push(Effect::JoinQueue(prefs.clone()));
                effects.push(Effect::Notify(reason));
                (S::Searching { since: now }, effects)
            }
            _ => (S::Ended { reason }, effects),
        }
    };
    match (state, input) {
        (S::Idle | S::Ended { .. }, I::Search(prefs)) => {
            (S::Searching { since: now }, vec![Effect::JoinQueue(prefs)])
        }
        // New preferences while searching keep the place in the queue (server rule).
        (S::Searching { since }, I::Search(prefs)) => (
            S::Searching { since: *since },
            vec![Effect::JoinQueue(prefs)],
        ),
        (S::Searching { .. }, I::Cancel) => (S::Idle, vec![Effect::LeaveQueue]),
        (
            S::Searching { .. },
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
                EndReason::ConnectFailed(why),
                vec![Effect::SendHangUp(id.clone())],
            )
        }
        (S::InCall { .. }, I::MediaFailed { call_id: id, why }) if current_call == Some(&id) => {
            end(
                &id,
                EndReason::MediaLost(why),
                vec![Effect::SendHangUp(id.clone())],
            )
        }
        (
            S::Connecting { call_id, .. } | S::InCall { call_id, .. },
            I::PeerLeft {
                call_id: id,
                reason,
            },
        ) if *call_id == id => end(&id, EndReason::PeerLeft(reason), Vec::new()),
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
        (S::Connecting { call_id, .. } | S::InCall { call_id, .. }, I::Next) => (
            S::Searching { since: now },
            vec![
                Effect::ClosePeer(call_id.clone()),
                Effect::SendNext(call_id.clone()),
            ],
        ),
        // Media flows peer to peer: a call in progress outlives the signaling server.
        // Searching and connecting need it, so they end.
        (S::Searching { .. }, I::ServerLost) => (
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

#[cfg(test)]
mod tests;
