//! Friends (친구하자): a friendship made when both people of a call ask for it, the
//! friend list, presence sent to friends only, and ringing a friend.
//!
//! Privacy rules (tested in `friends_tests.rs`):
//! - a request is answered `friend_requested` whether or not the other asked; the other
//!   side learns nothing until both have asked (then both get `friend_added`), and a
//!   request that is not returned within [`FRIEND_WINDOW`] of the call's end is forgotten
//!   without a word;
//! - only the two people of a call can befriend each other (no search, no ids to guess:
//!   the request names the call), and never a blocked pair;
//! - presence and rings reach a device's friends' connections and no one else; removing
//!   or blocking a friend stops both at once, for both sides.
//!
//! Ringing a friend is `rings.rs`.
//!
//! Cost: a presence change sends one message per online connection of each friend, so it
//! is proportional to the device's number of friends (at most [`MAX_FRIENDS`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chingu_proto::{Friend, Presence};

use super::*;

/// How long after a call ends its two people may still ask to be friends.
pub const FRIEND_WINDOW: Duration = Duration::from_secs(5 * 60);
/// A presence change reaches friends this long after it happened, and only if it still
/// holds then: pressing Next (in a call, a moment in the lobby, in a call again) costs a
/// device's friends nothing.
pub const PRESENCE_SETTLE: Duration = Duration::from_millis(500);
/// ...and a device's friends hear of it at most this often.
pub const PRESENCE_INTERVAL: Duration = Duration::from_secs(1);
/// Friends one device may have.
pub const MAX_FRIENDS: usize = 1000;

/// One side's view of a friendship.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) id: FriendId,
    /// The friend's nickname when the two met.
    pub(super) nickname: String,
    pub(super) last_call_unix: u64,
}

/// A call whose two people may still befriend each other.
#[derive(Debug)]
struct Friendable {
    members: CallMembers,
    asked: [bool; 2],
    /// Once the call has ended: until when.
    until: Option<Instant>,
}

#[derive(Debug, Default)]
pub(super) struct Friends {
    /// Each device's friends, by the friend's device.
    pub(super) links: HashMap<Identity, HashMap<Identity, Link>>,
    by_id: HashMap<FriendId, [Identity; 2]>,
    calls: HashMap<CallId, Friendable>,
    call_deadlines: BinaryHeap<Reverse<(Instant, CallId)>>,
    /// The presence each device's friends were last told, and when.
    told: HashMap<Identity, (Presence, Instant)>,
    /// Devices whose friends are due another look at their presence, by when.
    presence_due: BinaryHeap<Reverse<(Instant, Identity)>>,
    presence_pending: std::collections::HashSet<Identity>,
    pub(super) presence_sent: u64,
}

impl Friends {
    pub(super) fn count(&self) -> usize {
        self.by_id.len()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.call_deadlines.peek().map(|Reverse((d, _))| *d),
            self.presence_due.peek().map(|Reverse((d, _))| *d),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(super) fn are_friends(&self, a: Identity, b: Identity) -> bool {
        self.links.get(&a).is_some_and(|l| l.contains_key(&b))
    }

    /// The two devices of a friendship, `me` first, if `me` is one of them.
    pub(super) fn pair(&self, id: &FriendId, me: Identity) -> Option<Identity> {
        let [a, b] = self.by_id.get(id)?;
        if *a == me {
            Some(*b)
        } else if *b == me {
            Some(*a)
        } else {
            None
        }
    }

    fn link(&mut self, me: Identity, other: Identity, link: Link) {
        self.links.entry(me).or_default().insert(other, link);
    }

    fn unlink(&mut self, a: Identity, b: Identity) -> Option<FriendId> {
        let mut id = None;
        for (me, other) in [(a, b), (b, a)] {
            if let Some(links) = self.links.get_mut(&me) {
                id = links.remove(&other).map(|l| l.id).or(id);
                if links.is_empty() {
                    self.links.remove(&me);
                    self.told.remove(&me);
                    self.presence_pending.remove(&me);
                }
            }
        }
        if let Some(id) = &id {
            self.by_id.remove(id);
        }
        id
    }
}

impl Hub {
    /// Loads a friendship from storage at startup.
    pub fn restore_friendship(
        &mut self,
        id: FriendId,
        [a, b]: [Identity; 2],
        [a_nickname, b_nickname]: [String; 2],
        last_call_unix: u64,
    ) {
        if a == b || self.friends.by_id.contains_key(&id) || self.friends.are_friends(a, b) {
            tracing::warn!(%id, "skipping a duplicate friendship row");
            return;
        }
        self.friends.by_id.insert(id.clone(), [a, b]);
        self.friends.link(
            a,
            b,
            Link {
                id: id.clone(),
                nickname: b_nickname,
                last_call_unix,
            },
        );
        self.friends.link(
            b,
            a,
            Link {
                id,
                nickname: a_nickname,
                last_call_unix,
            },
        );
    }

