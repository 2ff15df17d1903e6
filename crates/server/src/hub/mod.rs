//! Sessions and calls: what each connected client is doing, and what the server says to
//! whom in response. Sans-IO like the matchmaker it drives: the shell feeds [`Input`]s
//! with the current time and drains [`Output`]s; it owns no sockets, tasks or clocks.
//!
//! Invariants:
//! - a client is in at most one call, and a call has exactly two clients who both point
//!   to it;
//! - signaling is relayed only between the two clients of the call it names;
//! - every call end tells the other client at once and starts the pair's cooldown;
//! - a device's presence reaches its friends' connections and no one else's; a friend
//!   request is never revealed to the other side before it is mutual (`friends.rs`).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chingu_proto::{
    CallId, ClientMessage, ErrorCode, FriendId, PeerLeftReason, PeerProfile, ReportReason, Role,
    ServerMessage,
};

use crate::ids::{ClientId, Identity, random_token};
use crate::matchmaker::{Match, MatchConfig, Matchmaker, Preferences};
use friends::Friends;
use recent::RecentCalls;
use rings::Rings;

mod calls;
mod friends;
mod moderation;
mod recent;
mod resume;
mod rings;

/// Something that happened to the hub.
#[derive(Debug)]
pub enum Input {
    /// A client finished its handshake.
    Connected {
        client: ClientId,
        identity: Identity,
    },
    /// A client sent a message other than `hello`, which the connection answers itself.
    /// `ping` comes through here so that its `pong` is ordered after every reply to what
    /// the client sent before it.
    Message {
        client: ClientId,
        msg: ClientMessage,
    },
    /// A client's connection ended. `silent`: it went quiet (heartbeat timeout), as when
    /// the device lost its network, rather than being closed; only then may its call wait
    /// for the device to resume it (a closed connection is an app that quit or crashed:
    /// its peer should know at once).
    Disconnected { client: ClientId, silent: bool },
    /// A record the hub asked to persist is durable (then `result` holds the messages
    /// to send), or failed to be (then `client`, who asked, is told).
    Persisted {
        client: Option<ClientId>,
        result: Result<Vec<(ClientId, ServerMessage)>, ()>,
    },
}

/// Something the shell must do.
#[derive(Debug, PartialEq)]
pub enum Output {
    Send(ClientId, ServerMessage),
    /// Send the same message to several clients (serialised once).
    SendMany(Vec<ClientId>, ServerMessage),
    /// Store a record durably, then feed back [`Input::Persisted`] with `acks` (what to
    /// send once it is durable); `client` asked for it, if anyone did.
    Persist {
        client: Option<ClientId>,
        record: Record,
        acks: Vec<(ClientId, ServerMessage)>,
    },
}

/// A durable record: moderation, friendships.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// `from` asked to befriend `to` after `call_id`; forgotten at `expires_unix`.
    FriendRequest {
        call_id: CallId,
        from: Identity,
        to: Identity,
        /// The nickname each had in the call, as the other saw it.
        from_nickname: String,
        to_nickname: String,
        expires_unix: u64,
    },
    /// Both asked: friends. Replaces the call's requests.
    Friendship {
        id: FriendId,
        call_id: CallId,
        a: Identity,
        b: Identity,
        a_nickname: String,
        b_nickname: String,
        at_unix: u64,
    },
    /// The friendship ended.
    Unfriend { id: FriendId },
    /// Two friends talked.
    FriendsTalked { id: FriendId, at_unix: u64 },
    Report {
        reporter: Identity,
        reported: Identity,
        call_id: CallId,
        reason: ReportReason,
        note: Option<String>,
    },
    Block {
        blocker: Identity,
        blocked: Identity,
    },
    Rating {
        rater: Identity,
        call_id: CallId,
        stars: u8,
    },
}

/// Hub policy.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub matching: MatchConfig,
    /// How often the online count is broadcast, when it changed.
    pub online_count_interval: Duration,
    /// Reports one device may file per day (besides one per call).
    pub reports_per_device_per_day: u32,
    /// How long a call outlives the lost connection of one of its members, waiting for
    /// the device to come back on a new connection (`resume_call`). Zero: the peer
    /// hears `disconnected` at once.
    pub resume_grace: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            matching: MatchConfig::default(),
            online_count_interval: Duration::from_secs(2),
            reports_per_device_per_day: 20,
            resume_grace: Duration::from_secs(15),
        }
    }
}

