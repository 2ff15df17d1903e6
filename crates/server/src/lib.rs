//! chingu-server: matchmaking and signaling for Chingu calls.
//!
//! The logic lives in two sans-IO cores, [`matchmaker`] (who meets whom) and [`hub`]
//! (sessions, calls, relay); [`server`] and `connection` are the thin async shell around
//! them, and [`storage`] keeps moderation records in SQLite.

pub mod config;
mod connection;
pub mod hub;
pub mod ids;
pub mod matchmaker;
mod metrics;
mod ratelimit;
mod server;
pub mod storage;
mod turn;

pub use config::Config;
pub use metrics::Metrics;
pub use server::{RunningServer, ServerError, start};