    /// Loads a pending friend request from storage at startup: the other side may still
    /// return it until it expires (and for no longer than [`FRIEND_WINDOW`] from now).
    pub fn restore_friend_request(&mut self, record: Record, now: Instant) {
        let Record::FriendRequest {
            call_id,
            from,
            to,
            from_nickname,
            to_nickname,
            expires_unix,
        } = record
        else {
            return;
        };
        let left = expires_unix.saturating_sub(self.unix(now));
        if left == 0 || self.friends.are_friends(from, to) {
            return;
        }
        let until = now + Duration::from_secs(left).min(FRIEND_WINDOW);
        let entry = self
            .friends
            .calls
            .entry(call_id.clone())
            .or_insert_with(|| Friendable {
                members: CallMembers {
                    identities: [from, to],
                    nicknames: [from_nickname, to_nickname],
                },
                asked: [false, false],
                until: Some(until),
            });
        if let Some(me) = entry.members.identities.iter().position(|&i| i == from) {
            entry.asked[me] = true;
            self.friends.call_deadlines.push(Reverse((until, call_id)));
        }
    }

    /// `client`'s device, as its friends see it.
    pub(super) fn presence(&self, identity: Identity) -> Presence {
        let Some(open) = self.connections.get(&identity) else {
            return Presence::Offline;
        };
        let in_call = open.iter().any(|c| {
            self.clients
                .get(c)
                .is_some_and(|s| matches!(s.status, Status::InCall(_)))
        });
        if in_call {
            Presence::InCall
        } else {
            Presence::Online
        }
    }

    /// Tells the device's online friends its presence if it changed since they were told:
    /// [`PRESENCE_SETTLE`] from now, and not within [`PRESENCE_INTERVAL`] of the last time.
    pub(super) fn presence_may_have_changed(&mut self, identity: Identity, now: Instant) {
        if !self.friends.links.contains_key(&identity)
            || !self.friends.presence_pending.insert(identity)
        {
            return;
        }
        let settled = now + PRESENCE_SETTLE;
        let due = match self.friends.told.get(&identity) {
            Some(&(_, at)) => settled.max(at + PRESENCE_INTERVAL),
            None => settled,
        };
        self.friends.presence_due.push(Reverse((due, identity)));
    }

    fn tell_presence(&mut self, identity: Identity, now: Instant) {
        let Some(links) = self.friends.links.get(&identity) else {
            return;
        };
        let presence = self.presence(identity);
        if self.friends.told.get(&identity).map(|(p, _)| p) == Some(&presence) {
            return;
        }
        let mut sends = Vec::new();
        for (other, link) in links {
            if let Some(open) = self.connections.get(other) {
                sends.push((open.clone(), link.id.clone()));
            }
        }
        self.friends.told.insert(identity, (presence, now));
        for (open, friend) in sends {
            self.friends.presence_sent += open.len() as u64;
            self.outputs.push_back(Output::SendMany(
                open,
                ServerMessage::Presence { friend, presence },
            ));
        }
    }

    /// `friends` to a new connection of a device that has any.
    pub(super) fn send_friend_list(&mut self, client: ClientId, identity: Identity) {
        let Some(links) = self.friends.links.get(&identity) else {
            return;
        };
        let mut friends: Vec<Friend> = links
            .iter()
            .map(|(other, link)| Friend {
                id: link.id.clone(),
                nickname: link.nickname.clone(),
                presence: self.presence(*other),
                last_call_unix: link.last_call_unix,
            })
            .collect();
        friends.sort_by(|a, b| {
            (Reverse(a.last_call_unix), &a.nickname).cmp(&(Reverse(b.last_call_unix), &b.nickname))
        });
        let pages = friends
            .len()
            .div_ceil(chingu_proto::limits::FRIENDS_PER_PAGE);
        for (i, page) in friends
            .chunks(chingu_proto::limits::FRIENDS_PER_PAGE)
            .enumerate()
        {
            self.send(
                client,
                ServerMessage::Friends {
                    friends: page.to_vec(),
                    more: i + 1 < pages,
                },
            );
        }
    }

