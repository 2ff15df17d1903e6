//! The messages themselves. Field names are the wire names (`snake_case`).

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// Identifies one call between two clients. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId(pub String);

/// Identifies one connection's session. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub String);

/// Identifies one friendship; both friends know it by the same id. Opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct FriendId(pub String);

impl std::fmt::Display for FriendId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Messages from a client to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ClientMessage {
    /// First message of every connection.
    Hello {
        protocol_version: u32,
        /// The app's version, for logs and compatibility decisions.
        client_version: String,
        /// A random secret the device generated once and keeps. The server never shows
        /// it to other clients; blocks and reports are keyed by its hash.
        device_id: String,
    },
    /// Wait for a partner. Allowed when idle; replaces the preferences when queued.
    JoinQueue {
        nickname: String,
        /// BCP 47 language tags, most preferred first; at least one.
        languages: Vec<String>,
        #[serde(default)]
        interests: Vec<String>,
    },
    /// Stop waiting.
    LeaveQueue,
    /// Relay WebRTC signaling to the peer of `call_id`.
    Signal { call_id: CallId, signal: Signal },
    /// End the call and wait for someone new with the same preferences.
    Next { call_id: CallId },
    /// End the call and go idle.
    HangUp { call_id: CallId },
    /// Report the peer of a current or recent call.
    Report {
        call_id: CallId,
        reason: ReportReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Never be matched with the peer of this current or recent call again.
    Block { call_id: CallId },
    /// How a current or recent call was, 1 (bad) to 5 (great), for call quality
    /// analysis. The peer never learns it.
    Rate { call_id: CallId, stars: u8 },
    /// Application-level keepalive and round-trip probe; answered with `pong`.
    Ping { nonce: u64 },
    /// Take over this device's current call on this connection, after the connection
    /// that held it was lost (or is about to be: the network changed). Answered with
    /// `call_resumed`, or `peer_left` when the call is over.
    ResumeCall { call_id: CallId },
    /// Ask to be friends with the peer of the current call, or of one that ended within
    /// the last few minutes. Answered with `friend_requested` whether or not the peer
    /// asked too; when both have, both get `friend_added`.
    AddFriend { call_id: CallId },
    /// End a friendship, for both sides at once.
    RemoveFriend { friend: FriendId },
    /// End a friendship and never be matched with that person again.
    BlockFriend { friend: FriendId },
    /// Ring an online friend. Answered with `ringing`, or `friend_call_failed`.
    CallFriend { friend: FriendId },
    /// Stop ringing.
    CancelFriendCall { friend: FriendId },
    /// Accept or decline a ring (`incoming_call`).
    AnswerFriendCall { friend: FriendId, accept: bool },
}

/// Messages from the server to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ServerMessage {
    /// Answer to `hello`.
    Welcome {
        protocol_version: u32,
        session_id: SessionId,
        /// STUN/TURN servers for the peer connection; TURN credentials are short-lived.
        ice_servers: Vec<IceServer>,
        /// The server pings this often; a connection silent for three intervals is closed.
        heartbeat_interval_ms: u64,
    },
    /// The client is waiting for a partner.
    Queued,
    /// The client left the queue (answer to `leave_queue`).
    LeftQueue,
    /// A partner was found. The offerer sends the SDP offer.
    Matched {
        call_id: CallId,
        role: Role,
        peer: PeerProfile,
        /// Set when the call is with a friend who was rung, not a random match.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        friend: Option<FriendId>,
    },
    /// Signaling relayed from the peer.
    Signal { call_id: CallId, signal: Signal },
    /// The call ended on the peer's side (or the server's).
    PeerLeft {
        call_id: CallId,
        reason: PeerLeftReason,
    },
    /// The report was stored.
    Reported { call_id: CallId },
    /// The block was stored and is in force.
    Blocked { call_id: CallId },
    /// The rating is stored.
    Rated { call_id: CallId },
    /// How many people are online and waiting; sent on change, at most every few seconds.
    OnlineCount { online: u32, waiting: u32 },
    /// Answer to `ping`.
    Pong { nonce: u64 },
    /// Something the client sent was rejected; the connection stays open unless the code
    /// says otherwise (`unsupported_version`, `too_many_connections`).
    Error { code: ErrorCode, message: String },
    /// The server is stopping; reconnect after the given delay.
    ShuttingDown { retry_after_ms: u64 },
    /// Fresh STUN/TURN servers and credentials, sent before the previous ones expire;
    /// they replace those of `welcome` for every ICE gathering from now on.
    IceServers { ice_servers: Vec<IceServer> },
    /// This connection now holds the call (answer to `resume_call`); signals flow here.
    CallResumed { call_id: CallId },
    /// The device's friends, after `welcome`, in pages of at most
    /// [`FRIENDS_PER_PAGE`](crate::limits::FRIENDS_PER_PAGE): the list is whole with the
    /// page whose `more` is false.
    Friends {
        friends: Vec<Friend>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    /// The friend request is noted (answer to `add_friend`; says nothing about the peer).
    FriendRequested { call_id: CallId },
    /// Both asked: a new friend.
    FriendAdded { friend: Friend },
    /// The friendship ended (either side removed or blocked it).
    FriendRemoved { friend: FriendId },
    /// A friend's presence changed. Sent only to friends.
    Presence {
        friend: FriendId,
        presence: Presence,
    },
    /// The friend's devices are ringing (answer to `call_friend`).
    Ringing { friend: FriendId },
    /// A friend is calling: accept or decline with `answer_friend_call`.
    IncomingCall { friend: FriendId },
    /// The ring stopped without a call on this connection: the caller stopped, it timed
    /// out, or another connection of this device answered.
    RingEnded { friend: FriendId },
    /// The friend cannot be called now, or did not take the call.
    FriendCallFailed {
        friend: FriendId,
        reason: FriendCallFailure,
    },
}

/// A friend as the list shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Friend {
    pub id: FriendId,
    /// The nickname they had when you met.
    pub nickname: String,
    pub presence: Presence,
    /// When you last talked (unix seconds).
    pub last_call_unix: u64,
}

