//! The TypeScript bindings of the app's commands and events, generated from Rust
//! (tauri-specta) into `ui/src/lib/bindings.ts` and committed. The test here fails when
//! the committed file differs from what the Rust code generates; `cargo xtask bindings`
//! (or this test with `CHINGU_UPDATE_BINDINGS=1`) writes it.

use std::path::Path;

/// Writes the bindings for `builder` to `to`.
fn export(builder: &tauri_specta::Builder<tauri::Wry>, to: &Path) -> Result<(), String> {
    builder
        .export(
            specta_typescript::Typescript::default()
                .header("// Generated from the Rust shell by tauri-specta: do not edit.\n// `cargo xtask bindings` rewrites it; a test fails when it is stale.\n"),
            to,
        )
        .map_err(|e| e.to_string())
}

mod tests {
    use super::*;

    #[test]
    fn the_committed_typescript_bindings_match_the_rust_code() {
        let dir = chingu_testkit::tempdir().expect("temp dir");
        let fresh = dir.path().join("bindings.ts");
        export(&crate::specta_builder(), &fresh).expect("exported");
        let generated = std::fs::read_to_string(&fresh).expect("read back");
        // The runner's directory first: a binary built in another checkout carries its path.
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
        let committed_path = Path::new(&manifest_dir).join("../ui/src/lib/bindings.ts");
        if std::env::var_os("CHINGU_UPDATE_BINDINGS").is_some() {
            std::fs::write(&committed_path, &generated).expect("written");
            return;
        }
        let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: the Rust commands or events changed. Run `cargo xtask bindings` \
             and commit the result.",
            committed_path.display()
        );
    }
}
