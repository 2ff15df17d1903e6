use super::*;
use chingu_proto::Signal;

pub(super) struct World {
    pub(super) hub: Hub,
    pub(super) now: Instant,
}

pub(super) fn identity(n: u64) -> Identity {
    Identity::from_device_id(&format!("device-{n:016}"))
}

impl World {
    pub(super) fn new() -> Self {
        Self {
            hub: Hub::new(HubConfig {
                matching: MatchConfig {
                    cooldown: Duration::from_secs(60),
                    ..MatchConfig::default()
                },
                online_count_interval: Duration::from_secs(2),
                reports_per_device_per_day: 5,
                resume_grace: Duration::ZERO,
            }),
            now: Instant::now(),
        }
    }

    pub(super) fn connect(&mut self, n: u64) {
        self.connect_as(n, n);
    }

    /// Connects client `n` as device `device` (a second connection of one device).
    pub(super) fn connect_as(&mut self, n: u64, device: u64) {
        self.hub.handle(
            Input::Connected {
                client: ClientId(n),
                identity: identity(device),
            },
            self.now,
        );
    }

    /// The connection went silent (the device's network is gone).
    pub(super) fn disconnect(&mut self, n: u64) {
        self.hub.handle(
            Input::Disconnected {
                client: ClientId(n),
                silent: true,
            },
            self.now,
        );
    }

    pub(super) fn say(&mut self, n: u64, msg: ClientMessage) {
        self.hub.handle(
            Input::Message {
                client: ClientId(n),
                msg,
            },
            self.now,
        );
    }

    pub(super) fn join(&mut self, n: u64, interests: &[&str]) {
        self.say(
            n,
            ClientMessage::JoinQueue {
                nickname: format!("user{n}"),
                languages: vec!["ko".into()],
                interests: interests.iter().map(|s| s.to_string()).collect(),
            },
        );
    }

    pub(super) fn advance(&mut self, secs: u64) {
        let target = self.now + Duration::from_secs(secs);
        while let Some(due) = self.hub.poll_timeout().filter(|&due| due <= target) {
            self.now = due;
            self.hub.handle_timeout(due);
        }
        self.now = target;
    }

    pub(super) fn outputs(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.hub.poll_output()).collect()
    }

    /// Messages sent to each client, dropping online counts unless asked for.
    pub(super) fn sent(&mut self) -> Vec<(u64, ServerMessage)> {
        self.outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send(c, msg) if !matches!(msg, ServerMessage::OnlineCount { .. }) => {
                    Some((c.0, msg))
                }
                _ => None,
            })
            .collect()
    }

    /// Connects and matches clients `a` and `b`; returns the call id.
    pub(super) fn call(&mut self, a: u64, b: u64) -> CallId {
        self.connect(a);
        self.connect(b);
        self.join(a, &["music"]);
        self.join(b, &["music"]);
        let sent = self.sent();
        let Some((_, ServerMessage::Matched { call_id, .. })) = sent.last() else {
            panic!("{a} and {b} should be matched: {sent:?}");
        };
        call_id.clone()
    }
}

#[test]
fn two_clients_are_queued_then_matched_with_roles_and_profiles() {
    let mut w = World::new();
    w.connect(1);
    w.connect(2);
    w.join(1, &["music", "chess"]);
    w.join(2, &["Music"]);
    let sent = w.sent();
    assert_eq!(sent[0], (1, ServerMessage::Queued));
    assert_eq!(sent[1], (2, ServerMessage::Queued));
    let (
        ServerMessage::Matched {
            call_id: c1,
            role: r1,
            peer: p1,
            friend: None,
        },
        ServerMessage::Matched {
            call_id: c2,
            role: r2,
            peer: p2,
            friend: None,
        },
    ) = (&sent[2].1, &sent[3].1)
    else {
        panic!("expected two matched messages: {sent:?}");
    };
    assert_eq!((sent[2].0, sent[3].0), (1, 2));
    assert_eq!(c1, c2, "both hear the same call id");
    assert_eq!(
        (*r1, *r2),
        (Role::Offerer, Role::Answerer),
        "the one who waited offers"
    );
    assert_eq!(p1.nickname, "user2");
    assert_eq!(p2.nickname, "user1");
    assert_eq!(p1.shared_interests, vec!["music".to_string()]);
    assert_eq!(p1.languages, vec!["ko".to_string()]);
    let stats = w.hub.stats();
    assert_eq!(
        (
            stats.online,
            stats.waiting,
            stats.calls_active,
            stats.matches_total
        ),
        (2, 0, 1, 1)
    );
}

