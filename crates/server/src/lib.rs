//! chingu-server: matchmaking and signaling for Chingu calls.
//!
//! The logic lives in two sans-IO cores, [`matchmaker`] (who meets whom) and [`hub`]
//! (sessions, calls, relay). Around them, a thin async shell: `server` binds and shuts
//! down, `connection` runs one WebSocket, `admission` counts connections, `hub_task` owns
//! the hub and feeds [`storage`] (SQLite) through its writer thread. Dependencies point
//! one way: `server` → `connection` → `hub_task` → `hub` / `storage`.

mod admission;
pub mod config;
mod connection;
pub mod fd_limit;
pub mod hub;
mod hub_task;
pub mod ids;
mod listener;
pub mod matchmaker;
mod metrics;
mod proxy_protocol;
mod ratelimit;
mod server;
pub mod storage;
pub mod turn;

pub use config::Config;
pub use metrics::Metrics;
pub use server::{RunningServer, ServerError, start};
