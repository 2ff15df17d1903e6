//! Text <-> message, with every failure mapped to an [`ErrorCode`].

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::limits::MAX_MESSAGE_BYTES;
use crate::{ClientMessage, ErrorCode, ProtoError, ServerMessage, validate};

/// Decodes and validates one message from a client.
pub fn decode_client(text: &str) -> Result<ClientMessage, ProtoError> {
    let msg: ClientMessage = decode(text, ClientMessage::TYPES, MAX_MESSAGE_BYTES)?;
    validate::client_message(&msg)?;
    Ok(msg)
}

/// Decodes and validates one message from the server.
///
/// Server messages may be larger than client ones (a relayed offer plus framing) but are
/// still bounded, so a hostile server cannot make a client buffer without limit.
pub fn decode_server(text: &str) -> Result<ServerMessage, ProtoError> {
    let msg: ServerMessage = decode(text, ServerMessage::TYPES, 2 * MAX_MESSAGE_BYTES)?;
    validate::server_message(&msg)?;
    Ok(msg)
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
