//! Limits and semantic checks on decoded messages. Parsing says a message has the right
//! shape; these checks say its values are ones the server will act on.

use crate::{CallId, ClientMessage, FriendId, ProtoError, ServerMessage, Signal};

/// Upper bounds on everything a client can send.
pub mod limits {
    /// Largest message accepted, in bytes of JSON text.
    pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
    /// Largest SDP (offer or answer), in bytes.
    pub const MAX_SDP_BYTES: usize = 16 * 1024;
    /// Largest ICE candidate line, in bytes.
    pub const MAX_CANDIDATE_BYTES: usize = 1024;
    /// Largest `sdp_mid`, in bytes.
    pub const MAX_SDP_MID_BYTES: usize = 64;
    /// Nickname length, in characters.
    pub const MAX_NICKNAME_CHARS: usize = 32;
    /// Languages per queue entry.
    pub const MAX_LANGUAGES: usize = 8;
    /// Length of one language tag, in bytes.
    pub const MAX_LANGUAGE_BYTES: usize = 16;
    /// Interests per queue entry.
    pub const MAX_INTERESTS: usize = 16;
    /// Length of one interest, in characters.
    pub const MAX_INTEREST_CHARS: usize = 32;
    /// Length of a report note, in characters.
    pub const MAX_NOTE_CHARS: usize = 500;
    /// Device id length, in bytes (it is ASCII).
    pub const DEVICE_ID_BYTES: std::ops::RangeInclusive<usize> = 16..=128;
    /// Client version length, in bytes.
    pub const MAX_CLIENT_VERSION_BYTES: usize = 64;
    /// Call and session id length, in bytes.
    pub const MAX_ID_BYTES: usize = 64;
    /// Friends in one `friends` message (a longer list comes in several): a page of the
    /// longest nicknames stays within the size a client accepts.
    pub const FRIENDS_PER_PAGE: usize = 100;
}

use limits::*;

pub(crate) fn client_message(msg: &ClientMessage) -> Result<(), ProtoError> {
    match msg {
        ClientMessage::Hello {
            protocol_version: _,
            client_version,
            device_id,
        } => {
            if client_version.is_empty()
                || client_version.len() > MAX_CLIENT_VERSION_BYTES
                || client_version.chars().any(char::is_control)
            {
                return Err(ProtoError::invalid(format!(
                    "client_version must be 1 to {MAX_CLIENT_VERSION_BYTES} printable bytes"
                )));
            }
            if !DEVICE_ID_BYTES.contains(&device_id.len()) || !is_token(device_id) {
                return Err(ProtoError::invalid(format!(
                    "device_id must be {} to {} characters of A-Z, a-z, 0-9, '-' or '_'",
                    DEVICE_ID_BYTES.start(),
                    DEVICE_ID_BYTES.end()
                )));
            }
            Ok(())
        }
        ClientMessage::JoinQueue {
            nickname,
            languages,
            interests,
        } => {
            normalize_nickname(nickname)?;
            if languages.is_empty() || languages.len() > MAX_LANGUAGES {
                return Err(ProtoError::invalid(format!(
                    "languages must hold 1 to {MAX_LANGUAGES} tags"
                )));
            }
            for tag in languages {
                language_tag(tag)?;
            }
            if interests.len() > MAX_INTERESTS {
                return Err(ProtoError::invalid(format!(
                    "interests must hold at most {MAX_INTERESTS} entries"
                )));
            }
            for interest in interests {
                text("interest", interest, MAX_INTEREST_CHARS)?;
            }
            Ok(())
        }
        ClientMessage::LeaveQueue | ClientMessage::Ping { .. } => Ok(()),
        ClientMessage::Signal { call_id, signal } => {
            id("call_id", &call_id.0)?;
            self::signal(signal)
        }
        ClientMessage::Next { call_id }
        | ClientMessage::HangUp { call_id }
        | ClientMessage::Block { call_id }
        | ClientMessage::ResumeCall { call_id }
        | ClientMessage::AddFriend { call_id } => id("call_id", &call_id.0),
        ClientMessage::RemoveFriend { friend }
        | ClientMessage::BlockFriend { friend }
        | ClientMessage::CallFriend { friend }
        | ClientMessage::CancelFriendCall { friend }
        | ClientMessage::AnswerFriendCall { friend, .. } => self::friend(friend),
        ClientMessage::Rate { call_id, stars } => {
            id("call_id", &call_id.0)?;
            if !(1..=5).contains(stars) {
                return Err(ProtoError::invalid("stars must be 1 to 5"));
            }
            Ok(())
        }
        ClientMessage::Report { call_id, note, .. } => {
            id("call_id", &call_id.0)?;
            if let Some(note) = note
                && note.chars().count() > MAX_NOTE_CHARS
            {
                return Err(ProtoError::invalid(format!(
                    "note must be at most {MAX_NOTE_CHARS} characters"
                )));
            }
            Ok(())
        }
    }
}

