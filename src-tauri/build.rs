fn main() {
    // The default server address a distribution builds in (settings.rs).
    println!("cargo:rerun-if-env-changed=CHINGU_DEFAULT_SERVER");
    tauri_build::build();
}
