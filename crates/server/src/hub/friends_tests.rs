//! Friends: the privacy rules of `friends.rs`, and the life of a friendship from a
//! random call to a call between friends and back to strangers.

use super::friends::FRIEND_WINDOW;
use super::tests::{World, identity};
use super::*;
use chingu_proto::{Friend, Presence};

impl World {
    /// Carries every output out as the shell would — a record to persist is stored at
    /// once and its acks fed back — and returns what each client was sent (online counts
    /// left out).
    pub(super) fn settle(&mut self) -> Vec<(u64, ServerMessage)> {
        let mut sent = Vec::new();
        while let Some(output) = self.hub.poll_output() {
            match output {
                Output::Send(c, msg) => sent.push((c.0, msg)),
                Output::SendMany(cs, msg) => {
                    sent.extend(cs.into_iter().map(|c| (c.0, msg.clone())));
                }
                Output::Persist { client, acks, .. } => self.hub.handle(
                    Input::Persisted {
                        client,
                        result: Ok(acks),
                    },
                    self.now,
                ),
            }
        }
        sent.retain(|(_, m)| !matches!(m, ServerMessage::OnlineCount { .. }));
        sent
    }

    /// Lets presence changes settle and reach friends (a second), then settles.
    pub(super) fn settle_presence(&mut self) -> Vec<(u64, ServerMessage)> {
        self.advance(super::friends::PRESENCE_INTERVAL.as_secs());
        self.settle()
    }

    pub(super) fn add_friend(&mut self, n: u64, call_id: &CallId) -> Vec<(u64, ServerMessage)> {
        self.say(
            n,
            ClientMessage::AddFriend {
                call_id: call_id.clone(),
            },
        );
        self.settle()
    }

    /// Clients `a` and `b` meet in a random call, both ask, and hang up: friends.
    pub(super) fn befriend(&mut self, a: u64, b: u64) -> FriendId {
        let call = self.call(a, b);
        self.add_friend(a, &call);
        let sent = self.add_friend(b, &call);
        self.say(a, ClientMessage::HangUp { call_id: call });
        // Their presence after the call reaches each other a second later.
        self.settle_presence();
        sent.into_iter()
            .find_map(|(_, m)| match m {
                ServerMessage::FriendAdded { friend } => Some(friend.id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{a} and {b} became friends"))
    }
}

pub(super) fn to(sent: &[(u64, ServerMessage)], client: u64) -> Vec<ServerMessage> {
    sent.iter()
        .filter(|(c, _)| *c == client)
        .map(|(_, m)| m.clone())
        .collect()
}

pub(super) fn error(sent: &[(u64, ServerMessage)], client: u64) -> Option<ErrorCode> {
    sent.iter().find_map(|(c, m)| match m {
        ServerMessage::Error { code, .. } if *c == client => Some(*code),
        _ => None,
    })
}

#[test]
fn a_request_is_never_revealed_before_it_is_mutual() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.say(
        1,
        ClientMessage::AddFriend {
            call_id: call.clone(),
        },
    );
    let outputs = w.outputs();
    // Stored, and only the asker is answered; nothing at all goes to the other side.
    let [
        Output::Persist {
            client: Some(ClientId(1)),
            record: Record::FriendRequest { from, to: peer, .. },
            acks,
        },
    ] = outputs.as_slice()
    else {
        panic!("{outputs:?}");
    };
    assert_eq!((*from, *peer), (identity(1), identity(2)));
    assert_eq!(
        acks,
        &vec![(
            ClientId(1),
            ServerMessage::FriendRequested {
                call_id: call.clone()
            }
        )]
    );
    // Asking again changes nothing and says the same.
    assert_eq!(
        w.add_friend(1, &call),
        vec![(
            1,
            ServerMessage::FriendRequested {
                call_id: call.clone()
            }
        )]
    );
    // The other side asks: both hear of the friendship, each with the other's nickname.
    let sent = w.add_friend(2, &call);
    let added = |n: u64| {
        to(&sent, n).into_iter().find_map(|m| match m {
            ServerMessage::FriendAdded { friend } => Some(friend),
            _ => None,
        })
    };
    let (for_1, for_2) = (added(1).expect("1 told"), added(2).expect("2 told"));
    assert_eq!(for_1.id, for_2.id, "one friendship, one id");
    assert_eq!(for_1.nickname, "user2");
    assert_eq!(for_2.nickname, "user1");
    assert_eq!(for_1.presence, Presence::InCall);
    assert_eq!(w.hub.stats().friendships, 1);
}

#[test]
fn an_unreturned_request_expires_silently() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.add_friend(1, &call);
    w.say(
        1,
        ClientMessage::HangUp {
            call_id: call.clone(),
        },
    );
    w.settle();
    // Within the window after the call, asking still works (and says nothing yet).
    w.advance(FRIEND_WINDOW.as_secs() + 1);
    let sent = w.add_friend(2, &call);
    assert_eq!(error(&sent, 2), Some(ErrorCode::UnknownCall), "{sent:?}");
    assert!(to(&sent, 1).is_empty(), "the asker hears nothing: {sent:?}");
    assert_eq!(w.hub.stats().friendships, 0);
}

#[test]
fn only_the_two_people_of_a_call_can_ask() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.connect(3);
    w.settle();
    let sent = w.add_friend(3, &call);
    assert_eq!(error(&sent, 3), Some(ErrorCode::UnknownCall));
    assert!(to(&sent, 1).is_empty() && to(&sent, 2).is_empty());
    let sent = w.add_friend(1, &CallId("f".repeat(32)));
    assert_eq!(error(&sent, 1), Some(ErrorCode::UnknownCall));
}

