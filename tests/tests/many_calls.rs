//! A random-match app makes hundreds of calls per session: 100 consecutive calls in one
//! process must return memory, sockets, file descriptors and threads to their baseline.

mod common;

use std::time::Duration;

use chingu_engine::Command;
use common::{Client, ClientOptions, client, server};

fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Resident memory after handing free heap pages back to the system. Each call's media
/// threads may land in a different malloc arena, and an arena keeps what it freed, so
/// plain RSS climbs to a plateau that depends on scheduling (60–77 MiB seen) without any
/// leak; trimmed RSS measures what is still allocated.
#[allow(unsafe_code)]
fn trimmed_rss_kib() -> u64 {
    // SAFETY: malloc_trim only releases free memory held by the allocator; it touches no
    // live allocation and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
    proc_status("VmRSS:")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// One full call: match, media flowing both ways, hang up, both ended.
async fn one_call(a: &mut Client, b: &mut Client) {
    a.search().await;
    b.search().await;
    a.in_call().await;
    b.in_call().await;
    let (fa, fb) = (a.frames_seen(), b.frames_seen());
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while a.frames_seen() == fa || b.frames_seen() == fb {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no video in this call"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.send(Command::HangUp).await;
    a.ended().await;
    b.ended().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_calls_return_resources_to_baseline() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let mut a = client(&url, "alice", ClientOptions::default());
    let mut b = client(&url, "bob", ClientOptions::default());
    // Warm up: allocator arenas, codec tables, lazily started runtime threads.
    for _ in 0..25 {
        one_call(&mut a, &mut b).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss0, fds0, threads0) = (trimmed_rss_kib(), open_fds(), proc_status("Threads:"));
    let started = std::time::Instant::now();
    let calls: usize = std::env::var("CHINGU_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    for i in 0..calls {
        one_call(&mut a, &mut b).await;
        if (i + 1) % 25 == 0 {
            eprintln!(
                "after {} calls: RSS {} KiB, trimmed {} KiB",
                i + 1,
                proc_status("VmRSS:"),
                trimmed_rss_kib()
            );
        }
    }
    let took = started.elapsed();
    // Closing is asynchronous in places (driver tasks, blocking-pool joins): give it a
    // moment, checking rather than sleeping blindly.
    let mut settled = (0, 0, 0);
    for _ in 0..50 {
        settled = (trimmed_rss_kib(), open_fds(), proc_status("Threads:"));
        if settled.1 <= fds0 && settled.2 <= threads0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rss1, fds1, threads1) = settled;
    eprintln!(
        "{calls} calls in {took:?}: RSS {rss0} -> {rss1} KiB, fds {fds0} -> {fds1}, threads {threads0} -> {threads1}"
    );
    assert!(
        rss1.saturating_sub(rss0) < 20 * 1024,
        "memory grew {} KiB",
        rss1 - rss0
    );
    assert!(fds1 <= fds0, "file descriptors {fds0} -> {fds1}");
    // Blocking-pool threads idle out after 10 s; media threads must all be gone.
    let media_threads = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| {
            let t = t.ok()?;
            std::fs::read_to_string(t.path().join("comm")).ok()
        })
        .filter(|name| name.starts_with("chingu-video") || name.starts_with("chingu-audio"))
        .collect::<Vec<_>>();
    assert!(
        media_threads.is_empty(),
        "media threads left running: {media_threads:?}"
    );
    a.stop().await;
    b.stop().await;
}
