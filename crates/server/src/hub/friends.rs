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
//! Cost: a presence change sends one message per online connection of each friend, so it
//! is proportional to the device's number of friends (at most [`MAX_FRIENDS`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chingu_proto::{Friend, FriendCallFailure, Presence};

use super::*;

/// How long after a call ends its two people may still ask to be friends.
pub const FRIEND_WINDOW: Duration = Duration::from_secs(5 * 60);
/// How long a friend's devices ring before the call counts as missed.
pub const RING_TIME: Duration = Duration::from_secs(30);
/// Rings one device may start per [`RING_WINDOW`]: no ring-spam.
pub const RINGS_PER_WINDOW: usize = 10;
pub const RING_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Friends one device may have.
pub const MAX_FRIENDS: usize = 1000;

/// One side's view of a friendship.
#[derive(Debug)]
struct Link {
    id: FriendId,
    /// The friend's nickname when the two met.
    nickname: String,
    last_call_unix: u64,
}

/// A call whose two people may still befriend each other.
#[derive(Debug)]
struct Friendable {
    members: CallMembers,
    asked: [bool; 2],
    /// Once the call has ended: until when.
    until: Option<Instant>,
}

#[derive(Debug)]
struct Ring {
    /// The connection that rang.
    caller: ClientId,
    callee: Identity,
    deadline: Instant,
}

#[derive(Debug, Default)]
pub(super) struct Friends {
    /// Each device's friends, by the friend's device.
    links: HashMap<Identity, HashMap<Identity, Link>>,
    by_id: HashMap<FriendId, [Identity; 2]>,
    calls: HashMap<CallId, Friendable>,
    call_deadlines: BinaryHeap<Reverse<(Instant, CallId)>>,
    rings: HashMap<FriendId, Ring>,
    ring_deadlines: BinaryHeap<Reverse<(Instant, FriendId)>>,
    /// When each device started its recent rings, and when to look again.
    ring_history: HashMap<Identity, VecDeque<Instant>>,
    ring_reviews: VecDeque<(Instant, Identity)>,
    /// The presence each device's friends were last told.
    told: HashMap<Identity, Presence>,
    pub(super) presence_sent: u64,
}

