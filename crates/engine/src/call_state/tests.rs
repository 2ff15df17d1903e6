use super::*;

fn prefs() -> SearchPrefs {
    SearchPrefs {
        nickname: "민지".into(),
        languages: vec!["ko".into()],
        interests: vec!["music".into()],
    }
}

fn peer() -> PeerProfile {
    PeerProfile {
        nickname: "Sam".into(),
        languages: vec!["en".into()],
        shared_interests: vec![],
    }
}

fn call(n: u8) -> CallId {
    CallId(format!("call{n}"))
}

struct World {
    machine: CallMachine,
    t0: Instant,
}

impl World {
    fn new(auto_search: bool) -> Self {
        Self {
            machine: CallMachine::new(auto_search),
            t0: Instant::now(),
        }
    }

    fn at(&mut self, secs: u64, input: Input) -> Vec<Effect> {
        self.machine
            .step(input, self.t0 + Duration::from_secs(secs))
    }

    fn matched(&mut self, secs: u64, n: u8) -> Vec<Effect> {
        self.at(
            secs,
            Input::Matched {
                call_id: call(n),
                role: Role::Offerer,
                peer: peer(),
            },
        )
    }

    /// Searches, gets matched on call `n` and connects.
    fn in_call(&mut self, n: u8) {
        self.at(0, Input::Search(prefs()));
        self.matched(1, n);
        self.at(2, Input::MediaConnected { call_id: call(n) });
        assert!(matches!(self.machine.state, CallState::InCall { .. }));
    }
}

#[test]
fn search_match_connect() {
    let mut w = World::new(true);
    assert_eq!(
        w.at(0, Input::Search(prefs())),
        vec![Effect::JoinQueue(prefs())]
    );
    assert_eq!(w.machine.state, CallState::Searching { since: w.t0 });
    assert_eq!(
        w.matched(1, 1),
        vec![Effect::StartPeer {
            call_id: call(1),
            role: Role::Offerer
        }]
    );
    assert_eq!(
        w.machine.poll_timeout(),
        Some(w.t0 + Duration::from_secs(1) + CONNECT_TIMEOUT)
    );
    assert_eq!(w.at(2, Input::MediaConnected { call_id: call(1) }), vec![]);
    assert_eq!(
        w.machine.state,
        CallState::InCall {
            call_id: call(1),
            peer: peer(),
            since: w.t0 + Duration::from_secs(2)
        }
    );
    assert_eq!(w.machine.poll_timeout(), None);
}

#[test]
fn cancel_leaves_the_queue() {
    let mut w = World::new(true);
    w.at(0, Input::Search(prefs()));
    assert_eq!(w.at(1, Input::Cancel), vec![Effect::LeaveQueue]);
    assert_eq!(w.machine.state, CallState::Idle);
    assert_eq!(w.at(2, Input::Cancel), vec![], "nothing to cancel");
}

#[test]
fn hang_up_closes_the_peer_and_tells_the_server() {
    let mut w = World::new(true);
    w.in_call(1);
    assert_eq!(
        w.at(5, Input::HangUp),
        vec![Effect::ClosePeer(call(1)), Effect::SendHangUp(call(1))]
    );
    assert_eq!(
        w.machine.state,
        CallState::Ended {
            reason: EndReason::HungUp
        }
    );
    assert_eq!(
        w.at(6, Input::HangUp),
        vec![],
        "a second hang-up does nothing"
    );
    assert_eq!(
        w.at(7, Input::Search(prefs())),
        vec![Effect::JoinQueue(prefs())],
        "search again"
    );
}

#[test]
fn next_closes_and_searches_again() {
    let mut w = World::new(true);
    w.in_call(1);
    assert_eq!(
        w.at(5, Input::Next),
        vec![Effect::ClosePeer(call(1)), Effect::SendNext(call(1))]
    );
    assert!(matches!(w.machine.state, CallState::Searching { .. }));
    assert_eq!(
        w.matched(6, 2),
        vec![Effect::StartPeer {
            call_id: call(2),
            role: Role::Offerer
        }]
    );
}

#[test]
fn when_the_peer_leaves_the_engine_searches_again_and_says_why() {
    let mut w = World::new(true);
    w.in_call(1);
    let effects = w.at(
        5,
        Input::PeerLeft {
            call_id: call(1),
            reason: PeerLeftReason::Next,
        },
    );
    assert_eq!(
        effects,
        vec![
            Effect::ClosePeer(call(1)),
            Effect::JoinQueue(prefs()),
            Effect::Notify(EndReason::PeerLeft(PeerLeftReason::Next)),
        ]
    );
    assert!(matches!(w.machine.state, CallState::Searching { .. }));
}

#[test]
fn without_auto_search_a_peer_leaving_ends_the_call() {
    let mut w = World::new(false);
    w.in_call(1);
    let effects = w.at(
        5,
        Input::PeerLeft {
            call_id: call(1),
            reason: PeerLeftReason::Disconnected,
        },
    );
    assert_eq!(effects, vec![Effect::ClosePeer(call(1))]);
    assert_eq!(
        w.machine.state,
        CallState::Ended {
            reason: EndReason::PeerLeft(PeerLeftReason::Disconnected)
        }
    );
}

