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

fn friend() -> FriendId {
    FriendId("f1".into())
}

fn call(n: u8) -> CallId {
    CallId(format!("call{n}"))
}

struct World {
    machine: CallMachine,
    t0: Instant,
}

impl World {
    /// A machine whose server connection is up.
    fn new(auto_search: bool) -> Self {
        let mut machine = CallMachine::new(auto_search);
        machine.server_up = true;
        Self {
            machine,
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
                friend: None,
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
    assert_eq!(
        w.machine.state,
        CallState::Searching {
            since: w.t0,
            joined: true
        }
    );
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
            friend: None,
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
            Effect::Notify(EndReason::PeerLeft {
                reason: PeerLeftReason::Next
            }),
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
            reason: EndReason::PeerLeft {
                reason: PeerLeftReason::Disconnected
            }
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
            reason: EndReason::ConnectFailed {
                why: "ICE failed".into()
            }
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
            reason: EndReason::MediaLost {
                why: "DTLS closed".into()
            }
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
/// is left only with a ClosePeer for it (the leak invariant). Also: a machine that has
/// not joined the queue never leaves it, and a refused command changes nothing.
#[test]
fn every_input_in_every_state_keeps_the_close_invariant() {
    let states = |t0: Instant| {
        vec![
            CallState::Idle,
            CallState::Searching {
                since: t0,
                joined: true,
            },
            CallState::Searching {
                since: t0,
                joined: false,
            },
            CallState::Connecting {
                call_id: call(1),
                role: Role::Answerer,
                peer: peer(),
                friend: None,
                since: t0,
            },
            CallState::InCall {
                call_id: call(1),
                peer: peer(),
                friend: None,
                since: t0,
            },
            CallState::Connecting {
                call_id: call(1),
                role: Role::Offerer,
                peer: peer(),
                friend: Some(friend()),
                since: t0,
            },
            CallState::InCall {
                call_id: call(1),
                peer: peer(),
                friend: Some(friend()),
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
        Input::SetMuted(true),
        Input::SetCameraEnabled(false),
        Input::Chat("hi".into()),
        Input::Chat(" ".into()),
        Input::Report {
            reason: ReportReason::Spam,
            note: None,
        },
        Input::Rate(5),
        Input::Rate(0),
        Input::Block,
        Input::ServerConnected,
        Input::Matched {
            call_id: call(2),
            role: Role::Offerer,
            peer: peer(),
            friend: None,
        },
        Input::Matched {
            call_id: call(2),
            role: Role::Answerer,
            peer: peer(),
            friend: Some(friend()),
        },
        Input::AddFriend,
        Input::CallFriend(friend()),
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
        Input::ChannelOpen { call_id: call(1) },
        Input::MediaInterrupted {
            call_id: call(1),
            interrupted: true,
        },
        Input::MediaInterrupted {
            call_id: call(1),
            interrupted: false,
        },
        Input::NetworkChanged,
        Input::CallResumed { call_id: call(1) },
        Input::Tick,
    ];
    let t0 = Instant::now();
    for state in states(t0) {
        for input in &inputs {
            for auto_search in [false, true] {
                for server_up in [false, true] {
                    for last_call in [None, Some(call(1))] {
                        for (later, interrupted) in [(0, None), (60, None), (60, Some(t0))] {
                            let in_call = matches!(state, CallState::InCall { .. });
                            let machine = CallMachine {
                                state: state.clone(),
                                prefs: Some(prefs()),
                                auto_search,
                                server_up,
                                muted: false,
                                camera_enabled: true,
                                last_call: last_call.clone(),
                                interrupted_since: interrupted.filter(|_| in_call),
                                restart_due: interrupted.filter(|_| in_call),
                            };
                            let now = t0 + Duration::from_secs(later);
                            let (next, effects) = step(&machine, input.clone(), now);
                            let context = format!("{machine:?} + {input:?}");
                            if let Some(old) = machine.current_call()
                                && next.current_call() != Some(old)
                            {
                                assert!(
                                    effects.contains(&Effect::ClosePeer(old.clone())),
                                    "{context} left {old} without closing it"
                                );
                            }
                            if !matches!(machine.state, CallState::Searching { joined: true, .. }) {
                                assert!(
                                    !effects.contains(&Effect::LeaveQueue),
                                    "{context}: left a queue it was not in"
                                );
                            }
                            if effects.iter().any(|e| matches!(e, Effect::Refuse(_))) {
                                assert_eq!(next, machine, "{context}: a refusal changes nothing");
                            }
                            if effects.iter().any(|e| matches!(e, Effect::JoinQueue(_))) {
                                assert!(next.server_up, "{context}: joined with no server");
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
                                assert!(
                                    !with_friend || !matches!(input, Input::PeerLeft { .. }),
                                    "{context}: a friend leaving starts no search"
                                );
                            }
                            if effects
                                .iter()
                                .any(|e| matches!(e, Effect::RestartIce(_) | Effect::ResumeCall(_)))
                            {
                                assert!(
                                    matches!(next.state, CallState::InCall { .. }),
                                    "{context}: restarts and resumes belong to a call"
                                );
                            }
                            if !matches!(next.state, CallState::InCall { .. }) {
                                assert_eq!(
                                    (next.interrupted_since, next.restart_due),
                                    (None, None),
                                    "{context}: nothing of a call's interruption outlives it"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_search_made_while_the_server_is_down_is_joined_when_it_comes_up() {
    let mut w = World::new(true);
    w.machine.server_up = false;
    assert_eq!(
        w.at(0, Input::Search(prefs())),
        vec![],
        "nothing to send to yet"
    );
    assert_eq!(
        w.machine.state,
        CallState::Searching {
            since: w.t0,
            joined: false
        },
        "the user sees it searching"
    );
    assert_eq!(
        w.at(1, Input::ServerLost),
        vec![],
        "a failed reconnect keeps it waiting"
    );
    assert!(matches!(w.machine.state, CallState::Searching { .. }));
    assert_eq!(
        w.at(2, Input::ServerConnected),
        vec![Effect::JoinQueue(prefs())]
    );
    assert_eq!(
        w.machine.state,
        CallState::Searching {
            since: w.t0,
            joined: true
        },
        "still the same search"
    );
}

#[test]
fn cancelling_a_search_that_never_reached_the_server_sends_nothing() {
    let mut w = World::new(true);
    w.machine.server_up = false;
    w.at(0, Input::Search(prefs()));
    assert_eq!(w.at(1, Input::Cancel), vec![]);
    assert_eq!(w.machine.state, CallState::Idle);
    assert_eq!(
        w.at(2, Input::ServerConnected),
        vec![],
        "nothing to join any more"
    );
}

#[test]
fn mute_and_camera_outlast_calls_and_are_told_to_the_peer_in_a_call() {
    let mut w = World::new(true);
    assert_eq!(
        w.at(0, Input::SetMuted(true)),
        vec![Effect::ApplyMedia {
            muted: true,
            camera_enabled: true
        }],
        "no peer to tell outside a call"
    );
    w.in_call(1);
    assert!(w.machine.muted, "still muted in the new call");
    assert_eq!(
        w.at(3, Input::SetCameraEnabled(false)),
        vec![
            Effect::ApplyMedia {
                muted: true,
                camera_enabled: false
            },
            Effect::AnnounceMedia {
                audio: false,
                video: false
            },
        ]
    );
    assert_eq!(
        w.at(4, Input::ChannelOpen { call_id: call(1) }),
        vec![Effect::AnnounceMedia {
            audio: false,
            video: false
        }],
        "the state is sent again when the channel opens"
    );
    assert_eq!(
        w.at(4, Input::ChannelOpen { call_id: call(7) }),
        vec![],
        "not for another call"
    );
}

#[test]
fn chat_needs_a_call_and_a_sensible_length() {
    let mut w = World::new(true);
    assert_eq!(
        w.at(0, Input::Chat("hello".into())),
        vec![Effect::Refuse(CommandFailure::NotInCall)]
    );
    w.in_call(1);
    assert_eq!(
        w.at(3, Input::Chat("  안녕  ".into())),
        vec![Effect::SendChat("안녕".into())],
        "trimmed"
    );
    assert_eq!(
        w.at(3, Input::Chat("   ".into())),
        vec![Effect::Refuse(CommandFailure::BadChat)]
    );
    assert_eq!(
        w.at(
            3,
            Input::Chat("a".repeat(crate::control::MAX_CHAT_CHARS + 1))
        ),
        vec![Effect::Refuse(CommandFailure::BadChat)]
    );
}

#[test]
fn reports_ratings_and_blocks_are_about_the_current_or_last_call() {
    let mut w = World::new(true);
    for input in [
        Input::Report {
            reason: ReportReason::Spam,
            note: None,
        },
        Input::Rate(4),
        Input::Block,
    ] {
        assert_eq!(
            w.at(0, input),
            vec![Effect::Refuse(CommandFailure::NoRecentCall)]
        );
    }
    w.in_call(1);
    assert_eq!(
        w.at(3, Input::Block),
        vec![Effect::Block { call_id: call(1) }],
        "the current call"
    );
    w.at(4, Input::HangUp);
    assert_eq!(
        w.at(
            5,
            Input::Report {
                reason: ReportReason::Harassment,
                note: Some("rude".into())
            }
        ),
        vec![Effect::Report {
            call_id: call(1),
            reason: ReportReason::Harassment,
            note: Some("rude".into())
        }],
        "after it ended"
    );
    assert_eq!(
        w.at(5, Input::Rate(6)),
        vec![Effect::Refuse(CommandFailure::BadRating)]
    );
    assert_eq!(
        w.at(5, Input::Rate(5)),
        vec![Effect::Rate {
            call_id: call(1),
            stars: 5
        }]
    );
}

#[test]
fn end_reasons_read_as_before_in_logs_and_are_tagged_in_json() {
    let reason = EndReason::PeerLeft {
        reason: PeerLeftReason::Next,
    };
    assert_eq!(reason.to_string(), "peer-left:next");
    assert_eq!(
        serde_json::to_value(&reason).unwrap(),
        serde_json::json!({"kind": "peer_left", "reason": "next"})
    );
    let failed = EndReason::ConnectFailed {
        why: "bad candidate".into(),
    };
    assert_eq!(failed.to_string(), "connect-failed: bad candidate");
    assert_eq!(
        serde_json::to_value(&failed).unwrap(),
        serde_json::json!({"kind": "connect_failed", "why": "bad candidate"})
    );
    assert_eq!(EndReason::HungUp.to_string(), "hung-up");
    assert_eq!(
        serde_json::to_value(EndReason::ServerLost).unwrap(),
        serde_json::json!({"kind": "server_lost"})
    );
}

fn interrupted(call_id: CallId, interrupted: bool) -> Input {
    Input::MediaInterrupted {
        call_id,
        interrupted,
    }
}

#[test]
fn an_interruption_restarts_ice_at_once_and_again_while_it_lasts() {
    let mut w = World::new(true);
    w.in_call(1);
    assert_eq!(
        w.at(5, interrupted(call(1), true)),
        vec![Effect::RestartIce(call(1))]
    );
    assert_eq!(
        w.machine.poll_timeout(),
        Some(w.t0 + Duration::from_secs(5) + RESTART_RETRY)
    );
    // A second report of the same interruption changes nothing.
    assert_eq!(w.at(6, interrupted(call(1), true)), vec![]);
    // Still interrupted when the retry is due: restart again, and check the server
    // connection (it may be as dead as the path).
    assert_eq!(
        w.at(7, Input::Tick),
        vec![Effect::ProbeServer, Effect::RestartIce(call(1))]
    );
    // Media back: no more restarts, no deadline.
    assert_eq!(w.at(8, interrupted(call(1), false)), vec![]);
    assert_eq!(w.machine.poll_timeout(), None);
    assert!(matches!(w.machine.state, CallState::InCall { .. }));
}

#[test]
fn twenty_seconds_without_media_end_the_call() {
    let mut w = World::new(true);
    w.in_call(1);
    w.at(10, interrupted(call(1), true));
    w.at(29, Input::Tick);
    assert!(matches!(w.machine.state, CallState::InCall { .. }));
    let effects = w.at(30, Input::Tick);
    assert_eq!(
        effects,
        vec![Effect::ClosePeer(call(1)), Effect::SendHangUp(call(1))]
    );
    assert_eq!(
        w.machine.state,
        CallState::Ended {
            reason: EndReason::MediaLost {
                why: "no media for 20 s".into()
            }
        }
    );
    assert_eq!(w.machine.poll_timeout(), None);
}

#[test]
fn without_the_server_a_restart_waits_for_the_call_to_resume_on_a_new_connection() {
    let mut w = World::new(true);
    w.in_call(1);
    assert_eq!(w.at(3, Input::ServerLost), vec![]);
    assert_eq!(
        w.at(4, interrupted(call(1), true)),
        vec![],
        "nobody to send an offer to"
    );
    assert_eq!(
        w.at(5, Input::ServerConnected),
        vec![Effect::ResumeCall(call(1))]
    );
    assert_eq!(
        w.at(5, Input::CallResumed { call_id: call(1) }),
        vec![Effect::RestartIce(call(1))]
    );
    // A resume for another call is not ours.
    assert_eq!(w.at(5, Input::CallResumed { call_id: call(2) }), vec![]);
}

#[test]
fn a_network_change_in_a_call_reconnects_to_the_server_and_resuming_restarts_ice() {
    let mut w = World::new(true);
    w.in_call(1);
    assert_eq!(
        w.at(5, Input::NetworkChanged),
        vec![Effect::ReconnectServer]
    );
    w.at(5, Input::ServerLost);
    assert_eq!(
        w.at(5, Input::ServerConnected),
        vec![Effect::ResumeCall(call(1))]
    );
    assert_eq!(
        w.at(5, Input::CallResumed { call_id: call(1) }),
        vec![Effect::RestartIce(call(1))]
    );
    // Media never stopped: no retries scheduled.
    assert_eq!(w.machine.poll_timeout(), None);
    // Outside a call a network change is nothing to act on.
    let mut w = World::new(true);
    w.at(0, Input::Search(prefs()));
    assert_eq!(w.at(1, Input::NetworkChanged), vec![]);
}

#[test]
fn a_friends_call_comes_to_anyone_not_in_a_call_and_ends_without_a_search() {
    let mut w = World::new(true);
    w.machine.prefs = Some(prefs());
    let rung = |friend| Input::Matched {
        call_id: call(1),
        role: Role::Answerer,
        peer: peer(),
        friend,
    };
    // A random match for a machine that is not searching is stale: ignored.
    assert_eq!(w.at(0, rung(None)), vec![]);
    assert_eq!(w.machine.state, CallState::Idle);
    assert_eq!(
        w.at(0, rung(Some(friend()))),
        vec![Effect::StartPeer {
            call_id: call(1),
            role: Role::Answerer
        }]
    );
    w.at(1, Input::MediaConnected { call_id: call(1) });
    assert!(matches!(
        &w.machine.state,
        CallState::InCall { friend: Some(f), .. } if *f == friend()
    ));
    assert_eq!(w.machine.last_call, Some(call(1)));
    // The friend hangs up: the call ends; nobody asked for a stranger next.
    let effects = w.at(
        5,
        Input::PeerLeft {
            call_id: call(1),
            reason: PeerLeftReason::HungUp,
        },
    );
    assert_eq!(effects, vec![Effect::ClosePeer(call(1))]);
    assert_eq!(
        w.machine.state,
        CallState::Ended {
            reason: EndReason::PeerLeft {
                reason: PeerLeftReason::HungUp
            }
        }
    );
}

#[test]
fn ringing_a_friend_leaves_a_search_and_needs_the_server_and_no_call() {
    let mut w = World::new(true);
    w.at(0, Input::Search(prefs()));
    assert_eq!(
        w.at(1, Input::CallFriend(friend())),
        vec![Effect::CallFriend(friend())],
        "the server takes the caller out of the queue itself"
    );
    assert_eq!(w.machine.state, CallState::Idle);
    w.in_call(2);
    assert_eq!(
        w.at(3, Input::CallFriend(friend())),
        vec![Effect::Refuse(CommandFailure::Busy)]
    );
    let mut w = World::new(true);
    w.machine.server_up = false;
    assert_eq!(
        w.at(0, Input::CallFriend(friend())),
        vec![Effect::Refuse(CommandFailure::NotConnected)]
    );
}

#[test]
fn a_friend_request_is_about_the_current_or_last_call() {
    let mut w = World::new(true);
    assert_eq!(
        w.at(0, Input::AddFriend),
        vec![Effect::Refuse(CommandFailure::NoRecentCall)]
    );
    w.in_call(1);
    assert_eq!(
        w.at(3, Input::AddFriend),
        vec![Effect::AddFriend { call_id: call(1) }]
    );
    w.at(4, Input::HangUp);
    assert_eq!(
        w.at(5, Input::AddFriend),
        vec![Effect::AddFriend { call_id: call(1) }]
    );
}
