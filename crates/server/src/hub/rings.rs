//! Ringing a friend: `call_friend` rings every connection of an online friend's device
//! for [`RING_TIME`]; the ring ends in a call (accepted), `declined`, `missed`, or with
//! the caller cancelling, leaving or starting another call. Only friends can ring each
//! other (`friends.rs` says who is a friend), at most [`RINGS_PER_WINDOW`] times per
//! [`RING_WINDOW`] per device.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chingu_proto::{FriendCallFailure, Presence};

use super::*;

/// How long a friend's devices ring before the call counts as missed.
pub const RING_TIME: Duration = Duration::from_secs(30);
/// Rings one device may start per [`RING_WINDOW`]: no ring-spam.
pub const RINGS_PER_WINDOW: usize = 10;
pub const RING_WINDOW: Duration = Duration::from_secs(10 * 60);

#[derive(Debug)]
struct Ring {
    /// The connection that rang.
    caller: ClientId,
    callee: Identity,
    deadline: Instant,
}

/// The rings under way, at most one per friendship.
#[derive(Debug, Default)]
pub(super) struct Rings {
    rings: HashMap<FriendId, Ring>,
    deadlines: BinaryHeap<Reverse<(Instant, FriendId)>>,
    /// When each device started its recent rings, and when to look again.
    history: HashMap<Identity, VecDeque<Instant>>,
    reviews: VecDeque<(Instant, Identity)>,
}

impl Rings {
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.deadlines.peek().map(|Reverse((d, _))| *d),
            self.reviews.front().map(|(d, _)| *d),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl Hub {
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
        if self.rings.rings.contains_key(&friend) {
            return self.send(
                client,
                ServerMessage::error(ErrorCode::InvalidState, "already ringing"),
            );
        }
        let recent_rings = self.rings.history.get_mut(&identity).map_or(0, |h| {
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
        self.rings
            .history
            .entry(identity)
            .or_default()
            .push_back(now);
        self.rings.reviews.push_back((now + RING_WINDOW, identity));
        if self.clients[&client].status == Status::Queued {
            self.matchmaker.leave(client);
            self.client_mut(client).status = Status::Idle;
            self.send(client, ServerMessage::LeftQueue);
        }
        let deadline = now + RING_TIME;
        self.rings.rings.insert(
            friend.clone(),
            Ring {
                caller: client,
                callee,
                deadline,
            },
        );
        self.rings
            .deadlines
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
        match self.rings.rings.get(friend) {
            Some(ring) if ring.caller == client => {
                let ring = self.rings.rings.remove(friend).expect("looked up");
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
        let ring = match self.rings.rings.get(friend) {
            Some(ring) if ring.callee == identity => {
                self.rings.rings.remove(friend).expect("looked up")
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
    pub(super) fn tell_callee(
        &mut self,
        callee: Identity,
        except: Option<ClientId>,
        friend: &FriendId,
    ) {
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
        if self.rings.rings.is_empty() {
            return;
        }
        let identities = clients.map(|c| self.clients[&c].identity);
        let ended: Vec<FriendId> = self
            .rings
            .rings
            .iter()
            .filter(|(_, r)| clients.contains(&r.caller) || identities.contains(&r.callee))
            .map(|(id, _)| id.clone())
            .collect();
        for friend in ended {
            let ring = self.rings.rings.remove(&friend).expect("listed");
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
        if self.rings.rings.is_empty() {
            return;
        }
        let offline = !self.connections.contains_key(&identity);
        let ended: Vec<FriendId> = self
            .rings
            .rings
            .iter()
            .filter(|(_, r)| r.caller == client || (offline && r.callee == identity))
            .map(|(id, _)| id.clone())
            .collect();
        for friend in ended {
            let ring = self.rings.rings.remove(&friend).expect("listed");
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

    /// The friendship ended: a ring on it stops.
    pub(super) fn end_ring(&mut self, friend: &FriendId) {
        if let Some(ring) = self.rings.rings.remove(friend) {
            self.tell_callee(ring.callee, None, friend);
        }
    }

    pub(super) fn rings_timeout(&mut self, now: Instant) {
        while let Some(Reverse((due, _))) = self.rings.deadlines.peek() {
            if *due > now {
                break;
            }
            let Reverse((due, friend)) = self.rings.deadlines.pop().expect("peeked");
            if self
                .rings
                .rings
                .get(&friend)
                .is_some_and(|r| r.deadline == due)
            {
                let ring = self.rings.rings.remove(&friend).expect("looked up");
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
        while let Some(&(due, identity)) = self.rings.reviews.front() {
            if due > now {
                break;
            }
            self.rings.reviews.pop_front();
            if let Some(history) = self.rings.history.get_mut(&identity) {
                while history
                    .front()
                    .is_some_and(|&t| now.saturating_duration_since(t) >= RING_WINDOW)
                {
                    history.pop_front();
                }
                if history.is_empty() {
                    self.rings.history.remove(&identity);
                }
            }
        }
    }
}