/// Figures for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubStats {
    pub online: u64,
    pub waiting: u64,
    pub calls_active: u64,
    pub matches_total: u64,
    /// Queue entries replaced by a join from another connection of the same device.
    pub queue_displaced_total: u64,
    /// Reports refused: repeated for a call, or over a device's daily budget.
    pub reports_refused_total: u64,
    /// Friendships held in memory (each counted once).
    pub friendships: u64,
    /// Presence messages sent to friends.
    pub presence_sent_total: u64,
}

#[derive(Debug)]
struct Client {
    identity: Identity,
    /// The last `join_queue`, reused by `next`.
    queue_entry: Option<QueueEntry>,
    status: Status,
}

#[derive(Debug, Clone)]
struct QueueEntry {
    nickname: String,
    languages: Vec<String>,
    prefs: Preferences,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Idle,
    Queued,
    InCall(CallId),
}

#[derive(Debug)]
struct Call {
    /// The connections holding the call (the offerer's first). A member that is away
    /// keeps the id of its lost connection.
    clients: [ClientId; 2],
    identities: [Identity; 2],
    /// A member whose connection was lost, and until when its device may resume.
    away: [Option<Instant>; 2],
}

/// What a call needs to be remembered by for friendship: who was in it, as whom.
#[derive(Debug, Clone)]
pub(crate) struct CallMembers {
    pub(crate) identities: [Identity; 2],
    /// Each member's nickname as the other saw it.
    pub(crate) nicknames: [String; 2],
}

/// The session and call state of the whole server.
#[derive(Debug)]
pub struct Hub {
    config: HubConfig,
    matchmaker: Matchmaker,
    clients: HashMap<ClientId, Client>,
    calls: HashMap<CallId, Call>,
    outputs: VecDeque<Output>,
    /// Each device's recent calls and report budget.
    recent: RecentCalls,
    matches_total: u64,
    queue_displaced_total: u64,
    reports_refused_total: u64,
    next_online_count: Option<Instant>,
    last_online_count: (u32, u32),
    /// Calls with a member away, by deadline (the grace is constant, so in order).
    away_deadlines: VecDeque<(Instant, CallId)>,
    /// Each device's open connections.
    connections: HashMap<Identity, Vec<ClientId>>,
    friends: Friends,
    rings: Rings,
    /// An instant and the unix time (seconds) it was, for the times friends are shown.
    epoch: (Instant, u64),
}

impl Hub {
    pub fn new(config: HubConfig) -> Self {
        Self {
            matchmaker: Matchmaker::new(config.matching.clone()),
            config,
            clients: HashMap::new(),
            calls: HashMap::new(),
            outputs: VecDeque::new(),
            recent: RecentCalls::default(),
            matches_total: 0,
            queue_displaced_total: 0,
            reports_refused_total: 0,
            next_online_count: None,
            last_online_count: (0, 0),
            away_deadlines: VecDeque::new(),
            connections: HashMap::new(),
            friends: Friends::default(),
            rings: Rings::default(),
            epoch: (Instant::now(), 0),
        }
    }

    /// Ties the hub's clock to the wall clock: `at` was `unix` seconds. Friends' "last
    /// talked" and the expiry of stored requests are in unix time.
    pub fn set_epoch(&mut self, at: Instant, unix: u64) {
        self.epoch = (at, unix);
    }

    fn unix(&self, now: Instant) -> u64 {
        let (at, unix) = self.epoch;
        if now >= at {
            unix + (now - at).as_secs()
        } else {
            unix.saturating_sub((at - now).as_secs())
        }
    }

    /// Loads a block from storage at startup.
    pub fn restore_block(&mut self, blocker: Identity, blocked: Identity) {
        self.matchmaker.block(blocker, blocked);
    }

