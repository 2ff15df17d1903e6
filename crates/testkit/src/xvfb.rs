//! A private X server (Xvfb) for tests that open real windows; stopped on drop.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[derive(Debug)]
pub struct Xvfb {
    /// What to put in `DISPLAY`.
    pub display: String,
    /// Held for its drop: the server stops with this handle.
    _server: crate::process::Owned,
}

impl Xvfb {
    /// Starts Xvfb at 1280x800 on the first free display number from :140.
    pub fn start() -> Result<Self> {
        for n in 140..200 {
            clear_if_stale(n);
            if Path::new(&format!("/tmp/.X{n}-lock")).exists()
                || Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
            {
                continue;
            }
            let display = format!(":{n}");
            let mut server = crate::process::Owned::spawn(
                Command::new("Xvfb")
                    .args([&display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .context("starting Xvfb (cargo xtask installs it)")?;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                    return Ok(Self {
                        display,
                        _server: server,
                    });
                }
                if let Ok(Some(_)) = server.child().try_wait() {
                    break; // lost a race for this number
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(server);
        }
        bail!("no free X display number in :140..:199")
    }
}

/// Removes display `n`'s lock and socket if the server that made them is gone: an Xvfb
/// that was killed (a test stopped by a timeout) leaves both behind, and enough of them
/// used up every number.
fn clear_if_stale(n: u32) {
    let lock = format!("/tmp/.X{n}-lock");
    let Ok(text) = std::fs::read_to_string(&lock) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return;
    };
    if Path::new(&format!("/proc/{pid}")).exists() {
        return;
    }
    let _ = std::fs::remove_file(&lock);
    let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{n}"));
}
