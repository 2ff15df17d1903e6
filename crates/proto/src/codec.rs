//! Text <-> message, with every failure mapped to an [`ErrorCode`].

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::limits::MAX_MESSAGE_BYTES;
use crate::{ClientMessage, ErrorCode, ProtoError, ServerMessage, Signal, validate};

/// Decodes and validates one message from a client.
pub fn decode_client(text: &str) -> Result<ClientMessage, ProtoError> {
    let msg: ClientMessage = decode(text, ClientMessage::TYPES, MAX_MESSAGE_BYTES)?;
    match &msg {
        ClientMessage::LeaveQueue => only_fields(text, "leave_queue", &["type"], None)?,
        ClientMessage::Signal {
            signal: Signal::EndOfCandidates,
            ..
        } => end_of_candidates_fields(text)?,
        _ => {}
    }
    validate::client_message(&msg)?;
    Ok(msg)
}

/// Decodes and validates one message from the server.
///
/// Server messages may be larger than client ones (a relayed offer plus framing) but are
/// still bounded, so a hostile server cannot make a client buffer without limit.
pub fn decode_server(text: &str) -> Result<ServerMessage, ProtoError> {
    let msg: ServerMessage = decode(text, ServerMessage::TYPES, 2 * MAX_MESSAGE_BYTES)?;
    match &msg {
        ServerMessage::Queued => only_fields(text, "queued", &["type"], None)?,
        ServerMessage::LeftQueue => only_fields(text, "left_queue", &["type"], None)?,
        ServerMessage::Signal {
            signal: Signal::EndOfCandidates,
            ..
        } => end_of_candidates_fields(text)?,
        _ => {}
    }
    validate::server_message(&msg)?;
    Ok(msg)
}

/// A `signal` carrying `end_of_candidates` has exactly its fields, both ways.
fn end_of_candidates_fields(text: &str) -> Result<(), ProtoError> {
    only_fields(
        text,
        "signal",
        &["type", "call_id", "signal"],
        Some("signal"),
    )
}

/// serde ignores unknown fields next to the tag of a variant that has no fields of its
/// own (`leave_queue`, `end_of_candidates`); the protocol refuses them like any other.
/// Checks that the object has only `allowed` keys and, with `inner`, that the object
/// under that key has only its `kind`. Runs only for those few, tiny messages.
fn only_fields(
    text: &str,
    kind: &str,
    allowed: &[&str],
    inner: Option<&str>,
) -> Result<(), ProtoError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ProtoError::new(ErrorCode::Malformed, format!("not valid JSON: {e}")))?;
    let extra = |object: Option<&serde_json::Map<String, serde_json::Value>>, allowed: &[&str]| {
        object
            .into_iter()
            .flat_map(|o| o.keys())
            .find(|k| !allowed.contains(&k.as_str()))
            .cloned()
    };
    let found = extra(value.as_object(), allowed).or_else(|| {
        inner.and_then(|key| extra(value.get(key).and_then(|v| v.as_object()), &["kind"]))
    });
    match found {
        Some(field) => Err(ProtoError::new(
            ErrorCode::InvalidField,
            format!(
                "bad {kind} message: unknown field \"{}\"",
                crate::text::excerpt(&field, 32)
            ),
        )),
        None => Ok(()),
    }
}

/// Encodes a message as one line of JSON.
pub fn encode<T: serde::Serialize>(msg: &T) -> String {
    // Serializing these types cannot fail: no maps with non-string keys, no foreign
    // Serialize impls, and String output.
    serde_json::to_string(msg).expect("protocol messages always serialize")
}

fn decode<T: DeserializeOwned>(
    text: &str,
    known_types: &[&str],
    max_bytes: usize,
) -> Result<T, ProtoError> {
    if text.len() > max_bytes {
        return Err(ProtoError::new(
            ErrorCode::TooLarge,
            format!("message is {} bytes; the limit is {max_bytes}", text.len()),
        ));
    }
    serde_json::from_str(text).map_err(|err| classify(text, known_types, &err))
}

/// Tells "not a message at all" from "a message type we do not know" from "a known type
/// with bad fields". Runs only on the error path, so the second parse costs nothing on
/// good input.
fn classify(text: &str, known_types: &[&str], err: &serde_json::Error) -> ProtoError {
    #[derive(Deserialize)]
    struct TypeOnly {
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    use serde_json::error::Category;
    // A number too large for any field (`1e999`) is well-formed JSON that serde_json
    // cannot hold: a bad field, not a bad message, when it sits inside an object.
    if err.to_string().starts_with("number out of range") && text.trim_start().starts_with('{') {
        return ProtoError::new(
            ErrorCode::InvalidField,
            "a number in the message is out of range",
        );
    }
    if matches!(
        err.classify(),
        Category::Syntax | Category::Eof | Category::Io
    ) {
        return ProtoError::new(ErrorCode::Malformed, format!("not valid JSON: {err}"));
    }
    match serde_json::from_str::<TypeOnly>(text) {
        Err(_) => ProtoError::new(ErrorCode::Malformed, "a message must be a JSON object"),
        Ok(TypeOnly { kind: None }) => ProtoError::new(
            ErrorCode::Malformed,
            "a message needs a string \"type\" field",
        ),
        Ok(TypeOnly { kind: Some(kind) }) if !known_types.contains(&kind.as_str()) => {
            let shown: String = kind.chars().take(32).collect();
            ProtoError::new(
                ErrorCode::UnknownType,
                format!("unknown message type {shown:?}"),
            )
        }
        Ok(TypeOnly { kind: Some(kind) }) => ProtoError::new(
            ErrorCode::InvalidField,
            format!("bad {kind} message: {err}"),
        ),
    }
}

/// The fuzz target's body, also replayed over the committed corpus by a test: decoding
/// arbitrary bytes never panics, and whatever decodes re-encodes to an equal message.
pub fn fuzz_decode(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(msg) = decode_client(text) {
        let again = decode_client(&encode(&msg)).expect("a decoded client message re-decodes");
        assert_eq!(again, msg, "client message changed in a round trip");
    }
    if let Ok(msg) = decode_server(text) {
        let again = decode_server(&encode(&msg)).expect("a decoded server message re-decodes");
        assert_eq!(again, msg, "server message changed in a round trip");
    }
}