    /// A call began: its two people may befriend each other from now on; if they are
    /// friends already, they just talked.
    pub(super) fn call_started(&mut self, call_id: &CallId, members: CallMembers, now: Instant) {
        let [a, b] = members.identities;
        if self.friends.are_friends(a, b) {
            let at_unix = self.unix(now);
            let mut id = None;
            for (me, other) in [(a, b), (b, a)] {
                if let Some(link) = self
                    .friends
                    .links
                    .get_mut(&me)
                    .and_then(|l| l.get_mut(&other))
                {
                    link.last_call_unix = at_unix;
                    id = Some(link.id.clone());
                }
            }
            if let Some(id) = id {
                self.outputs.push_back(Output::Persist {
                    client: None,
                    record: Record::FriendsTalked { id, at_unix },
                    acks: Vec::new(),
                });
            }
        }
        self.friends.calls.insert(
            call_id.clone(),
            Friendable {
                members,
                asked: [false, false],
                until: None,
            },
        );
    }

    /// A call ended: its people have [`FRIEND_WINDOW`] left to ask.
    pub(super) fn call_ended(&mut self, call_id: &CallId, now: Instant) {
        if let Some(entry) = self.friends.calls.get_mut(call_id) {
            let until = now + FRIEND_WINDOW;
            entry.until = Some(until);
            self.friends
                .call_deadlines
                .push(Reverse((until, call_id.clone())));
        }
    }

    pub(super) fn add_friend(&mut self, client: ClientId, call_id: CallId, now: Instant) {
        let identity = self.clients[&client].identity;
        let Some(entry) = self.friends.calls.get(&call_id) else {
            return self.not_friendable(client, &call_id);
        };
        let Some(me) = entry.members.identities.iter().position(|&i| i == identity) else {
            return self.not_friendable(client, &call_id);
        };
        let other = 1 - me;
        let peer = entry.members.identities[other];
        let requested = ServerMessage::FriendRequested {
            call_id: call_id.clone(),
        };
        // Nothing changes for a repeated request, for friends already, or for a pair one
        // of whom blocked the other; the answer is the same, so nothing is revealed.
        if entry.asked[me]
            || self.friends.are_friends(identity, peer)
            || self.matchmaker.is_blocked(identity, peer)
        {
            return self.send(client, requested);
        }
        let full = |id| self.friends.links.get(&id).map_or(0, HashMap::len) >= MAX_FRIENDS;
        if full(identity) {
            return self.send(
                client,
                ServerMessage::error(
                    ErrorCode::InvalidState,
                    format!("at most {MAX_FRIENDS} friends: remove one first"),
                ),
            );
        }
        if full(peer) {
            // Their list is full: the request stays unreturned, as any other.
            return self.send(client, requested);
        }
        let entry = self
            .friends
            .calls
            .get_mut(&call_id)
            .expect("looked up above");
        entry.asked[me] = true;
        let members = entry.members.clone();
        if !entry.asked[other] {
            // Stored for as long as it can be returned: the call's end (or, while it
            // lasts, an hour: a server restart ends it) plus the window.
            let until = entry
                .until
                .unwrap_or(now + super::recent::CALL_MEMORY + FRIEND_WINDOW);
            let record = Record::FriendRequest {
                call_id,
                from: identity,
                to: peer,
                from_nickname: members.nicknames[me].clone(),
                to_nickname: members.nicknames[other].clone(),
                expires_unix: self.unix(until),
            };
            self.outputs.push_back(Output::Persist {
                client: Some(client),
                record,
                acks: vec![(client, requested)],
            });
            return;
        }
        // Both asked: friends.
        let id = FriendId(random_token());
        let at_unix = self.unix(now);
        let [a, b] = members.identities;
        let [a_nickname, b_nickname] = members.nicknames;
        self.restore_friendship(
            id.clone(),
            [a, b],
            [a_nickname.clone(), b_nickname.clone()],
            at_unix,
        );
        for device in [a, b] {
            let presence = self.presence(device);
            self.friends.told.entry(device).or_insert((presence, now));
        }
        let mut acks = vec![(client, requested)];
        for (me, other, nickname) in [(a, b, &b_nickname), (b, a, &a_nickname)] {
            let friend = Friend {
                id: id.clone(),
                nickname: nickname.clone(),
                presence: self.presence(other),
                last_call_unix: at_unix,
            };
            for &c in self.connections.get(&me).into_iter().flatten() {
                acks.push((
                    c,
                    ServerMessage::FriendAdded {
                        friend: friend.clone(),
                    },
                ));
            }
        }
        self.outputs.push_back(Output::Persist {
            client: Some(client),
            record: Record::Friendship {
                id,
                call_id,
                a,
                b,
                a_nickname,
                b_nickname,
                at_unix,
            },
            acks,
        });
    }