/// Whether a friend can be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum Presence {
    Online,
    InCall,
    Offline,
}

/// Why a call to a friend did not happen. Declined and missed say no more than that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum FriendCallFailure {
    Offline,
    Busy,
    Declined,
    /// Nobody answered within 30 s.
    Missed,
}

/// WebRTC signaling payloads, relayed verbatim between the two peers of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Signal {
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mline_index: Option<u16>,
    },
    EndOfCandidates,
    /// The answerer asks the offerer to restart ICE (its path died or its network
    /// changed); the offerer answers with a new `offer` with fresh ICE credentials.
    IceRestart,
}

/// Which side creates the SDP offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Offerer,
    Answerer,
}

/// What a client learns about its partner. Never the device id or address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct PeerProfile {
    pub nickname: String,
    pub languages: Vec<String>,
    pub shared_interests: Vec<String>,
}

/// Why a call ended for the peer who did not end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum PeerLeftReason {
    /// The peer hung up (or blocked you; the reason is not revealed).
    HungUp,
    /// The peer pressed Next.
    Next,
    /// The peer's connection closed or stopped answering heartbeats.
    Disconnected,
    /// The server is shutting down.
    ServerShutdown,
}

impl PeerLeftReason {
    /// The reason as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerLeftReason::HungUp => "hung_up",
            PeerLeftReason::Next => "next",
            PeerLeftReason::Disconnected => "disconnected",
            PeerLeftReason::ServerShutdown => "server_shutdown",
        }
    }
}

/// Why a user reports a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum ReportReason {
    Nudity,
    Harassment,
    Hate,
    Spam,
    Underage,
    Violence,
    Other,
}