#[test]
fn signals_reach_only_the_peer_of_the_named_call() {
    let mut w = World::new();
    let call = w.call(1, 2);
    let _other = w.call(3, 4);
    let offer = chingu_proto::Signal::Offer { sdp: "v=0".into() };
    w.say(
        1,
        ClientMessage::Signal {
            call_id: call.clone(),
            signal: offer.clone(),
        },
    );
    assert_eq!(
        w.sent(),
        vec![(
            2,
            ServerMessage::Signal {
                call_id: call.clone(),
                signal: offer.clone()
            }
        )]
    );
    // Client 3 names a call it is not in: rejected, nothing relayed.
    w.say(
        3,
        ClientMessage::Signal {
            call_id: call.clone(),
            signal: offer,
        },
    );
    let sent = w.sent();
    assert_eq!(sent.len(), 1, "only an error goes out: {sent:?}");
    assert!(matches!(
        &sent[0],
        (
            3,
            ServerMessage::Error {
                code: ErrorCode::NotInCall,
                ..
            }
        )
    ));
}

#[test]
fn hang_up_tells_the_peer_and_starts_a_cooldown() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.say(
        1,
        ClientMessage::HangUp {
            call_id: call.clone(),
        },
    );
    assert_eq!(
        w.sent(),
        vec![(
            2,
            ServerMessage::PeerLeft {
                call_id: call.clone(),
                reason: PeerLeftReason::HungUp
            }
        )]
    );
    assert_eq!(w.hub.stats().calls_active, 0);
    w.join(1, &["music"]);
    w.join(2, &["music"]);
    assert_eq!(
        w.sent(),
        vec![(1, ServerMessage::Queued), (2, ServerMessage::Queued)],
        "no rematch right away"
    );
    w.advance(61);
    let sent = w.sent();
    assert!(
        matches!(
            sent.as_slice(),
            [
                (1, ServerMessage::Matched { .. }),
                (2, ServerMessage::Matched { .. })
            ]
        ),
        "after the cooldown: {sent:?}"
    );
    // Hanging up the old call again is refused: it is over.
    w.say(1, ClientMessage::HangUp { call_id: call });
    assert!(matches!(
        w.sent().as_slice(),
        [(
            1,
            ServerMessage::Error {
                code: ErrorCode::NotInCall,
                ..
            }
        )]
    ));
}

#[test]
fn next_ends_the_call_and_requeues_the_presser() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.connect(3);
    w.join(3, &["music"]);
    assert_eq!(w.sent(), vec![(3, ServerMessage::Queued)]);
    w.say(
        1,
        ClientMessage::Next {
            call_id: call.clone(),
        },
    );
    let sent = w.sent();
    assert_eq!(
        sent[0],
        (
            2,
            ServerMessage::PeerLeft {
                call_id: call,
                reason: PeerLeftReason::Next
            }
        )
    );
    assert_eq!(sent[1], (1, ServerMessage::Queued));
    assert!(
        matches!(
            sent[2],
            (
                3,
                ServerMessage::Matched {
                    role: Role::Offerer,
                    ..
                }
            )
        ),
        "3 waited longer: {sent:?}"
    );
    assert!(matches!(
        sent[3],
        (
            1,
            ServerMessage::Matched {
                role: Role::Answerer,
                ..
            }
        )
    ));
    // 2 rejoins: 1 and 3 are busy, so 2 waits.
    w.join(2, &["music"]);
    assert_eq!(w.sent(), vec![(2, ServerMessage::Queued)]);
}

#[test]
fn a_disconnect_ends_the_call_or_leaves_the_queue() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.hub.handle(
        Input::Disconnected {
            client: ClientId(1),
            silent: false,
        },
        w.now,
    );
    assert_eq!(
        w.sent(),
        vec![(
            2,
            ServerMessage::PeerLeft {
                call_id: call,
                reason: PeerLeftReason::Disconnected
            }
        )]
    );
    w.join(2, &["music"]);
    w.hub.handle(
        Input::Disconnected {
            client: ClientId(2),
            silent: false,
        },
        w.now,
    );
    assert_eq!(
        w.hub.stats().waiting,
        0,
        "a disconnected client leaves the queue"
    );
    assert_eq!(w.hub.stats().online, 0);
    // Messages from a client the hub no longer knows are ignored, not a panic.
    w.say(2, ClientMessage::LeaveQueue);
    w.hub.handle(
        Input::Disconnected {
            client: ClientId(2),
            silent: false,
        },
        w.now,
    );
}

