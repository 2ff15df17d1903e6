//! The call state's transitions for the inputs that move it (search, match, connect,
//! end), and what ending a call does; [`super::step`] handles the rest.

use super::*;

/// The call state's transitions.
pub(super) fn transition(
    machine: &CallMachine,
    input: Input,
    now: Instant,
) -> (CallState, Vec<Effect>) {
    use CallState as S;
    use Input as I;
    let state = &machine.state;
    let unchanged = || (state.clone(), Vec::new());
    let current_call = machine.current_call();
    let end = |call_id: &CallId, reason: EndReason, effects: Vec<Effect>| {
        ended(machine, call_id, reason, effects, now)
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
        // A random match comes to a search; a call with a friend (rung, and accepted
        // by one of the two) to anyone not already in a call.
        (
            S::Searching { joined: true, .. },
            I::Matched {
                call_id,
                role,
                peer,
                friend,
            },
        )
        | (
            S::Idle | S::Ended { .. } | S::Searching { .. },
            I::Matched {
                call_id,
                role,
                peer,
                friend: friend @ Some(_),
            },
        ) => (
            S::Connecting {
                call_id: call_id.clone(),
                role,
                peer,
                friend,
                since: now,
            },
            vec![Effect::StartPeer { call_id, role }],
        ),
        (
            S::Connecting {
                call_id,
                peer,
                friend,
                ..
            },
            I::MediaConnected { call_id: id },
        ) if *call_id == id => (
            S::InCall {
                call_id: id,
                peer: peer.clone(),
                friend: friend.clone(),
                since: now,
            },
            Vec::new(),
        ),
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

/// After a call ends: search again (with a notice) or stop with the reason. A call with a
/// friend was not a search: it just ends.
pub(super) fn ended(
    machine: &CallMachine,
    call_id: &CallId,
    reason: EndReason,
    mut effects: Vec<Effect>,
    now: Instant,
) -> (CallState, Vec<Effect>) {
    effects.insert(0, Effect::ClosePeer(call_id.clone()));
    let with_friend = matches!(
        machine.state,
        CallState::Connecting {
            friend: Some(_),
            ..
        } | CallState::InCall {
            friend: Some(_),
            ..
        }
    );
    match (machine.auto_search, &machine.prefs) {
        (true, Some(prefs)) if matches!(reason, EndReason::PeerLeft { .. }) && !with_friend => {
            if machine.server_up {
                effects.push(Effect::JoinQueue(prefs.clone()));
            }
            effects.push(Effect::Notify(reason));
            (
                CallState::Searching {
                    since: now,
                    joined: machine.server_up,
                },
                effects,
            )
        }
        _ => (CallState::Ended { reason }, effects),
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