    fn not_friendable(&mut self, client: ClientId, call_id: &CallId) {
        self.send(
            client,
            ServerMessage::error(
                ErrorCode::UnknownCall,
                format!(
                    "{call_id} is not your current call or one that ended in the last {} minutes",
                    FRIEND_WINDOW.as_secs() / 60
                ),
            ),
        );
    }

    /// `remove_friend` / `block_friend`.
    pub(super) fn remove_friend(
        &mut self,
        client: ClientId,
        friend: &FriendId,
        block: bool,
        now: Instant,
    ) {
        let identity = self.clients[&client].identity;
        let Some(other) = self.friends.pair(friend, identity) else {
            return self.unknown_friend(client, friend);
        };
        if block {
            // In a call with them right now: it ends, as a block from the call does.
            if let Status::InCall(call_id) = self.clients[&client].status.clone()
                && self.calls[&call_id].identities.contains(&other)
            {
                self.end_call(&call_id, client, PeerLeftReason::HungUp, now);
            }
            self.matchmaker.block(identity, other);
            self.outputs.push_back(Output::Persist {
                client: Some(client),
                record: Record::Block {
                    blocker: identity,
                    blocked: other,
                },
                acks: Vec::new(),
            });
        }
        self.unfriend(identity, other, Some(client));
    }

    /// Ends the friendship of `a` and `b`, if any: both sides' connections hear
    /// `friend_removed` once it is stored, and a ring between them stops.
    pub(super) fn unfriend(&mut self, a: Identity, b: Identity, requester: Option<ClientId>) {
        let Some(id) = self.friends.unlink(a, b) else {
            return;
        };
        self.end_ring(&id);
        let mut acks = Vec::new();
        for device in [a, b] {
            for &c in self.connections.get(&device).into_iter().flatten() {
                acks.push((c, ServerMessage::FriendRemoved { friend: id.clone() }));
            }
        }
        self.outputs.push_back(Output::Persist {
            client: requester,
            record: Record::Unfriend { id },
            acks,
        });
    }

    pub(super) fn unknown_friend(&mut self, client: ClientId, friend: &FriendId) {
        self.send(
            client,
            ServerMessage::error(
                ErrorCode::UnknownFriend,
                format!("{friend} is not one of your friends"),
            ),
        );
    }

    pub(super) fn friends_timeout(&mut self, now: Instant) {
        while let Some(Reverse((due, _))) = self.friends.presence_due.peek() {
            if *due > now {
                break;
            }
            let Reverse((_, identity)) = self.friends.presence_due.pop().expect("peeked");
            if self.friends.presence_pending.remove(&identity) {
                self.tell_presence(identity, now);
            }
        }
        while let Some(Reverse((due, _))) = self.friends.call_deadlines.peek() {
            if *due > now {
                break;
            }
            let Reverse((due, call_id)) = self.friends.call_deadlines.pop().expect("peeked");
            if self
                .friends
                .calls
                .get(&call_id)
                .is_some_and(|e| e.until == Some(due))
            {
                // Unreturned requests expire silently (storage drops them by date).
                self.friends.calls.remove(&call_id);
            }
        }
    }
}