pub(crate) fn server_message(msg: &ServerMessage) -> Result<(), ProtoError> {
    match msg {
        ServerMessage::Signal { call_id, signal } => {
            call(call_id)?;
            self::signal(signal)
        }
        ServerMessage::Matched { call_id, .. }
        | ServerMessage::PeerLeft { call_id, .. }
        | ServerMessage::Reported { call_id }
        | ServerMessage::Blocked { call_id }
        | ServerMessage::Rated { call_id }
        | ServerMessage::CallResumed { call_id }
        | ServerMessage::FriendRequested { call_id } => call(call_id),
        ServerMessage::Friends { friends, .. } => {
            if friends.len() > FRIENDS_PER_PAGE {
                return Err(ProtoError::invalid(format!(
                    "at most {FRIENDS_PER_PAGE} friends per page"
                )));
            }
            for f in friends {
                listed_friend(f)?;
            }
            Ok(())
        }
        ServerMessage::FriendAdded { friend } => listed_friend(friend),
        ServerMessage::FriendRemoved { friend }
        | ServerMessage::Presence { friend, .. }
        | ServerMessage::Ringing { friend }
        | ServerMessage::IncomingCall { friend }
        | ServerMessage::RingEnded { friend }
        | ServerMessage::FriendCallFailed { friend, .. } => self::friend(friend),
        _ => Ok(()),
    }
}

fn call(call_id: &CallId) -> Result<(), ProtoError> {
    id("call_id", &call_id.0)
}

fn friend(friend: &FriendId) -> Result<(), ProtoError> {
    id("friend", &friend.0)
}

fn listed_friend(f: &crate::Friend) -> Result<(), ProtoError> {
    friend(&f.id)?;
    normalize_nickname(&f.nickname).map(drop)
}

fn signal(signal: &Signal) -> Result<(), ProtoError> {
    match signal {
        Signal::Offer { sdp } | Signal::Answer { sdp } => {
            if sdp.is_empty() || sdp.len() > MAX_SDP_BYTES {
                return Err(ProtoError::invalid(format!(
                    "sdp must be 1 to {MAX_SDP_BYTES} bytes"
                )));
            }
            Ok(())
        }
        Signal::Candidate {
            candidate,
            sdp_mid,
            sdp_mline_index: _,
        } => {
            if candidate.len() > MAX_CANDIDATE_BYTES || candidate.contains(['\r', '\n']) {
                return Err(ProtoError::invalid(format!(
                    "candidate must be one line of at most {MAX_CANDIDATE_BYTES} bytes"
                )));
            }
            if sdp_mid.as_ref().is_some_and(|mid| {
                mid.len() > MAX_SDP_MID_BYTES || mid.chars().any(char::is_control)
            }) {
                return Err(ProtoError::invalid(format!(
                    "sdp_mid must be at most {MAX_SDP_MID_BYTES} printable bytes"
                )));
            }
            Ok(())
        }
        Signal::EndOfCandidates | Signal::IceRestart => Ok(()),
    }
}

fn id(field: &str, value: &str) -> Result<(), ProtoError> {
    if value.is_empty() || value.len() > MAX_ID_BYTES || !is_token(value) {
        return Err(ProtoError::invalid(format!(
            "{field} must be 1 to {MAX_ID_BYTES} characters of A-Z, a-z, 0-9, '-' or '_'"
        )));
    }
    Ok(())
}

/// A nickname as the other person sees it: without surrounding whitespace, 1 to
/// [`MAX_NICKNAME_CHARS`] characters, at least one of them visible, no control or
/// bidirectional-control characters (which make a name read as another). The one rule
/// the server, the engine and the app all apply.
pub fn normalize_nickname(raw: &str) -> Result<&str, ProtoError> {
    let nickname = raw.trim();
    text("nickname", nickname, MAX_NICKNAME_CHARS)?;
    if nickname.chars().any(crate::text::is_bidi_control) {
        return Err(ProtoError::invalid(
            "nickname must not contain text-direction controls",
        ));
    }
    Ok(nickname)
}

/// 1 to `max_chars` characters, at least one visible, no control characters.
fn text(field: &str, value: &str, max_chars: usize) -> Result<(), ProtoError> {
    let chars = value.chars().count();
    if value.chars().all(crate::text::is_invisible)
        || chars > max_chars
        || value.chars().any(char::is_control)
    {
        return Err(ProtoError::invalid(format!(
            "{field} must be 1 to {max_chars} characters, some of them visible, without control characters"
        )));
    }
    Ok(())
}

/// A loose BCP 47 check: letters, digits and hyphens, starting with 2 or 3 letters.
fn language_tag(tag: &str) -> Result<(), ProtoError> {
    let primary = tag.split('-').next().unwrap_or_default();
    let ok = tag.len() <= MAX_LANGUAGE_BYTES
        && (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && tag.split('-').all(|part| {
            !part.is_empty() && part.len() <= 8 && part.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    if !ok {
        return Err(ProtoError::invalid(format!(
            "language {tag:?} is not a BCP 47 tag such as \"ko\" or \"en-US\""
        )));
    }
    Ok(())
}

fn is_token(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