#[test]
fn messages_about_another_call_change_nothing() {
    let mut w = World::new(true);
    w.in_call(1);
    let before = w.machine.state.clone();
    assert_eq!(
        w.at(
            5,
            Input::PeerLeft {
                call_id: call(9),
                reason: PeerLeftReason::HungUp
            }
        ),
        vec![]
    );
    assert_eq!(
        w.at(
            5,
            Input::MediaFailed {
                call_id: call(9),
                why: "x".into()
            }
        ),
        vec![]
    );
    assert_eq!(w.at(5, Input::MediaConnected { call_id: call(9) }), vec![]);
    assert_eq!(
        w.matched(5, 9),
        vec![],
        "a stray match while in a call is ignored"
    );
    assert_eq!(w.machine.state, before);
}

#[test]
fn a_call_that_never_connects_times_out() {
    let mut w = World::new(true);
    w.at(0, Input::Search(prefs()));
    w.matched(1, 1);
    assert_eq!(
        w.at(15, Input::Tick),
        vec![],
        "not yet: 14 s after the match"
    );
    let effects = w.at(16, Input::Tick);
    assert_eq!(
        effects,
        vec![Effect::ClosePeer(call(1)), Effect::SendHangUp(call(1))]
    );
    assert_eq!(
        w.machine.state,
        CallState::Ended {
            reason: EndReason::ConnectTimeout
        }
    );
}

#[test]
fn media_failure_ends_the_call_with_the_reason() {
    let mut w = World::new(true);
    w.at(0, Input::Search(prefs()));
    w.matched(1, 1);
    let effects = w.at(
        2,
        Input::MediaFailed {
            call_id: call(1),
            why: "ICE failed".into(),
        },
    );
    assert_eq!(
        effects,
        vec![Effect::ClosePeer(call(1)), Effect::SendHangUp(call(1))]
    );
    assert_eq!(
        w.machine.state,
        CallState::Ended {
            reason: EndReason::ConnectFailed("ICE failed".into())
        }
    );

    let mut w = World::new(true);
    w.in_call(2);
    w.at(
        9,
        Input::MediaFailed {
            call_id: call(2),
            why: "DTLS closed".into(),
        },
    );
    assert_eq!(
        w.machine.state,
        CallState::Ended {
            reason: EndReason::MediaLost("DTLS closed".into())
        }
    );
}

#[test]
fn losing_the_server_ends_searching_and_connecting_but_not_a_call() {
    let mut w = World::new(true);
    w.in_call(1);
    assert_eq!(w.at(5, Input::ServerLost), vec![], "media is peer to peer");
    assert!(matches!(w.machine.state, CallState::InCall { .. }));

    let mut w = World::new(true);
    w.at(0, Input::Search(prefs()));
    w.at(1, Input::ServerLost);
    assert_eq!(
        w.machine.state,
        CallState::Ended {
            reason: EndReason::ServerLost
        }
    );

    let mut w = World::new(true);
    w.at(0, Input::Search(prefs()));
    w.matched(1, 1);
    assert_eq!(w.at(2, Input::ServerLost), vec![Effect::ClosePeer(call(1))]);
    assert_eq!(
        w.machine.state,
        CallState::Ended {
            reason: EndReason::ServerLost
        }
    );
}

/// Every input in every state: no panic, and every state that holds a peer connection
/// is left only with a ClosePeer for it (the leak invariant).
#[test]
fn every_input_in_every_state_keeps_the_close_invariant() {
    let states = |t0: Instant| {
        vec![
            CallState::Idle,
            CallState::Searching { since: t0 },
            CallState::Connecting {
                call_id: call(1),
                role: Role::Answerer,
                peer: peer(),
                since: t0,
            },
            CallState::InCall {
                call_id: call(1),
                peer: peer(),
                since: t0,
            },
            CallState::Ended {
                reason: EndReason::HungUp,
            },
        ]
    };
    let inputs = vec![
        Input::Search(prefs()),
        Input::Cancel,
        Input::Next,
        Input::HangUp,
        Input::Matched {
            call_id: call(2),
            role: Role::Offerer,
            peer: peer(),
        },
        Input::PeerLeft {
            call_id: call(1),
            reason: PeerLeftReason::HungUp,
        },
        Input::ServerLost,
        Input::MediaConnected { call_id: call(1) },
        Input::MediaFailed {
            call_id: call(1),
            why: "x".into(),
        },
        Input::Tick,
    ];
    let t0 = Instant::now();
    for state in states(t0) {
        for input in &inputs {
            for auto in [false, true] {
                for later in [0, 60] {
                    let now = t0 + Duration::from_secs(later);
                    let (next, effects) = step(&state, Some(&prefs()), auto, input.clone(), now);
                    let held = |s: &CallState| match s {
                        CallState::Connecting { call_id, .. }
                        | CallState::InCall { call_id, .. } => Some(call_id.clone()),
                        _ => None,
                    };
                    if let Some(old) = held(&state)
                        && held(&next).as_ref() != Some(&old)
                    {
                        assert!(
                            effects.contains(&Effect::ClosePeer(old.clone())),
                            "{state:?} + {input:?} left {old} without closing it"
                        );
                    }
                }
            }
        }
    }
}