#[test]
fn joining_while_in_a_call_is_refused() {
    let mut w = World::new();
    w.call(1, 2);
    w.join(1, &["music"]);
    assert!(matches!(
        w.sent().as_slice(),
        [(
            1,
            ServerMessage::Error {
                code: ErrorCode::InvalidState,
                ..
            }
        )]
    ));
}

#[test]
fn leave_queue_is_acknowledged_and_idempotent() {
    let mut w = World::new();
    w.connect(1);
    w.join(1, &[]);
    w.say(1, ClientMessage::LeaveQueue);
    w.say(1, ClientMessage::LeaveQueue);
    assert_eq!(
        w.sent(),
        vec![
            (1, ServerMessage::Queued),
            (1, ServerMessage::LeftQueue),
            (1, ServerMessage::LeftQueue)
        ]
    );
    assert_eq!(w.hub.stats().waiting, 0);
}

#[test]
fn reports_are_persisted_then_acknowledged() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.say(
        1,
        ClientMessage::HangUp {
            call_id: call.clone(),
        },
    );
    w.sent();
    w.say(
        1,
        ClientMessage::Report {
            call_id: call.clone(),
            reason: ReportReason::Spam,
            note: Some("ads".into()),
        },
    );
    let outputs = w.outputs();
    let expected = Output::Persist {
        client: Some(ClientId(1)),
        record: Record::Report {
            reporter: identity(1),
            reported: identity(2),
            call_id: call.clone(),
            reason: ReportReason::Spam,
            note: Some("ads".into()),
        },
        acks: vec![(
            ClientId(1),
            ServerMessage::Reported {
                call_id: call.clone(),
            },
        )],
    };
    assert_eq!(outputs, vec![expected]);
    w.hub.handle(
        Input::Persisted {
            client: Some(ClientId(1)),
            result: Ok(vec![(
                ClientId(1),
                ServerMessage::Reported { call_id: call },
            )]),
        },
        w.now,
    );
    assert!(matches!(
        w.sent().as_slice(),
        [(1, ServerMessage::Reported { .. })]
    ));
    w.hub.handle(
        Input::Persisted {
            client: Some(ClientId(1)),
            result: Err(()),
        },
        w.now,
    );
    assert!(matches!(
        w.sent().as_slice(),
        [(
            1,
            ServerMessage::Error {
                code: ErrorCode::Internal,
                ..
            }
        )]
    ));
}

#[test]
fn ratings_of_your_own_calls_are_persisted_and_others_refused() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.connect(3);
    w.sent();
    w.say(
        2,
        ClientMessage::Rate {
            call_id: call.clone(),
            stars: 4,
        },
    );
    assert_eq!(
        w.outputs(),
        vec![Output::Persist {
            client: Some(ClientId(2)),
            record: Record::Rating {
                rater: identity(2),
                call_id: call.clone(),
                stars: 4,
            },
            acks: vec![(
                ClientId(2),
                ServerMessage::Rated {
                    call_id: call.clone(),
                },
            )],
        }]
    );
    w.say(
        3,
        ClientMessage::Rate {
            call_id: call,
            stars: 1,
        },
    );
    let outputs = w.outputs();
    assert!(
        !outputs.iter().any(|o| matches!(o, Output::Persist { .. })),
        "an outsider's rating is not stored: {outputs:?}"
    );
    assert!(
        outputs.iter().any(|o| matches!(
            o,
            Output::Send(
                ClientId(3),
                ServerMessage::Error {
                    code: ErrorCode::UnknownCall,
                    ..
                }
            )
        )),
        "{outputs:?}"
    );
}

#[test]
fn reporting_a_call_you_were_not_in_is_refused() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.connect(3);
    w.say(
        3,
        ClientMessage::Report {
            call_id: call,
            reason: ReportReason::Other,
            note: None,
        },
    );
    assert!(matches!(
        w.sent().as_slice(),
        [(
            3,
            ServerMessage::Error {
                code: ErrorCode::UnknownCall,
                ..
            }
        )]
    ));
}

