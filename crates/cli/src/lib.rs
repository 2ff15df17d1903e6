//! chingu-cli: headless Chingu peers. For now, the signaling load generator ([`load`]);
//! `bot`, `echo` and `bench` arrive with the call engine.

pub mod load;
