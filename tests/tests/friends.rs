//! Friends through two engines and a real server: a random call, both add each other,
//! hang up, see each other online, one rings the other, a call with media both ways,
//! hang up, unfriend: the lists are empty and a call attempt is refused.

mod common;

use std::time::Duration;

use chingu_engine::{CallView, Command, EngineEvent};
use chingu_proto::{ErrorCode, Friend, FriendCallFailure, FriendId, Presence};
use common::{ClientOptions, client, server};

/// Waits for a friend list the predicate accepts.
async fn friends_until(c: &mut common::Client, what: &str, ok: impl Fn(&[Friend]) -> bool) {
    c.wait_for(what, |e| match e {
        EngineEvent::Friends(list) if ok(list) => Some(()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_strangers_become_friends_call_each_other_and_part() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let mut a = client(&url, "alice", ClientOptions::default());
    let mut b = client(&url, "bob", ClientOptions::default());
    a.search().await;
    b.search().await;
    a.in_call().await;
    b.in_call().await;

    a.send(Command::AddFriend).await;
    a.wait_for("friend requested", |e| {
        matches!(e, EngineEvent::FriendRequested).then_some(())
    })
    .await;
    b.send(Command::AddFriend).await;
    let added = |e: &EngineEvent| match e {
        EngineEvent::FriendAdded(f) => Some(f.clone()),
        _ => None,
    };
    let for_a = a.wait_for("friend added", added).await;
    let for_b = b.wait_for("friend added", added).await;
    assert_eq!(
        (for_a.nickname.as_str(), for_b.nickname.as_str()),
        ("bob", "alice")
    );
    let friend: FriendId = for_a.id.clone();

    a.send(Command::HangUp).await;
    a.ended().await;
    b.ended().await;
    let online = |list: &[Friend]| list.len() == 1 && list[0].presence == Presence::Online;
    friends_until(&mut a, "bob online", online).await;
    friends_until(&mut b, "alice online", online).await;

    // Bob rings Alice; she accepts; a call between friends, media both ways.
    b.send(Command::CallFriend(friend.clone())).await;
    b.wait_for("ringing", |e| {
        matches!(e, EngineEvent::Ringing(f) if *f == friend).then_some(())
    })
    .await;
    a.wait_for("incoming call", |e| {
        matches!(e, EngineEvent::IncomingCall(f) if *f == friend).then_some(())
    })
    .await;
    a.send(Command::AnswerFriendCall {
        friend: friend.clone(),
        accept: true,
    })
    .await;
    for c in [&mut a, &mut b] {
        let view = c
            .wait_state("a call with the friend", |s| {
                matches!(
                    s,
                    CallView::InCall {
                        friend: Some(_),
                        ..
                    }
                )
            })
            .await;
        assert!(matches!(view, CallView::InCall { friend: Some(f), .. } if f == friend));
    }
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while a.frames_seen() < 10 || b.frames_seen() < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "video both ways: alice saw {}, bob saw {}",
            a.frames_seen(),
            b.frames_seen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.send(Command::HangUp).await;
    a.ended().await;
    // A friend leaving ends the call; it does not start a search for a stranger.
    let reason = b.ended().await;
    assert_eq!(reason.to_string(), "peer-left:hung_up");

    // Alice ends the friendship: both lists empty; Bob's ring is refused.
    a.send(Command::RemoveFriend(friend.clone())).await;
    let empty = |list: &[Friend]| list.is_empty();
    friends_until(&mut a, "an empty list", empty).await;
    friends_until(&mut b, "an empty list", empty).await;
    b.send(Command::CallFriend(friend)).await;
    let code = b
        .wait_for("a refusal", |e| match e {
            EngineEvent::ServerError { code, .. } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, ErrorCode::UnknownFriend);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_call_says_so_and_nothing_more() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let mut a = client(&url, "carol", ClientOptions::default());
    let mut b = client(&url, "dave", ClientOptions::default());
    a.search().await;
    b.search().await;
    a.in_call().await;
    b.in_call().await;
    a.send(Command::AddFriend).await;
    b.send(Command::AddFriend).await;
    let friend = a
        .wait_for("friend added", |e| match e {
            EngineEvent::FriendAdded(f) => Some(f.id.clone()),
            _ => None,
        })
        .await;
    b.send(Command::HangUp).await;
    a.ended().await;
    b.ended().await;
    friends_until(&mut b, "carol online", |list| {
        list.first().is_some_and(|f| f.presence == Presence::Online)
    })
    .await;
    a.send(Command::CallFriend(friend.clone())).await;
    b.wait_for("incoming call", |e| {
        matches!(e, EngineEvent::IncomingCall(_)).then_some(())
    })
    .await;
    b.send(Command::AnswerFriendCall {
        friend: friend.clone(),
        accept: false,
    })
    .await;
    let reason = a
        .wait_for("the call refused", |e| match e {
            EngineEvent::FriendCallFailed { reason, .. } => Some(*reason),
            _ => None,
        })
        .await;
    assert_eq!(reason, FriendCallFailure::Declined);
    a.stop().await;
    b.stop().await;
}