impl Friends {
    pub(super) fn count(&self) -> usize {
        self.by_id.len()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.call_deadlines.peek().map(|Reverse((d, _))| *d),
            self.ring_deadlines.peek().map(|Reverse((d, _))| *d),
            self.ring_reviews.front().map(|(d, _)| *d),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn are_friends(&self, a: Identity, b: Identity) -> bool {
        self.links.get(&a).is_some_and(|l| l.contains_key(&b))
    }

    /// The two devices of a friendship, `me` first, if `me` is one of them.
    fn pair(&self, id: &FriendId, me: Identity) -> Option<Identity> {
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
    fn presence(&self, identity: Identity) -> Presence {
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

    /// Tells the device's online friends its presence, if it changed since they were told.
    pub(super) fn presence_may_have_changed(&mut self, identity: Identity) {
        let Some(links) = self.friends.links.get(&identity) else {
            return;
        };
        let presence = self.presence(identity);
        if self.friends.told.get(&identity) == Some(&presence) {
            return;
        }
        let mut sends = Vec::new();
        for (other, link) in links {
            if let Some(open) = self.connections.get(other) {
                sends.push((open.clone(), link.id.clone()));
            }
        }
        self.friends.told.insert(identity, presence);
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
        self.send(client, ServerMessage::Friends { friends });
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
            self.friends.told.entry(device).or_insert(presence);
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
        if let Some(ring) = self.friends.rings.remove(&id) {
            self.tell_callee(ring.callee, None, &id);
        }
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

    fn unknown_friend(&mut self, client: ClientId, friend: &FriendId) {
        self.send(
            client,
            ServerMessage::error(
                ErrorCode::UnknownFriend,
                format!("{friend} is not one of your friends"),
            ),
        );
    }

    pub(super) fn call_friend(&mut self, client: ClientId, friend: FriendId, now: Instant) {
        let identity = self.clients[&client].identity;
        let Some(callee) = self.friends.pair(&friend, identity) else {
            return self.unknown_friend(client, &friend);
        };
        if let Status::InCall(_) = self.clients[&client].status {
            return self.send(
                client,
                ServerMessage::error(ErrorCode::InvalidState, "in a call: hang up first"),
            );
        }
        if self.friends.rings.contains_key(&friend) {
            return self.send(
                client,
                ServerMessage::error(ErrorCode::InvalidState, "already ringing"),
            );
        }
        let recent_rings = self.friends.ring_history.get_mut(&identity).map_or(0, |h| {
            while h
                .front()
                .is_some_and(|&t| now.saturating_duration_since(t) >= RING_WINDOW)
            {
                h.pop_front();
            }
            h.len()
        });
        if recent_rings >= RINGS_PER_WINDOW {
            return self.send(
                client,
                ServerMessage::error(
                    ErrorCode::RateLimited,
                    format!(
                        "at most {RINGS_PER_WINDOW} calls to friends in {} minutes",
                        RING_WINDOW.as_secs() / 60
                    ),
                ),
            );
        }
        let failed = match self.presence(callee) {
            Presence::Offline => Some(FriendCallFailure::Offline),
            Presence::InCall => Some(FriendCallFailure::Busy),
            Presence::Online => None,
        };
        if let Some(reason) = failed {
            return self.send(client, ServerMessage::FriendCallFailed { friend, reason });
        }
        self.friends
            .ring_history
            .entry(identity)
            .or_default()
            .push_back(now);
        self.friends
            .ring_reviews
            .push_back((now + RING_WINDOW, identity));
        if self.clients[&client].status == Status::Queued {
            self.matchmaker.leave(client);
            self.client_mut(client).status = Status::Idle;
            self.send(client, ServerMessage::LeftQueue);
        }
        let deadline = now + RING_TIME;
        self.friends.rings.insert(
            friend.clone(),
            Ring {
                caller: client,
                callee,
                deadline,
            },
        );
        self.friends
            .ring_deadlines
            .push(Reverse((deadline, friend.clone())));
        self.send(
            client,
            ServerMessage::Ringing {
                friend: friend.clone(),
            },
        );
        if let Some(open) = self.connections.get(&callee) {
            self.outputs.push_back(Output::SendMany(
                open.clone(),
                ServerMessage::IncomingCall { friend },
            ));
        }
    }

    pub(super) fn cancel_friend_call(&mut self, client: ClientId, friend: &FriendId) {
        match self.friends.rings.get(friend) {
            Some(ring) if ring.caller == client => {
                let ring = self.friends.rings.remove(friend).expect("looked up");
                self.tell_callee(ring.callee, None, friend);
            }
            _ => self.send(
                client,
                ServerMessage::error(ErrorCode::InvalidState, "not ringing that friend"),
            ),
        }
    }

    pub(super) fn answer_friend_call(
        &mut self,
        client: ClientId,
        friend: &FriendId,
        accept: bool,
        now: Instant,
    ) {
        let identity = self.clients[&client].identity;
        let ring = match self.friends.rings.get(friend) {
            Some(ring) if ring.callee == identity => {
                self.friends.rings.remove(friend).expect("looked up")
            }
            _ => {
                return self.send(
                    client,
                    ServerMessage::error(ErrorCode::InvalidState, "no call to answer"),
                );
            }
        };
        // The device's other connections stop ringing.
        self.tell_callee(identity, Some(client), friend);
        if !accept {
            return self.send(
                ring.caller,
                ServerMessage::FriendCallFailed {
                    friend: friend.clone(),
                    reason: FriendCallFailure::Declined,
                },
            );
        }
        match self.clients[&client].status {
            Status::InCall(_) => {
                // A ring outlives nothing that puts its callee in a call; kept for safety.
                return self.send(
                    client,
                    ServerMessage::error(ErrorCode::InvalidState, "in a call: hang up first"),
                );
            }
            Status::Queued => {
                self.matchmaker.leave(client);
                self.client_mut(client).status = Status::Idle;
            }
            Status::Idle => {}
        }
        let caller_identity = self.clients[&ring.caller].identity;
        let profile = |hub: &Hub, who: ClientId, seen_by: Identity, seen: Identity| {
            let nickname = hub.friends.links[&seen_by][&seen].nickname.clone();
            let languages = hub.clients[&who]
                .queue_entry
                .as_ref()
                .map(|e| e.languages.clone())
                .unwrap_or_default();
            PeerProfile {
                nickname,
                languages,
                shared_interests: Vec::new(),
            }
        };
        let profiles = [
            profile(self, ring.caller, identity, caller_identity),
            profile(self, client, caller_identity, identity),
        ];
        self.begin_call([ring.caller, client], profiles, Some(friend.clone()), now);
    }

    /// A ring stopped: the callee's connections (but `except`) hear `ring_ended`.
    fn tell_callee(&mut self, callee: Identity, except: Option<ClientId>, friend: &FriendId) {
        let open: Vec<ClientId> = self
            .connections
            .get(&callee)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&c| Some(c) != except)
            .collect();
        if !open.is_empty() {
            self.outputs.push_back(Output::SendMany(
                open,
                ServerMessage::RingEnded {
                    friend: friend.clone(),
                },
            ));
        }
    }

    /// Two connections began a call: rings from them stop, and rings to their devices
    /// fail as busy.
    pub(super) fn end_rings_of(&mut self, clients: [ClientId; 2]) {
        if self.friends.rings.is_empty() {
            return;
        }
        let identities = clients.map(|c| self.clients[&c].identity);
        let ended: Vec<FriendId> = self
            .friends
            .rings
            .iter()
            .filter(|(_, r)| clients.contains(&r.caller) || identities.contains(&r.callee))
            .map(|(id, _)| id.clone())
            .collect();
        for friend in ended {
            let ring = self.friends.rings.remove(&friend).expect("listed");
            self.tell_callee(ring.callee, None, &friend);
            if !clients.contains(&ring.caller) {
                self.send(
                    ring.caller,
                    ServerMessage::FriendCallFailed {
                        friend,
                        reason: FriendCallFailure::Busy,
                    },
                );
            }
        }
    }

    /// A connection closed: its rings stop; a device with no connection left misses
    /// the rings to it.
    pub(super) fn connection_gone(&mut self, client: ClientId, identity: Identity) {
        if self.friends.rings.is_empty() {
            return;
        }
        let offline = !self.connections.contains_key(&identity);
        let ended: Vec<FriendId> = self
            .friends
            .rings
            .iter()
            .filter(|(_, r)| r.caller == client || (offline && r.callee == identity))
            .map(|(id, _)| id.clone())
            .collect();
        for friend in ended {
            let ring = self.friends.rings.remove(&friend).expect("listed");
            if ring.caller == client {
                self.tell_callee(ring.callee, None, &friend);
            } else {
                self.send(
                    ring.caller,
                    ServerMessage::FriendCallFailed {
                        friend,
                        reason: FriendCallFailure::Missed,
                    },
                );
            }
        }
    }

    pub(super) fn friends_timeout(&mut self, now: Instant) {
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
        while let Some(Reverse((due, _))) = self.friends.ring_deadlines.peek() {
            if *due > now {
                break;
            }
            let Reverse((due, friend)) = self.friends.ring_deadlines.pop().expect("peeked");
            if self
                .friends
                .rings
                .get(&friend)
                .is_some_and(|r| r.deadline == due)
            {
                let ring = self.friends.rings.remove(&friend).expect("looked up");
                self.tell_callee(ring.callee, None, &friend);
                self.send(
                    ring.caller,
                    ServerMessage::FriendCallFailed {
                        friend,
                        reason: FriendCallFailure::Missed,
                    },
                );
            }
        }
        while let Some(&(due, identity)) = self.friends.ring_reviews.front() {
            if due > now {
                break;
            }
            self.friends.ring_reviews.pop_front();
            if let Some(history) = self.friends.ring_history.get_mut(&identity) {
                while history
                    .front()
                    .is_some_and(|&t| now.saturating_duration_since(t) >= RING_WINDOW)
                {
                    history.pop_front();
                }
                if history.is_empty() {
                    self.friends.ring_history.remove(&identity);
                }
            }
        }
    }
}