#[test]
fn blocking_mid_call_hangs_up_and_the_pair_never_meets_again() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.say(
        2,
        ClientMessage::Block {
            call_id: call.clone(),
        },
    );
    let outputs = w.outputs();
    assert_eq!(
        outputs[0],
        Output::Send(
            ClientId(1),
            ServerMessage::PeerLeft {
                call_id: call.clone(),
                reason: PeerLeftReason::HungUp
            }
        ),
        "the blocked side is not told why"
    );
    assert_eq!(
        outputs[1],
        Output::Persist {
            client: Some(ClientId(2)),
            record: Record::Block {
                blocker: identity(2),
                blocked: identity(1)
            },
            acks: vec![(ClientId(2), ServerMessage::Blocked { call_id: call })]
        }
    );
    w.join(1, &["music"]);
    w.join(2, &["music"]);
    w.advance(3600);
    assert!(
        !w.sent()
            .iter()
            .any(|(_, m)| matches!(m, ServerMessage::Matched { .. })),
        "blocked pairs never match"
    );
}

#[test]
fn online_count_goes_to_the_lobby_only_when_it_changes() {
    let mut w = World::new();
    let count = |online, waiting| ServerMessage::OnlineCount { online, waiting };
    w.connect(1);
    assert_eq!(w.outputs(), vec![Output::Send(ClientId(1), count(1, 0))]);
    w.advance(2);
    assert_eq!(
        w.outputs(),
        vec![Output::SendMany(vec![ClientId(1)], count(1, 0))]
    );
    w.advance(10);
    assert_eq!(w.outputs(), vec![], "unchanged: nothing to say");
    w.join(1, &[]);
    w.outputs();
    w.advance(2);
    assert_eq!(
        w.outputs(),
        vec![Output::SendMany(vec![ClientId(1)], count(1, 1))]
    );
    w.say(1, ClientMessage::LeaveQueue);
    w.call(2, 3);
    w.connect(4);
    w.outputs();
    w.advance(2);
    let outputs = w.outputs();
    let [Output::SendMany(to, msg)] = outputs.as_slice() else {
        panic!("expected one lobby update: {outputs:?}");
    };
    assert_eq!(*msg, count(4, 0));
    let mut to = to.clone();
    to.sort();
    assert_eq!(
        to,
        vec![ClientId(1), ClientId(4)],
        "clients in a call are not told"
    );
}

fn with_grace(secs: u64) -> World {
    let mut w = World::new();
    w.hub.config.resume_grace = Duration::from_secs(secs);
    w
}

#[test]
fn a_lost_connection_can_resume_its_call_on_a_new_one_within_the_grace() {
    let mut w = with_grace(15);
    let call = w.call(1, 2);
    w.disconnect(1);
    w.advance(5);
    assert_eq!(
        w.sent(),
        vec![],
        "the peer is not told while the device may come back"
    );
    assert_eq!(w.hub.stats().calls_active, 1);
    // Device 1 is back on connection 11; signals flow to it both ways.
    w.connect_as(11, 1);
    w.say(
        11,
        ClientMessage::ResumeCall {
            call_id: call.clone(),
        },
    );
    assert_eq!(
        w.sent(),
        vec![(
            11,
            ServerMessage::CallResumed {
                call_id: call.clone()
            }
        )]
    );
    w.say(
        2,
        ClientMessage::Signal {
            call_id: call.clone(),
            signal: Signal::IceRestart,
        },
    );
    w.say(
        11,
        ClientMessage::Signal {
            call_id: call.clone(),
            signal: Signal::EndOfCandidates,
        },
    );
    assert_eq!(
        w.sent(),
        vec![
            (
                11,
                ServerMessage::Signal {
                    call_id: call.clone(),
                    signal: Signal::IceRestart
                }
            ),
            (
                2,
                ServerMessage::Signal {
                    call_id: call.clone(),
                    signal: Signal::EndOfCandidates
                }
            ),
        ]
    );
    // The grace that was running does not end the resumed call.
    w.advance(20);
    assert_eq!(w.sent(), vec![]);
    w.say(
        2,
        ClientMessage::HangUp {
            call_id: call.clone(),
        },
    );
    assert_eq!(
        w.sent(),
        vec![(
            11,
            ServerMessage::PeerLeft {
                call_id: call,
                reason: PeerLeftReason::HungUp
            }
        )]
    );
}

