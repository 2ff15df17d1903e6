//! Temporary directories for tests, removed when dropped. Kept here rather than taken
//! from the `tempfile` crate: a test-only dependency that adds features to shared
//! dependencies (`tempfile` turns on `bitflags/std` through `rustix`) makes every test
//! build resolve features differently from the binaries' build, and then `cargo xtask
//! run` and `cargo xtask test` rebuild dozens of crates for each other.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A directory that is deleted, with everything in it, when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A new, empty directory under the system's temporary directory, private to this
/// process (its name carries the process id, a counter and the clock).
pub fn tempdir() -> std::io::Result<TempDir> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "chingu-test-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = std::env::temp_dir().join(name);
    std::fs::create_dir(&path)?;
    Ok(TempDir { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temp_dir_is_fresh_and_removed_when_dropped() {
        let a = tempdir().expect("created");
        let b = tempdir().expect("created");
        assert_ne!(a.path(), b.path());
        std::fs::write(a.path().join("x"), b"x").expect("writable");
        let path = a.path().to_owned();
        drop(a);
        assert!(!path.exists(), "removed with its contents");
    }
}
