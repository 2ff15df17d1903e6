//! The wire protocol between the Chingu app and `chingu-server`.
//!
//! Every message is one JSON object in one WebSocket text frame, tagged by its `type`
//! field. The first message a client sends is [`ClientMessage::Hello`]; the server answers
//! [`ServerMessage::Welcome`] or an [`ErrorCode::UnsupportedVersion`] error and closes.
//!
//! This crate owns the types, the limits and the validation of untrusted input: use
//! [`decode_client`] on the server and [`decode_server`] on the client, never
//! `serde_json::from_str` directly, so that every bad input maps to an [`ErrorCode`].
//! It has no I/O and no async runtime. `docs/protocol.md` documents every message with
//! an example, and a test keeps those examples parseable.

mod codec;
mod error;
mod messages;
pub mod text;
mod validate;

pub use codec::{decode_client, decode_server, encode, fuzz_decode};
pub use error::{ErrorCode, MAX_ERROR_MESSAGE_CHARS, ProtoError};
pub use messages::{
    CallId, ClientMessage, Friend, FriendCallFailure, FriendId, IceServer, PeerLeftReason,
    PeerProfile, Presence, ReportReason, Role, ServerMessage, SessionId, Signal,
};
pub use validate::{limits, normalize_nickname};

/// The protocol version this build speaks. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
