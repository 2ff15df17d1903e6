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
