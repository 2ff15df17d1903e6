//! Replays the fuzz corpus (tests/corpus, shared with fuzz/) through the fuzz target's
//! body, so every input the fuzzer ever found interesting is checked on every run.

use std::path::Path;

#[test]
fn every_corpus_input_decodes_without_panicking_and_round_trips() {
    // The runner's CARGO_MANIFEST_DIR first: a test binary built in another checkout of
    // the same code (a shared target directory) carries that checkout's path.
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let dir = Path::new(&manifest_dir).join("tests/corpus");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let path = entry.expect("readable entry").path();
        let bytes = std::fs::read(&path).expect("readable corpus file");
        chingu_proto::fuzz_decode(&bytes);
        count += 1;
    }
    assert!(
        count >= 20,
        "the corpus holds the seeds at least, found {count}"
    );
}
