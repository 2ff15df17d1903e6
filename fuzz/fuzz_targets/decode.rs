//! Fuzzes message decoding: never a panic, and what decodes re-encodes to the same message.
//! Run: `cargo fuzz run decode ../crates/proto/tests/corpus` (needs cargo-fuzz and a
//! nightly compiler, or RUSTC_BOOTSTRAP=1). New interesting inputs land in the corpus
//! directory; commit the small ones so the replay test keeps them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chingu_proto::fuzz_decode(data);
});
