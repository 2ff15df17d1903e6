//! The network goes away mid-call: a bot and an echo partner call each other through a
//! chingu-server, all inside a private network namespace (`unshare -rn`); a few seconds
//! into the call every UDP packet there is dropped (iptables), while the signaling
//! connection (TCP) stays up. The bot must report the media as interrupted, then the
//! call must end because of it (ICE failed on one side or the other), never hang.
//!
//! Needs `unshare` and `iptables` (installed by `cargo xtask`) and the `chingu-server`
//! binary beside `chingu-cli` (built by a workspace test run). Outside CI a machine
//! without them skips with a message; in CI their absence is a failure. A kernel that
//! refuses namespaces skips everywhere.

use std::path::{Path, PathBuf};
use std::process::Command;

fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[test]
fn losing_the_network_mid_call_is_reported_then_ends_the_call() {
    let cli = Path::new(env!("CARGO_BIN_EXE_chingu-cli"));
    let server = cli.with_file_name("chingu-server");
    let (Some(unshare), Some(iptables), Some(ip)) =
        (on_path("unshare"), on_path("iptables"), on_path("ip"))
    else {
        let why = "needs unshare, ip and iptables (cargo xtask installs them)";
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    };
    if !server.is_file() {
        let why = format!("needs {} (a workspace build makes it)", server.display());
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    // Creating a network namespace needs root or unprivileged user namespaces; a kernel
    // that allows neither cannot run this test at all.
    let allowed = Command::new(&unshare)
        .args(["-rn", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        eprintln!("SKIPPED: this kernel refuses `unshare -rn` (no user or network namespaces)");
        return;
    }
    let data = chingu_testkit::tempdir().expect("temp dir");
    // Everything below runs in the new namespace, which has only its own loopback.
    let script = format!(
        r#"set -e
'{ip}' link set lo up
'{server}' --listen 127.0.0.1:7979 --data-dir '{data}' >/dev/null 2>&1 &
sleep 0.5
'{cli}' echo --server ws://127.0.0.1:7979/v1/ws --udp 127.0.0.1:0 --nickname echo >/dev/null 2>&1 &
(sleep 6; '{iptables}' -A INPUT -p udp -j DROP; echo '{{"type":"udp_dropped"}}') &
RUST_LOG=info '{cli}' bot --server ws://127.0.0.1:7979/v1/ws --udp 127.0.0.1:0 --duration 60 --wait 30 --json 2>'{data}/bot.log' || echo '{{"type":"bot_failed"}}'
kill $(jobs -p) 2>/dev/null || true
"#,
        ip = ip.display(),
        server = server.display(),
        data = data.path().display(),
        cli = cli.display(),
        iptables = iptables.display(),
    );
    // Owned: the script's background jobs (server, echo) are killed with its process
    // group when it ends, whatever `kill $(jobs -p)` in a non-interactive shell does.
    let out = chingu_testkit::process::Owned::spawn(
        Command::new(unshare)
            .args(["-rn", "sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    )
    .expect("run unshare")
    .output()
    .expect("collect its output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let position = |what: &dyn Fn(&serde_json::Value) -> bool| lines.iter().position(what);
    let dropped = position(&|l| l["type"] == "udp_dropped");
    let interrupted = position(&|l| l["type"] == "media_interrupted" && l["interrupted"] == true);
    let summary = position(&|l| l["type"] == "summary");
    let bot_log = std::fs::read_to_string(data.path().join("bot.log")).unwrap_or_default();
    let context = format!(
        "stdout:\n{stdout}\nstderr:\n{}\nthe bot's log:\n{bot_log}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (Some(dropped), Some(interrupted), Some(summary)) = (dropped, interrupted, summary) else {
        panic!("expected the drop, an interruption and a summary; {context}");
    };
    assert!(
        dropped < interrupted,
        "interrupted only after the drop; {context}"
    );
    assert!(interrupted < summary, "{context}");
    // Both sides lose the network at once, so either ICE timer may fire first: the bot's
    // (it ends the call as media lost) or the partner's (its engine hangs up, the bot
    // hears that the peer left). Either way the call ended by itself, long before the
    // bot's own hang-up at the end of --duration.
    let ended = lines[summary]["ended"].as_str().unwrap_or_default();
    assert!(
        ended.starts_with("media-lost") || ended.starts_with("peer-left"),
        "the call ends because the media was lost, not {ended:?}; {context}"
    );
}
