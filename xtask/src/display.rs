//! A display for the app: the one in `DISPLAY`, or a private Xvfb started for the
//! command and stopped when it ends.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;

pub struct Display {
    /// What to put in `DISPLAY`.
    pub name: String,
    /// The Xvfb we started, if any.
    server: Option<Child>,
}

impl Display {
    /// The X server's process id when we started it (benchmarks count its CPU time).
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// Uses `DISPLAY` when set (unless `private`), else starts Xvfb at 1280x800.
    pub fn get(private: bool) -> Result<Self> {
        if !private && let Ok(name) = std::env::var("DISPLAY") {
            return Ok(Self { name, server: None });
        }
        for n in 90..120 {
            if Path::new(&format!("/tmp/.X{n}-lock")).exists()
                || Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
            {
                continue;
            }
            let name = format!(":{n}");
            let mut server = Command::new("Xvfb")
                .args([&name, "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("starting Xvfb (apt-get install xvfb): {e}"))?;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                    return Ok(Self {
                        name,
                        server: Some(server),
                    });
                }
                if let Ok(Some(_)) = server.try_wait() {
                    break; // lost a race for this number; try the next
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = server.kill();
            let _ = server.wait();
        }
        Err("no free X display number for Xvfb in :90..:119".into())
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(server) = self.server.as_mut() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}
