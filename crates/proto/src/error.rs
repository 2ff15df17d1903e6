//! Error codes sent to clients, and the error type of decoding.

use serde::{Deserialize, Serialize};

/// Why the server rejected something. Clients match on these codes, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum ErrorCode {
    /// Not JSON, not an object, or no `type` field.
    Malformed,
    /// A `type` this protocol version does not know.
    UnknownType,
    /// A message larger than [`limits::MAX_MESSAGE_BYTES`](crate::limits::MAX_MESSAGE_BYTES).
    TooLarge,
    /// A known message with a missing, extra or out-of-range field.
    InvalidField,
    /// The client's `protocol_version` is not supported; the connection is closed.
    UnsupportedVersion,
    /// The first message must be `hello`.
    HelloRequired,
    /// `hello` was sent twice.
    AlreadyHello,
    /// Too many messages per second; the message was dropped.
    RateLimited,
    /// The message does not fit the client's state (joining while in a call, ...).
    InvalidState,
    /// The `call_id` is not the client's current call.
    NotInCall,
    /// The `call_id` is not one of the client's recent calls (report, block).
    UnknownCall,
    /// The `friend` is not one of the device's friends.
    UnknownFriend,
    /// Too many connections from this address.
    TooManyConnections,
    /// The server is busy; try again later.
    Overloaded,
    /// A fault on the server's side; nothing the client sent was wrong.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::AlreadyHello => "already_hello",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::NotInCall => "not_in_call",
            ErrorCode::UnknownCall => "unknown_call",
            ErrorCode::UnknownFriend => "unknown_friend",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message that could not be accepted, with the code to send back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtoError {
    pub code: ErrorCode,
    pub message: String,
}

/// The longest error message sent back, in characters. Errors quote the input they
/// reject; a client must not get its 32 KB back (nor make the server send it).
pub const MAX_ERROR_MESSAGE_CHARS: usize = 200;

impl ProtoError {
    /// An error; `message` is cut to [`MAX_ERROR_MESSAGE_CHARS`] and control characters
    /// in it are escaped (it may quote untrusted input).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = if message.chars().count() > MAX_ERROR_MESSAGE_CHARS
            || message.chars().any(char::is_control)
        {
            crate::text::excerpt(&message, MAX_ERROR_MESSAGE_CHARS)
        } else {
            message
        };
        Self { code, message }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidField, message)
    }
}
