//! The Chingu call engine. Today: the call state machine ([`call_state`], a pure function
//! of state, input and time) and the signaling client ([`signaling`], reconnecting with
//! [`backoff`]). The webrtc-rs peer connection and the media pumps build on them next.

pub mod backoff;
pub mod call_state;
pub mod peer;
pub mod pipeline;
pub mod signaling;
