//! Fuzzes message decoding: never a panic, and what decodes re-encodes to the same message.
//! Run from `fuzz/` (needs `cargo install --locked cargo-fuzz` and a nightly compiler,
//! or RUSTC_BOOTSTRAP=1 with stable):
//!   cp -r ../crates/proto/tests/corpus /tmp/corpus
//!   cargo fuzz run decode /tmp/corpus -- -max_total_time=180 -max_len=4096
//!   cargo fuzz cmin decode /tmp/corpus
//! then copy the minimised inputs of 512 bytes or less back into
//! crates/proto/tests/corpus, where `tests/corpus.rs` replays them on every test run.
//! 2026-11-24: 6.7 million runs in 180 s, no failure; 2,219 minimised inputs kept.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chingu_proto::fuzz_decode(data);
});
