//! chingu-cli: headless Chingu peers and tools on the same engine as the app:
//! [`peer`] (`bot` and `echo`), [`bench`] (two peers and a server in one process),
//! [`audio_bench`] (the microphone's processing in a simulated room),
//! [`load`] (the signaling load generator), [`attack`] (what one address can do to a
//! server, and what honest users see meanwhile), [`reference`] (libwebrtc's figures for
//! `bench`'s call, from headless Chromium) and [`beside`] (both stacks in the same
//! network conditions).

pub mod attack;
pub mod audio_bench;
pub mod bench;
pub mod beside;
pub mod load;
pub mod netsim;
pub mod peer;
pub mod reference;