#[test]
fn when_the_grace_runs_out_the_peer_hears_disconnected_and_a_late_resume_is_told_so() {
    let mut w = with_grace(15);
    let call = w.call(1, 2);
    w.disconnect(1);
    w.advance(14);
    assert_eq!(w.sent(), vec![]);
    w.advance(2);
    let left = ServerMessage::PeerLeft {
        call_id: call.clone(),
        reason: PeerLeftReason::Disconnected,
    };
    assert_eq!(w.sent(), vec![(2, left.clone())]);
    assert_eq!(w.hub.stats().calls_active, 0);
    w.connect_as(11, 1);
    w.say(11, ClientMessage::ResumeCall { call_id: call });
    assert_eq!(w.sent(), vec![(11, left)]);
    // Both may search again at once (the cooldown keeps them apart).
    w.join(2, &["music"]);
    w.join(11, &["music"]);
    assert_eq!(w.hub.stats().calls_active, 0);
}

#[test]
fn a_new_connection_takes_the_call_from_one_that_has_not_noticed_it_is_dead() {
    let mut w = with_grace(15);
    let call = w.call(1, 2);
    // The network changed: connection 1 lingers (no close seen yet) when 11 resumes.
    w.connect_as(11, 1);
    w.say(
        11,
        ClientMessage::ResumeCall {
            call_id: call.clone(),
        },
    );
    assert_eq!(
        w.sent(),
        vec![(
            11,
            ServerMessage::CallResumed {
                call_id: call.clone()
            }
        )]
    );
    // The old connection no longer holds the call: its messages about it are refused,
    // and its end later ends nothing.
    w.say(
        1,
        ClientMessage::HangUp {
            call_id: call.clone(),
        },
    );
    assert!(matches!(
        w.sent()[..],
        [(
            1,
            ServerMessage::Error {
                code: ErrorCode::NotInCall,
                ..
            }
        )]
    ));
    w.disconnect(1);
    w.advance(30);
    assert_eq!(w.sent(), vec![]);
    assert_eq!(w.hub.stats().calls_active, 1);
}

#[test]
fn only_the_calls_own_device_can_resume_it() {
    let mut w = with_grace(15);
    let call = w.call(1, 2);
    w.disconnect(1);
    w.connect(3);
    w.say(
        3,
        ClientMessage::ResumeCall {
            call_id: call.clone(),
        },
    );
    assert!(matches!(
        w.sent()[..],
        [(
            3,
            ServerMessage::Error {
                code: ErrorCode::NotInCall,
                ..
            }
        )]
    ));
    // Nor a device already in another call.
    let other = w.call(4, 5);
    w.connect_as(14, 4);
    w.say(
        14,
        ClientMessage::ResumeCall {
            call_id: other.clone(),
        },
    );
    w.sent();
    w.say(14, ClientMessage::ResumeCall { call_id: call });
    assert!(matches!(
        w.sent()[..],
        [(
            14,
            ServerMessage::Error {
                code: ErrorCode::NotInCall,
                ..
            }
        )]
    ));
    // Resuming twice is harmless.
    w.say(
        14,
        ClientMessage::ResumeCall {
            call_id: other.clone(),
        },
    );
    assert_eq!(
        w.sent(),
        vec![(14, ServerMessage::CallResumed { call_id: other })]
    );
}

#[test]
fn both_sides_away_end_the_call_once() {
    let mut w = with_grace(15);
    let call = w.call(1, 2);
    w.disconnect(1);
    w.advance(3);
    w.disconnect(2);
    w.advance(30);
    assert_eq!(w.hub.stats().calls_active, 0);
    // Only gone connections were addressed: nothing reaches a live client.
    assert!(w.sent().iter().all(|(c, _)| *c == 1 || *c == 2));
    w.connect_as(12, 2);
    w.say(
        12,
        ClientMessage::ResumeCall {
            call_id: call.clone(),
        },
    );
    assert_eq!(
        w.sent(),
        vec![(
            12,
            ServerMessage::PeerLeft {
                call_id: call,
                reason: PeerLeftReason::Disconnected
            }
        )]
    );
}

#[test]
fn a_closed_connection_ends_its_call_at_once_even_with_a_grace() {
    let mut w = with_grace(15);
    let call = w.call(1, 2);
    // The app quit or crashed: its socket was closed, not lost.
    w.hub.handle(
        Input::Disconnected {
            client: ClientId(1),
            silent: false,
        },
        w.now,
    );
    assert_eq!(
        w.sent(),
        vec![(
            2,
            ServerMessage::PeerLeft {
                call_id: call,
                reason: PeerLeftReason::Disconnected
            }
        )]
    );
}
