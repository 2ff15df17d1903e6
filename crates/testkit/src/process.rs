//! Processes a test starts are owned by the test: each runs in a process group of its
//! own, and when its [`Owned`] handle is dropped — the test passed, failed or panicked —
//! the whole group is killed and the process reaped. Whatever it started in turn (a shell
//! script's background jobs, a driver's browser) goes with it. `cargo xtask test` fails
//! if a test leaves a process behind.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};

/// A child process (and its process group), killed when dropped.
#[derive(Debug)]
pub struct Owned {
    child: Child,
}

impl Owned {
    /// Spawns `command` as the leader of a new process group.
    pub fn spawn(command: &mut Command) -> std::io::Result<Self> {
        let child = command.process_group(0).spawn()?;
        Ok(Self { child })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child, to take its pipes or wait for it.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Waits for the process to exit. Its group is still killed on drop.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait()
    }

    /// Collects stdout and stderr (when piped) until the process exits, like
    /// [`Child::wait_with_output`]; then kills whatever of its group is left.
    pub fn output(mut self) -> std::io::Result<Output> {
        let read_all = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = read_all(
            self.child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = read_all(
            self.child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let status = self.child.wait()?;
        // Background jobs may still hold the pipes open: kill them before reading on.
        kill_group(self.child.id());
        Ok(Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGKILL to every process in group `pgid` (gone already: nothing happens).
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: &str) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    }

    #[test]
    fn dropping_the_owner_kills_what_the_child_started() {
        // The shell starts a background sleeper, says its pid, and waits on it.
        let mut owned = Owned::spawn(
            Command::new("sh")
                .args(["-c", "sleep 300 & echo $!; wait"])
                .stdout(Stdio::piped()),
        )
        .expect("sh");
        let mut line = String::new();
        let mut stdout = owned.child().stdout.take().expect("piped");
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {
            line.push(byte[0] as char);
        }
        let sleeper = line.trim().to_owned();
        assert!(alive(&sleeper), "the background job runs: {sleeper}");
        drop(owned);
        // Killed at once; reaped by init shortly after (it was the shell's child).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive(&sleeper) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!alive(&sleeper), "the background job went with its group");
    }

    #[test]
    fn output_is_collected_and_leftovers_are_killed() {
        let out = Owned::spawn(
            Command::new("sh")
                .args(["-c", "sleep 300 >/dev/null 2>&1 & echo done"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .expect("sh")
        .output()
        .expect("output");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "done");
        assert!(out.status.success());
    }
}
