//! Friends over real WebSockets: befriend after a random call, see each other online,
//! ring and talk, survive a server restart, unfriend.

mod common;

use chingu_proto::{ClientMessage, ErrorCode, FriendId, Presence, Role, ServerMessage};
use chingu_testkit::{TestClient, matched_pair};

/// Reads until a message `pick` accepts; other messages (presence of the moment, online
/// counts) are passed over.
async fn until<T>(c: &mut TestClient, mut pick: impl FnMut(ServerMessage) -> Option<T>) -> T {
    loop {
        let msg = c.recv().await.expect("a message");
        if let Some(found) = pick(msg) {
            return found;
        }
    }
}

async fn added(c: &mut TestClient) -> chingu_proto::Friend {
    until(c, |m| match m {
        ServerMessage::FriendAdded { friend } => Some(friend),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn friends_meet_ring_talk_outlive_a_restart_and_part() {
    let server = common::start().await;
    let (mut alice, mut bob, call_id) = matched_pair(&server.url).await.unwrap();
    alice
        .send(&ClientMessage::AddFriend {
            call_id: call_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        alice.recv().await.unwrap(),
        ServerMessage::FriendRequested {
            call_id: call_id.clone()
        }
    );
    // Bob hears nothing of it: the next thing he gets is the answer to his own ping.
    assert!(bob.sync().await.unwrap().is_empty());
    bob.send(&ClientMessage::AddFriend {
        call_id: call_id.clone(),
    })
    .await
    .unwrap();
    let for_alice = added(&mut alice).await;
    let for_bob = added(&mut bob).await;
    assert_eq!(for_alice.id, for_bob.id);
    let friend: FriendId = for_alice.id.clone();
    assert_eq!(
        (for_alice.nickname.as_str(), for_bob.nickname.as_str()),
        ("b", "a")
    );
    assert_eq!(server.metric("chingu_friendships").await, 1.0);

    // Hang up: each sees the other online.
    bob.send(&ClientMessage::HangUp {
        call_id: call_id.clone(),
    })
    .await
    .unwrap();
    let online = |m| match m {
        ServerMessage::Presence {
            presence: Presence::Online,
            friend,
        } => Some(friend),
        _ => None,
    };
    assert_eq!(until(&mut alice, online).await, friend);
    assert_eq!(until(&mut bob, online).await, friend);

    // Alice rings Bob; he accepts; a call between friends.
    alice
        .send(&ClientMessage::CallFriend {
            friend: friend.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        alice.recv().await.unwrap(),
        ServerMessage::Ringing {
            friend: friend.clone()
        }
    );
    assert_eq!(
        bob.recv().await.unwrap(),
        ServerMessage::IncomingCall {
            friend: friend.clone()
        }
    );
    bob.send(&ClientMessage::AnswerFriendCall {
        friend: friend.clone(),
        accept: true,
    })
    .await
    .unwrap();
    let a = alice.expect_matched().await.unwrap();
    let b = bob.expect_matched().await.unwrap();
    assert_eq!(a.call_id, b.call_id);
    assert_eq!((a.role, b.role), (Role::Offerer, Role::Answerer));
    assert_eq!(
        (a.friend.as_ref(), b.friend.as_ref()),
        (Some(&friend), Some(&friend))
    );
    assert_eq!(
        (a.peer.nickname.as_str(), b.peer.nickname.as_str()),
        ("b", "a")
    );
    alice
        .send(&ClientMessage::HangUp {
            call_id: a.call_id.clone(),
        })
        .await
        .unwrap();
    alice.sync().await.unwrap();
    drop((alice, bob));

    // The friendship is on disk: a restarted server still knows it.
    let dir = server.stop().await;
    let config = common::config(&dir);
    let server = common::start_in(dir, config).await;
    let mut alice = TestClient::hello(&server.url, "a").await.unwrap();
    let listed = until(&mut alice, |m| match m {
        ServerMessage::Friends { friends, .. } => Some(friends),
        _ => None,
    })
    .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.clone(), listed[0].nickname.as_str()),
        (friend.clone(), "b")
    );
    assert_eq!(listed[0].presence, Presence::Offline);
    let mut bob = TestClient::hello(&server.url, "b").await.unwrap();
    assert_eq!(until(&mut alice, online).await, friend);

    // Alice unfriends: both hear it, and Bob can no longer ring her.
    alice
        .send(&ClientMessage::RemoveFriend {
            friend: friend.clone(),
        })
        .await
        .unwrap();
    let removed = |m| match m {
        ServerMessage::FriendRemoved { friend } => Some(friend),
        _ => None,
    };
    assert_eq!(until(&mut alice, removed).await, friend);
    assert_eq!(until(&mut bob, removed).await, friend);
    bob.send(&ClientMessage::CallFriend { friend })
        .await
        .unwrap();
    bob.expect_error(ErrorCode::UnknownFriend).await.unwrap();
    assert_eq!(server.metric("chingu_friendships").await, 0.0);
}
