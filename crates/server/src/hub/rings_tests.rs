//! Ringing a friend: accepted, declined, missed, busy, offline, cancelled; who may ring;
//! the rate limit.

use super::friends_tests::{error, to};
use super::rings::{RING_TIME, RING_WINDOW, RINGS_PER_WINDOW};
use super::tests::World;
use super::*;
use chingu_proto::FriendCallFailure;

impl World {
    /// Client `n` rings `friend`; what everyone was sent.
    fn ring(&mut self, n: u64, friend: &FriendId) -> Vec<(u64, ServerMessage)> {
        self.say(
            n,
            ClientMessage::CallFriend {
                friend: friend.clone(),
            },
        );
        self.settle()
    }
}

#[test]
fn a_friend_is_rung_and_the_call_carries_the_friendship() {
    let mut w = World::new();
    let friend = w.befriend(1, 2);
    // 2 has a second window open: both ring; one answers, the other stops.
    w.connect_as(22, 2);
    w.settle();
    w.say(
        1,
        ClientMessage::CallFriend {
            friend: friend.clone(),
        },
    );
    let sent = w.settle();
    assert_eq!(
        to(&sent, 1),
        vec![ServerMessage::Ringing {
            friend: friend.clone()
        }]
    );
    for n in [2, 22] {
        assert_eq!(
            to(&sent, n),
            vec![ServerMessage::IncomingCall {
                friend: friend.clone()
            }]
        );
    }
    w.say(
        22,
        ClientMessage::AnswerFriendCall {
            friend: friend.clone(),
            accept: true,
        },
    );
    let sent = w.settle();
    assert!(
        to(&sent, 2).contains(&ServerMessage::RingEnded {
            friend: friend.clone()
        }),
        "{sent:?}"
    );
    let matched = |n: u64| {
        to(&sent, n).into_iter().find_map(|m| match m {
            ServerMessage::Matched {
                call_id,
                role,
                peer,
                friend,
            } => Some((call_id, role, peer.nickname, friend)),
            _ => None,
        })
    };
    let (call_1, role_1, sees_1, friend_1) = matched(1).expect("the caller is in the call");
    let (call_22, role_22, sees_22, friend_22) = matched(22).expect("the answerer too");
    assert_eq!(call_1, call_22);
    assert_eq!((role_1, role_22), (Role::Offerer, Role::Answerer));
    assert_eq!((sees_1.as_str(), sees_22.as_str()), ("user2", "user1"));
    assert_eq!(friend_1, Some(friend.clone()));
    assert_eq!(friend_22, Some(friend));
    // Signals flow between the caller and the connection that answered.
    w.say(
        1,
        ClientMessage::Signal {
            call_id: call_1.clone(),
            signal: chingu_proto::Signal::EndOfCandidates,
        },
    );
    assert_eq!(
        w.settle(),
        vec![(
            22,
            ServerMessage::Signal {
                call_id: call_1,
                signal: chingu_proto::Signal::EndOfCandidates
            }
        )]
    );
}

#[test]
fn declined_missed_busy_and_offline_are_told_to_the_caller_without_more() {
    let mut w = World::new();
    let friend = w.befriend(1, 2);
    let failed = |reason| ServerMessage::FriendCallFailed {
        friend: friend.clone(),
        reason,
    };
    w.ring(1, &friend);
    w.say(
        2,
        ClientMessage::AnswerFriendCall {
            friend: friend.clone(),
            accept: false,
        },
    );
    assert_eq!(w.settle(), vec![(1, failed(FriendCallFailure::Declined))]);

    w.ring(1, &friend);
    w.advance(RING_TIME.as_secs());
    let sent = w.settle();
    assert!(
        sent.contains(&(1, failed(FriendCallFailure::Missed))),
        "{sent:?}"
    );
    assert!(
        sent.contains(&(
            2,
            ServerMessage::RingEnded {
                friend: friend.clone()
            }
        )),
        "{sent:?}"
    );

    // 2 in a random call with 3: busy.
    w.advance(120);
    w.connect(3);
    w.join(2, &["chess"]);
    w.join(3, &["chess"]);
    w.settle();
    assert_eq!(
        w.ring(1, &friend),
        vec![(1, failed(FriendCallFailure::Busy))]
    );

    // 2 gone: offline.
    w.hub.handle(
        Input::Disconnected {
            client: ClientId(2),
            silent: false,
        },
        w.now,
    );
    w.settle();
    assert_eq!(
        w.ring(1, &friend),
        vec![(1, failed(FriendCallFailure::Offline))]
    );
}

#[test]
fn a_ring_ends_when_the_caller_cancels_leaves_or_the_callee_goes() {
    let mut w = World::new();
    let friend = w.befriend(1, 2);
    let ended = (
        2,
        ServerMessage::RingEnded {
            friend: friend.clone(),
        },
    );
    w.ring(1, &friend);
    w.say(
        1,
        ClientMessage::CancelFriendCall {
            friend: friend.clone(),
        },
    );
    assert_eq!(w.settle(), vec![ended.clone()]);
    // Answering a ring that stopped is an error, not a call.
    w.say(
        2,
        ClientMessage::AnswerFriendCall {
            friend: friend.clone(),
            accept: true,
        },
    );
    assert_eq!(error(&w.settle(), 2), Some(ErrorCode::InvalidState));

    w.ring(1, &friend);
    w.hub.handle(
        Input::Disconnected {
            client: ClientId(1),
            silent: false,
        },
        w.now,
    );
    let sent = w.settle();
    assert!(sent.contains(&ended), "{sent:?}");

    w.connect(1);
    w.settle();
    w.ring(1, &friend);
    w.hub.handle(
        Input::Disconnected {
            client: ClientId(2),
            silent: false,
        },
        w.now,
    );
    let sent = w.settle();
    assert!(
        sent.contains(&(
            1,
            ServerMessage::FriendCallFailed {
                friend,
                reason: FriendCallFailure::Missed
            }
        )),
        "{sent:?}"
    );
}

#[test]
fn ringing_is_rate_limited() {
    let mut w = World::new();
    let friend = w.befriend(1, 2);
    for _ in 0..RINGS_PER_WINDOW {
        w.say(
            1,
            ClientMessage::CallFriend {
                friend: friend.clone(),
            },
        );
        w.say(
            1,
            ClientMessage::CancelFriendCall {
                friend: friend.clone(),
            },
        );
    }
    let sent = w.settle();
    assert_eq!(error(&sent, 1), None, "{sent:?}");
    w.say(
        1,
        ClientMessage::CallFriend {
            friend: friend.clone(),
        },
    );
    let sent = w.settle();
    assert_eq!(error(&sent, 1), Some(ErrorCode::RateLimited));
    assert!(to(&sent, 2).is_empty(), "no ring: {sent:?}");
    w.advance(RING_WINDOW.as_secs());
    w.say(1, ClientMessage::CallFriend { friend });
    assert_eq!(error(&w.settle(), 1), None);
}
