//! Matchmaker cost per operation as the queue grows: evidence for the O(log n) claim.
//! Prints one JSON object per queue size. Run: `cargo run --release -p chingu-server
//! --example matchmaker_bench` (also part of `cargo xtask bench`).

use std::time::{Duration, Instant};

use chingu_server::ids::{ClientId, Identity};
use chingu_server::matchmaker::{MatchConfig, Matchmaker, Preferences};

fn prefs(language: String) -> Preferences {
    Preferences::new(&[language], &["music".to_string(), "films".to_string()])
}

fn main() {
    for waiting in [1_000u64, 10_000, 100_000] {
        let mut mm = Matchmaker::new(MatchConfig::default());
        let now = Instant::now();
        let identity = |n: u64| Identity::from_device_id(&format!("bench-device-{n:012}"));
        // `waiting` people who cannot meet each other: each speaks its own language.
        for n in 0..waiting {
            mm.join(ClientId(n), identity(n), prefs(format!("x{n}")), now);
        }
        assert_eq!(mm.waiting() as u64, waiting);
        let ops = 20_000u64;
        // A newcomer who matches someone waiting (who is then replaced, keeping n).
        let identities: Vec<Identity> = (0..ops).map(|i| identity(10_000_000 + i)).collect();
        let start = Instant::now();
        for i in 0..ops {
            let target = (i * 7919) % waiting;
            mm.join(
                ClientId(10_000_000 + i),
                identities[i as usize],
                prefs(format!("x{target}")),
                now,
            );
            let m = mm
                .poll_match()
                .expect("the newcomer shares a language with one");
            mm.join(
                m.waited_longer,
                identity(target),
                prefs(format!("x{target}")),
                now,
            );
        }
        let match_ns = start.elapsed().as_nanos() as f64 / ops as f64;
        // A newcomer who finds nobody, then leaves.
        let start = Instant::now();
        for i in 0..ops {
            let client = ClientId(20_000_000 + i);
            mm.join(client, identities[i as usize], prefs("zz".into()), now);
            mm.leave(client);
        }
        let wait_leave_ns = start.elapsed().as_nanos() as f64 / ops as f64;
        // Everyone widens to "anyone" at once: the worst burst of timeouts.
        let start = Instant::now();
        mm.handle_timeout(now + Duration::from_secs(60));
        let widen_all_ms = start.elapsed().as_secs_f64() * 1000.0;
        let matched = std::iter::from_fn(|| mm.poll_match()).count();
        println!(
            "{{\"waiting\":{waiting},\"join_and_match_ns\":{match_ns:.0},\"join_and_leave_ns\":{wait_leave_ns:.0},\"widen_all_ms\":{widen_all_ms:.1},\"pairs_after_widening\":{matched}}}"
        );
    }
}