#[test]
fn presence_reaches_friends_and_no_one_else() {
    let mut w = World::new();
    let friend = w.befriend(1, 2);
    w.connect(3);
    w.settle();
    // 1 goes offline, comes back (and gets its list), then talks to 3 at random; each
    // step a few seconds apart (friends hear a change half a second after it, at most
    // one a second).
    w.advance(5);
    w.hub.handle(
        Input::Disconnected {
            client: ClientId(1),
            silent: false,
        },
        w.now,
    );
    let sent = w.settle_presence();
    assert_eq!(
        sent,
        vec![(
            2,
            ServerMessage::Presence {
                friend: friend.clone(),
                presence: Presence::Offline
            }
        )]
    );
    w.advance(5);
    w.connect(1);
    let sent = w.settle_presence();
    assert_eq!(
        to(&sent, 2),
        vec![ServerMessage::Presence {
            friend: friend.clone(),
            presence: Presence::Online
        }]
    );
    let to_1 = to(&sent, 1);
    let [
        ServerMessage::Friends {
            friends,
            more: false,
        },
    ] = to_1.as_slice()
    else {
        panic!("{sent:?}");
    };
    assert_eq!(
        friends.as_slice(),
        [Friend {
            id: friend.clone(),
            nickname: "user2".into(),
            presence: Presence::Online,
            last_call_unix: 0,
        }]
    );
    assert!(to(&sent, 3).is_empty(), "{sent:?}");
    w.advance(120); // past the cooldown with 2
    w.join(1, &["chess"]);
    w.join(3, &["chess"]);
    let sent = w.settle_presence();
    assert!(
        to(&sent, 2).contains(&ServerMessage::Presence {
            friend,
            presence: Presence::InCall
        }),
        "{sent:?}"
    );
    assert!(
        sent.iter()
            .all(|(c, m)| *c == 2 || !matches!(m, ServerMessage::Presence { .. })),
        "presence went to a non-friend: {sent:?}"
    );
    // In all: 1 and 2 back from their call (one each, a second after it ended), 1
    // offline, online, in a call. 3, with no friends, caused none.
    assert_eq!(w.hub.stats().presence_sent_total, 5);
}

