//! The Chingu call engine: everything a client needs to match and call, with no window.
//!
//! - [`api`]: the types callers use — [`Command`], [`EngineEvent`], [`CallView`],
//!   [`EngineConfig`];
//! - `actor`: [`Engine`], the handle, and the task behind it: the only owner of a call's
//!   peer connection and media;
//! - [`call_state`]: the call state machine, a pure function of state, input and time;
//! - [`signaling`]: the chingu-server client, reconnecting with [`backoff`];
//! - [`peer`]: the webrtc-rs peer connection (the only module that names webrtc-rs);
//! - [`pipeline`]: capture, encode, frame assembly, decode, jitter buffer and playout on
//!   dedicated threads;
//! - [`packets`]: what crosses between `peer` and `pipeline`, in plain types;
//! - [`control`]: messages on the data channel between two peers;
//! - [`stats`]: call statistics with the W3C getStats names;
//! - [`device_check`]: the devices there are, and a preview outside calls;
//! - [`ids`]: random ids.
//!
//! Module dependencies point one way (`tests/tests/layout.rs` checks it): `actor` on
//! top, then `api`; `pipeline` below them; `peer` below `pipeline` (for its H.264
//! depacketizer); `packets`, `stats`, `control`, `call_state` and `ids` at the bottom.

mod actor;
pub mod api;
pub mod backoff;
pub mod call_state;
pub mod control;
pub mod device_check;
pub mod ids;
pub mod packets;
pub mod peer;
pub mod pipeline;
pub mod red;
pub mod signaling;
pub mod stats;

pub use actor::{Engine, EngineStopped};
pub use api::{CallView, Command, EngineConfig, EngineEvent};
pub use call_state::{CommandFailure, EndReason};