impl ReportReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportReason::Nudity => "nudity",
            ReportReason::Harassment => "harassment",
            ReportReason::Hate => "hate",
            ReportReason::Spam => "spam",
            ReportReason::Underage => "underage",
            ReportReason::Violence => "violence",
            ReportReason::Other => "other",
        }
    }
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl ClientMessage {
    /// Every `type` a client may send, for telling unknown types from bad fields.
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "join_queue",
        "leave_queue",
        "signal",
        "next",
        "hang_up",
        "report",
        "block",
        "rate",
        "ping",
        "resume_call",
        "add_friend",
        "remove_friend",
        "block_friend",
        "call_friend",
        "cancel_friend_call",
        "answer_friend_call",
    ];

    /// The wire name of this message's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientMessage::Hello { .. } => "hello",
            ClientMessage::JoinQueue { .. } => "join_queue",
            ClientMessage::LeaveQueue => "leave_queue",
            ClientMessage::Signal { .. } => "signal",
            ClientMessage::Next { .. } => "next",
            ClientMessage::HangUp { .. } => "hang_up",
            ClientMessage::Report { .. } => "report",
            ClientMessage::Block { .. } => "block",
            ClientMessage::Rate { .. } => "rate",
            ClientMessage::Ping { .. } => "ping",
            ClientMessage::ResumeCall { .. } => "resume_call",
            ClientMessage::AddFriend { .. } => "add_friend",
            ClientMessage::RemoveFriend { .. } => "remove_friend",
            ClientMessage::BlockFriend { .. } => "block_friend",
            ClientMessage::CallFriend { .. } => "call_friend",
            ClientMessage::CancelFriendCall { .. } => "cancel_friend_call",
            ClientMessage::AnswerFriendCall { .. } => "answer_friend_call",
        }
    }
}

impl ServerMessage {
    /// Every `type` the server may send.
    pub const TYPES: &'static [&'static str] = &[
        "welcome",
        "queued",
        "left_queue",
        "matched",
        "signal",
        "peer_left",
        "reported",
        "blocked",
        "rated",
        "online_count",
        "pong",
        "error",
        "shutting_down",
        "ice_servers",
        "call_resumed",
        "friends",
        "friend_requested",
        "friend_added",
        "friend_removed",
        "presence",
        "ringing",
        "incoming_call",
        "ring_ended",
        "friend_call_failed",
    ];

    /// The wire name of this message's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerMessage::Welcome { .. } => "welcome",
            ServerMessage::Queued => "queued",
            ServerMessage::LeftQueue => "left_queue",
            ServerMessage::Matched { .. } => "matched",
            ServerMessage::Signal { .. } => "signal",
            ServerMessage::PeerLeft { .. } => "peer_left",
            ServerMessage::Reported { .. } => "reported",
            ServerMessage::Blocked { .. } => "blocked",
            ServerMessage::Rated { .. } => "rated",
            ServerMessage::OnlineCount { .. } => "online_count",
            ServerMessage::Pong { .. } => "pong",
            ServerMessage::Error { .. } => "error",
            ServerMessage::ShuttingDown { .. } => "shutting_down",
            ServerMessage::IceServers { .. } => "ice_servers",
            ServerMessage::CallResumed { .. } => "call_resumed",
            ServerMessage::Friends { .. } => "friends",
            ServerMessage::FriendRequested { .. } => "friend_requested",
            ServerMessage::FriendAdded { .. } => "friend_added",
            ServerMessage::FriendRemoved { .. } => "friend_removed",
            ServerMessage::Presence { .. } => "presence",
            ServerMessage::Ringing { .. } => "ringing",
            ServerMessage::IncomingCall { .. } => "incoming_call",
            ServerMessage::RingEnded { .. } => "ring_ended",
            ServerMessage::FriendCallFailed { .. } => "friend_call_failed",
        }
    }

    /// An error message for a rejected input.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }
}