#[test]
fn friends_hear_a_change_once_it_settles_and_nothing_of_a_moment_in_the_lobby() {
    let mut w = World::new();
    let friend = w.befriend(1, 2);
    w.advance(5);
    w.settle();
    let before = w.hub.stats().presence_sent_total;
    w.connect(3);
    w.join(1, &["chess"]);
    w.join(3, &["chess"]);
    // Half a second later, not before.
    assert!(to(&w.settle(), 2).is_empty());
    let sent = w.settle_presence();
    assert_eq!(
        to(&sent, 2),
        vec![ServerMessage::Presence {
            friend: friend.clone(),
            presence: Presence::InCall,
        }]
    );
    // 1 presses Next and meets 4, who was waiting: in the lobby for a moment only.
    w.advance(5);
    w.connect(4);
    w.join(4, &["chess"]);
    w.settle();
    let call = w
        .hub
        .calls
        .keys()
        .next()
        .cloned()
        .expect("1 and 3 in a call");
    w.say(1, ClientMessage::Next { call_id: call });
    let sent = w.settle();
    assert!(
        sent.iter()
            .any(|(c, m)| *c == 1 && matches!(m, ServerMessage::Matched { .. })),
        "1 is in a new call: {sent:?}"
    );
    let sent = w.settle_presence();
    assert!(to(&sent, 2).is_empty(), "2 heard of the moment: {sent:?}");
    // 1 hangs up and quits at once: one change reaches 2, the last.
    let call = w
        .hub
        .calls
        .keys()
        .find(|_| true)
        .cloned()
        .expect("1's call");
    w.say(1, ClientMessage::HangUp { call_id: call });
    w.hub.handle(
        Input::Disconnected {
            client: ClientId(1),
            silent: false,
        },
        w.now,
    );
    let sent = w.settle_presence();
    assert_eq!(
        to(&sent, 2),
        vec![ServerMessage::Presence {
            friend,
            presence: Presence::Offline
        }]
    );
    assert_eq!(w.hub.stats().presence_sent_total, before + 2);
}

#[test]
fn strangers_can_neither_ring_nor_remove_nor_answer() {
    let mut w = World::new();
    let friend = w.befriend(1, 2);
    w.connect(3);
    w.settle();
    for msg in [
        ClientMessage::CallFriend {
            friend: friend.clone(),
        },
        ClientMessage::RemoveFriend {
            friend: friend.clone(),
        },
        ClientMessage::BlockFriend {
            friend: friend.clone(),
        },
    ] {
        w.say(3, msg);
        let sent = w.settle();
        assert_eq!(error(&sent, 3), Some(ErrorCode::UnknownFriend), "{sent:?}");
        assert!(to(&sent, 1).is_empty() && to(&sent, 2).is_empty());
    }
    w.say(
        1,
        ClientMessage::CallFriend {
            friend: friend.clone(),
        },
    );
    w.settle();
    w.say(
        3,
        ClientMessage::AnswerFriendCall {
            friend,
            accept: true,
        },
    );
    let sent = w.settle();
    assert_eq!(error(&sent, 3), Some(ErrorCode::InvalidState));
    assert!(to(&sent, 1).is_empty(), "{sent:?}");
}

#[test]
fn unfriending_stops_presence_and_calls_for_both_at_once() {
    let mut w = World::new();
    let friend = w.befriend(1, 2);
    w.say(
        1,
        ClientMessage::CallFriend {
            friend: friend.clone(),
        },
    );
    w.settle();
    w.say(
        2,
        ClientMessage::RemoveFriend {
            friend: friend.clone(),
        },
    );
    let sent = w.settle();
    let removed = ServerMessage::FriendRemoved {
        friend: friend.clone(),
    };
    assert!(sent.contains(&(1, removed.clone())), "{sent:?}");
    assert!(sent.contains(&(2, removed)), "{sent:?}");
    assert!(
        sent.contains(&(
            2,
            ServerMessage::RingEnded {
                friend: friend.clone()
            }
        )),
        "the ring stops: {sent:?}"
    );
    assert_eq!(w.hub.stats().friendships, 0);
    // No presence any more, either way; no calls.
    w.hub.handle(
        Input::Disconnected {
            client: ClientId(2),
            silent: false,
        },
        w.now,
    );
    w.connect(2);
    assert!(w.settle().is_empty());
    w.say(1, ClientMessage::CallFriend { friend });
    assert_eq!(error(&w.settle(), 1), Some(ErrorCode::UnknownFriend));
}