    pub fn handle(&mut self, input: Input, now: Instant) {
        if self.next_online_count.is_none() {
            self.next_online_count = Some(now + self.config.online_count_interval);
        }
        match input {
            Input::Connected { client, identity } => {
                self.clients.insert(
                    client,
                    Client {
                        identity,
                        queue_entry: None,
                        status: Status::Idle,
                    },
                );
                self.connections.entry(identity).or_default().push(client);
                let (online, waiting) = self.online_count();
                self.send(client, ServerMessage::OnlineCount { online, waiting });
                self.send_friend_list(client, identity);
                self.presence_may_have_changed(identity, now);
            }
            Input::Message { client, msg } => {
                if self.clients.contains_key(&client) {
                    self.on_message(client, msg, now);
                }
            }
            Input::Disconnected { client, silent } => self.on_disconnect(client, silent, now),
            Input::Persisted { client, result } => match result {
                Ok(acks) => {
                    for (to, msg) in acks {
                        if self.clients.contains_key(&to) {
                            self.send(to, msg);
                        }
                    }
                }
                Err(()) => {
                    if let Some(client) = client.filter(|c| self.clients.contains_key(c)) {
                        self.send(
                            client,
                            ServerMessage::error(
                                ErrorCode::Internal,
                                "could not store that; try again",
                            ),
                        );
                    }
                }
            },
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((deadline, _)) = self.away_deadlines.front() {
            if *deadline > now {
                break;
            }
            let (_, call_id) = self.away_deadlines.pop_front().expect("front exists");
            // The member may have come back (or the call ended) since.
            let gone = self.calls.get(&call_id).and_then(|call| {
                (0..2)
                    .find(|&i| call.away[i].is_some_and(|d| d <= now))
                    .map(|i| call.clients[i])
            });
            if let Some(client) = gone {
                self.end_call(&call_id, client, PeerLeftReason::Disconnected, now);
            }
        }
        self.recent.handle_timeout(now);
        self.friends_timeout(now);
        self.rings_timeout(now);
        self.matchmaker.handle_timeout(now);
        self.start_matched_calls(now);
        if self.next_online_count.is_some_and(|due| due <= now) {
            self.next_online_count = Some(now + self.config.online_count_interval);
            let count = self.online_count();
            if count != self.last_online_count {
                self.last_online_count = count;
                // Only the lobby shows the count: clients in a call are not told, which
                // also spares a write to every socket on the server every interval.
                let lobby: Vec<ClientId> = self
                    .clients
                    .iter()
                    .filter(|(_, c)| !matches!(c.status, Status::InCall(_)))
                    .map(|(&id, _)| id)
                    .collect();
                if !lobby.is_empty() {
                    self.outputs.push_back(Output::SendMany(
                        lobby,
                        ServerMessage::OnlineCount {
                            online: count.0,
                            waiting: count.1,
                        },
                    ));
                }
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.matchmaker.poll_timeout(),
            self.recent.poll_timeout(),
            self.next_online_count,
            self.away_deadlines.front().map(|(d, _)| *d),
            self.friends.poll_timeout(),
            self.rings.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn stats(&self) -> HubStats {
        HubStats {
            online: self.clients.len() as u64,
            waiting: self.matchmaker.waiting() as u64,
            calls_active: self.calls.len() as u64,
            matches_total: self.matches_total,
            queue_displaced_total: self.queue_displaced_total,
            reports_refused_total: self.reports_refused_total,
            friendships: self.friends.count() as u64,
            presence_sent_total: self.friends.presence_sent,
        }
    }

    fn online_count(&self) -> (u32, u32) {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        (clamp(self.clients.len()), clamp(self.matchmaker.waiting()))
    }

    fn send(&mut self, client: ClientId, msg: ServerMessage) {
        self.outputs.push_back(Output::Send(client, msg));
    }

    fn on_message(&mut self, client: ClientId, msg: ClientMessage, now: Instant) {
        match msg {
            ClientMessage::JoinQueue {
                nickname,
                languages,
                interests,
            } => {
                let entry = QueueEntry {
                    prefs: Preferences::new(&languages, &interests),
                    // Validated with the message; this only trims.
                    nickname: chingu_proto::normalize_nickname(&nickname)
                        .unwrap_or(&nickname)
                        .to_owned(),
                    languages,
                };
                self.join_queue(client, entry, now);
            }
            ClientMessage::LeaveQueue => {
                let state = self.client_mut(client);
                match state.status {
                    Status::InCall(_) => self.send(
                        client,
                        ServerMessage::error(
                            ErrorCode::InvalidState,
                            "in a call, not in the queue: hang up or press next",
                        ),
                    ),
                    Status::Queued => {
                        state.status = Status::Idle;
                        self.matchmaker.leave(client);
                        self.send(client, ServerMessage::LeftQueue);
                    }
                    Status::Idle => self.send(client, ServerMessage::LeftQueue),
                }
            }
            ClientMessage::Signal { call_id, signal } => {
                if let Some(peer) = self.peer_in_call(client, &call_id) {
                    self.send(peer, ServerMessage::Signal { call_id, signal });
                }
            }
            ClientMessage::Next { call_id } => {
                let state = &self.clients[&client];
                let identity = state.identity;
                let raced = state.status == Status::Idle
                    && state.queue_entry.is_some()
                    && self.recent.is_latest(identity, &call_id);
                if raced {
                    // Both pressed Next at once: the peer's arrived first and ended the
                    // call. This one still means "someone new, please".
                    let entry = self.client_mut(client).queue_entry.clone();
                    if let Some(entry) = entry {
                        self.join_queue(client, entry, now);
                    }
                } else if self.peer_in_call(client, &call_id).is_some() {
                    self.end_call(&call_id, client, PeerLeftReason::Next, now);
                    let entry = self
                        .client_mut(client)
                        .queue_entry
                        .clone()
                        .expect("a client in a call joined the queue first");
                    self.join_queue(client, entry, now);
                }
            }
            ClientMessage::HangUp { call_id } => {
                if self.peer_in_call(client, &call_id).is_some() {
                    self.end_call(&call_id, client, PeerLeftReason::HungUp, now);
                }
            }
            ClientMessage::Report {
                call_id,
                reason,
                note,
            } => self.report(client, call_id, reason, note, now),
            ClientMessage::Block { call_id } => self.block(client, call_id, now),
            ClientMessage::Rate { call_id, stars } => self.rate(client, call_id, stars),
            ClientMessage::Hello { .. } => self.send(
                client,
                ServerMessage::error(ErrorCode::AlreadyHello, "hello was already accepted"),
            ),
            ClientMessage::Ping { nonce } => self.send(client, ServerMessage::Pong { nonce }),
            ClientMessage::ResumeCall { call_id } => self.resume_call(client, call_id, now),
            ClientMessage::AddFriend { call_id } => self.add_friend(client, call_id, now),
            ClientMessage::RemoveFriend { friend } => {
                self.remove_friend(client, &friend, false, now);
            }
            ClientMessage::BlockFriend { friend } => self.remove_friend(client, &friend, true, now),
            ClientMessage::CallFriend { friend } => self.call_friend(client, friend, now),
            ClientMessage::CancelFriendCall { friend } => self.cancel_friend_call(client, &friend),
            ClientMessage::AnswerFriendCall { friend, accept } => {
                self.answer_friend_call(client, &friend, accept, now);
            }
            // A message type added to the protocol but not yet handled here.
            #[allow(unreachable_patterns)]
            other => self.send(
                client,
                ServerMessage::error(
                    ErrorCode::UnknownType,
                    format!("{} is not supported by this server", other.type_name()),
                ),
            ),
        }
    }

    fn join_queue(&mut self, client: ClientId, entry: QueueEntry, now: Instant) {
        let state = self.client_mut(client);
        if let Status::InCall(_) = state.status {
            self.send(
                client,
                ServerMessage::error(
                    ErrorCode::InvalidState,
                    "already in a call: hang up or press next first",
                ),
            );
            return;
        }
        let identity = state.identity;
        state.status = Status::Queued;
        state.queue_entry = Some(entry.clone());
        // One place in the queue per device: a join from another of its connections (a
        // second window, a reconnect whose old connection lingers) takes that place.
        for other in self.matchmaker.waiting_from(identity) {
            if other != client {
                self.matchmaker.leave(other);
                self.client_mut(other).status = Status::Idle;
                self.queue_displaced_total += 1;
                self.send(
                    other,
                    ServerMessage::error(
                        ErrorCode::InvalidState,
                        "this device is now searching from another connection",
                    ),
                );
            }
        }
        self.matchmaker.join(client, identity, entry.prefs, now);
        self.send(client, ServerMessage::Queued);
        self.start_matched_calls(now);
    }

    fn client_mut(&mut self, client: ClientId) -> &mut Client {
        self.clients
            .get_mut(&client)
            .expect("messages reach the hub only from connected clients")
    }
}

#[cfg(test)]
mod abuse_tests;
#[cfg(test)]
mod friends_tests;
#[cfg(test)]
mod rings_tests;
#[cfg(test)]
mod tests;
