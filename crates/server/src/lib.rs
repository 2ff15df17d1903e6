//! chingu-server: matchmaking and signaling for Chingu calls.

pub mod hub;
pub mod ids;
pub mod matchmaker;