#[test]
fn blocking_a_friend_unfriends_and_they_are_never_matched_again() {
    let mut w = World::new();
    let friend = w.befriend(1, 2);
    w.say(1, ClientMessage::BlockFriend { friend });
    let outputs = w.outputs();
    assert!(
        outputs.iter().any(|o| matches!(
            o,
            Output::Persist {
                record: Record::Block { blocker, blocked },
                ..
            } if *blocker == identity(1) && *blocked == identity(2)
        )),
        "{outputs:?}"
    );
    assert_eq!(w.hub.stats().friendships, 0);
    w.advance(3600);
    w.join(1, &["music"]);
    w.join(2, &["music"]);
    w.advance(60);
    assert!(
        !w.settle()
            .iter()
            .any(|(_, m)| matches!(m, ServerMessage::Matched { .. })),
        "a blocked pair was matched"
    );
    // A blocked pair cannot become friends again either: a new call is impossible, and
    // a request for their old call is answered as any other but changes nothing.
    assert_eq!(w.hub.stats().friendships, 0);
}

#[test]
fn blocking_from_the_call_ends_a_friendship_too() {
    let mut w = World::new();
    let call = w.call(1, 2);
    w.add_friend(1, &call);
    w.add_friend(2, &call);
    assert_eq!(w.hub.stats().friendships, 1);
    w.say(2, ClientMessage::Block { call_id: call });
    let sent = w.settle();
    assert!(
        to(&sent, 1)
            .iter()
            .any(|m| matches!(m, ServerMessage::FriendRemoved { .. })),
        "{sent:?}"
    );
    assert_eq!(w.hub.stats().friendships, 0);
}

#[test]
fn friendships_and_a_pending_request_are_restored() {
    let mut w = World::new();
    let friend = FriendId("f".repeat(32));
    w.hub.restore_friendship(
        friend.clone(),
        [identity(1), identity(2)],
        ["민지".into(), "Sam".into()],
        1_700_000_000,
    );
    w.hub.set_epoch(w.now, 1_700_000_100);
    let call = CallId("c".repeat(32));
    w.hub.restore_friend_request(
        Record::FriendRequest {
            call_id: call.clone(),
            from: identity(3),
            to: identity(4),
            from_nickname: "three".into(),
            to_nickname: "four".into(),
            expires_unix: 1_700_000_200,
        },
        w.now,
    );
    w.connect(1);
    let sent = w.settle();
    let to_1 = to(&sent, 1);
    let [
        ServerMessage::Friends {
            friends,
            more: false,
        },
    ] = to_1.as_slice()
    else {
        panic!("{sent:?}");
    };
    assert_eq!(
        friends.as_slice(),
        [Friend {
            id: friend,
            nickname: "Sam".into(),
            presence: Presence::Offline,
            last_call_unix: 1_700_000_000,
        }]
    );
    // 4 returns 3's request after the restart: friends.
    w.connect(4);
    w.settle();
    let sent = w.add_friend(4, &call);
    assert!(
        to(&sent, 4).iter().any(|m| matches!(
            m,
            ServerMessage::FriendAdded { friend } if friend.nickname == "three"
        )),
        "{sent:?}"
    );
}

#[test]
fn a_long_friend_list_comes_in_pages() {
    let mut w = World::new();
    for n in 0..250u64 {
        w.hub.restore_friendship(
            FriendId(format!("f{n}")),
            [identity(1), identity(1000 + n)],
            ["one".into(), format!("friend{n}")],
            n,
        );
    }
    w.connect(1);
    let pages: Vec<(usize, bool)> = w
        .settle()
        .into_iter()
        .filter_map(|(_, m)| match m {
            ServerMessage::Friends { friends, more } => Some((friends.len(), more)),
            _ => None,
        })
        .collect();
    assert_eq!(pages, vec![(100, true), (100, true), (50, false)]);
}
