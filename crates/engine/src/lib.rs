//! The Chingu call engine: everything a client needs to match and call, with no window.
//!
//! - [`engine`]: the actor that owns a call — commands in, typed events out;
//! - [`call_state`]: the call state machine, a pure function of state, input and time;
//! - [`signaling`]: the chingu-server client, reconnecting with [`backoff`];
//! - [`peer`]: the webrtc-rs peer connection (the only module that names webrtc-rs);
//! - [`pipeline`]: capture, encode, frame assembly, decode, jitter buffer and playout on
//!   dedicated threads;
//! - [`stats`]: call statistics with the W3C getStats names.

pub mod backoff;
pub mod call_state;
pub mod device_check;
pub mod engine;
pub mod peer;
pub mod pipeline;
pub mod signaling;
pub mod stats;

pub use engine::{CallView, Command, Engine, EngineConfig, EngineEvent};
