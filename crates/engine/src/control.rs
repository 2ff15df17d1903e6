//! Messages on the data channel between two Chingu peers (docs/protocol.md, "Peer to
//! peer"): chat, whether each side sends audio and video, and how fast each side's
//! congestion control lets it send (so each side can tell whose connection limits the
//! call).

use serde::{Deserialize, Serialize};

/// Longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 1000;
/// Longest control-channel message accepted from a peer, in bytes.
pub const MAX_CONTROL_BYTES: usize = 8 * 1024;

/// A message on the control channel. Fields a message does not know are ignored, as
/// docs/protocol.md asks (a newer peer may add some); a message type it does not know
/// is ignored whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    Chat {
        text: String,
    },
    Media {
        audio: bool,
        video: bool,
    },
    /// What the sender's congestion control lets it send to us, kbit/s (about once a
    /// second).
    Net {
        send_kbps: u32,
    },
}

impl ControlMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("control messages always serialise")
    }

    /// Reads a message from the peer: `None` (logged) for anything too large or not
    /// ours. A chat message longer than the limit is cut to it.
    pub fn from_peer(text: &str) -> Option<Self> {
        if text.len() > MAX_CONTROL_BYTES {
            tracing::info!("oversized control message from the peer ignored");
            return None;
        }
        match serde_json::from_str::<Self>(text) {
            Ok(Self::Chat { text }) => Some(Self::Chat {
                text: text.chars().take(MAX_CHAT_CHARS).collect(),
            }),
            Ok(other) => Some(other),
            Err(e) => {
                tracing::info!("unreadable control message from the peer ignored: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_fields_are_required_and_unknown_ones_ignored() {
        let chat: ControlMessage = serde_json::from_str(r#"{"type":"chat","text":"hi"}"#).unwrap();
        assert_eq!(chat, ControlMessage::Chat { text: "hi".into() });
        assert!(serde_json::from_str::<ControlMessage>(r#"{"type":"chat"}"#).is_err());
        assert!(serde_json::from_str::<ControlMessage>(r#"{"type":"chat","text":1}"#).is_err());
        assert!(serde_json::from_str::<ControlMessage>("not json").is_err());
        // A newer peer's extra field does not cost the message.
        assert_eq!(
            ControlMessage::from_peer(r#"{"type":"chat","text":"a","sent_at":1767225600,"x":{}}"#),
            Some(ControlMessage::Chat { text: "a".into() })
        );
        assert_eq!(
            ControlMessage::from_peer(
                r#"{"video":false,"type":"media","audio":true,"screen":true}"#
            ),
            Some(ControlMessage::Media {
                audio: true,
                video: false
            })
        );
        assert_eq!(
            ControlMessage::from_peer(r#"{"type":"net","send_kbps":640}"#),
            Some(ControlMessage::Net { send_kbps: 640 })
        );
        assert_eq!(
            ControlMessage::from_peer(r#"{"type":"net","send_kbps":-1}"#),
            None
        );
        // A message type this version does not know is dropped (and logged).
        assert_eq!(
            ControlMessage::from_peer(r#"{"type":"reaction","emoji":"👍"}"#),
            None
        );
    }

    #[test]
    fn what_a_peer_sends_is_bounded() {
        let long = format!(r#"{{"type":"chat","text":"{}"}}"#, "가".repeat(1500));
        assert_eq!(
            ControlMessage::from_peer(&long),
            Some(ControlMessage::Chat {
                text: "가".repeat(MAX_CHAT_CHARS)
            }),
            "cut to the chat limit"
        );
        let huge = format!(r#"{{"type":"chat","text":"{}"}}"#, "a".repeat(10_000));
        assert_eq!(ControlMessage::from_peer(&huge), None, "over 8 KiB");
        let media = ControlMessage::Media {
            audio: false,
            video: true,
        };
        assert_eq!(ControlMessage::from_peer(&media.to_json()), Some(media));
    }
}
