//! chingu-server: matchmaking and signaling for Chingu calls.

pub mod ids;
pub mod matchmaker;
