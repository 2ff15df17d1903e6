//! Processes the tests leave behind. Every process a test starts must die with the test
//! (crates/testkit/src/process.rs); this is the check that they did: the processes the
//! tests are known to start, by name, that were not running before the tests and still
//! run after them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Command names (`/proc/PID/comm`, cut to 15 bytes) of what tests start.
const TEST_PROCESSES: &[&str] = &[
    "chingu-server",
    "chingu-cli",
    "chingu",
    "tauri-driver",
    "WebKitWebDriver",
    "WebKitWebProces",
    "WebKitNetworkPr",
    "Xvfb",
    "pacat",
    "parec",
    "pulseaudio",
    "turnserver",
    "unshare",
];

/// The test-started processes running now: pid → name and command line.
pub fn snapshot() -> BTreeMap<u32, String> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found; // not Linux: nothing to check
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let comm = comm.trim();
        if !TEST_PROCESSES.contains(&comm) {
            continue;
        }
        // A zombie waiting for its parent is gone already.
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        if stat.contains(") Z ") {
            continue;
        }
        let cmdline = std::fs::read(dir.join("cmdline"))
            .map(|bytes| {
                bytes
                    .split(|&b| b == 0)
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        found.insert(pid, format!("{comm}: {}", cmdline.trim()));
    }
    found
}

/// What still runs that did not before, after giving dying processes a moment.
pub fn since(before: &BTreeMap<u32, String>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left: Vec<String> = snapshot()
            .into_iter()
            .filter(|(pid, _)| !before.contains_key(pid))
            .map(|(pid, what)| format!("{pid} {what}"))
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
