//! chingu-cli: headless Chingu peers and tools on the same engine as the app:
//! [`peer`] (`bot` and `echo`), [`bench`] (two peers and a server in one process) and
//! [`load`] (the signaling load generator).

pub mod bench;
pub mod load;
pub mod peer;
