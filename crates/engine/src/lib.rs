//! The Chingu call engine. Today: the call state machine ([`call_state`]), a pure
//! function of (state, input, now). The signaling client, the webrtc-rs peer connection
//! and the media pumps build on it next.

pub mod call_state;
