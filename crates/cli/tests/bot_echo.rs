//! The real `chingu-cli` binaries: `bot` and `echo` pair through a chingu-server, the bot
//! decodes its own video after the round trip and exits 0; alone, it exits non-zero.

use std::process::{Command, Stdio};
use std::time::Duration;

async fn server(dir: &std::path::Path) -> chingu_server::RunningServer {
    chingu_server::start(chingu_server::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_owned(),
        ..chingu_server::Config::default()
    })
    .await
    .expect("server starts")
}

fn cli(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chingu-cli"));
    cmd.args(args).stderr(Stdio::null());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_and_echo_call_each_other() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let mut echo = chingu_testkit::process::Owned::spawn(
        cli(&[
            "echo",
            "--server",
            &url,
            "--udp",
            "127.0.0.1:0",
            "--nickname",
            "echo",
            "--calls",
            "1",
        ])
        .stdout(Stdio::piped()),
    )
    .expect("start echo");
    let bot = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            cli(&[
                "bot",
                "--server",
                &url,
                "--udp",
                "127.0.0.1:0",
                "--duration",
                "3",
                "--wait",
                "30",
                "--json",
            ])
            .output()
            .expect("run bot")
        }
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&bot.stdout);
    assert!(bot.status.success(), "bot failed: {stdout}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    let stats = lines.iter().filter(|l| l["type"] == "stats").count();
    assert!(stats >= 2, "a stats line per second: {stdout}");
    let summary = lines.last().expect("a summary line");
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["peer"], "echo");
    assert!(
        summary["frames_decoded"].as_u64().unwrap_or(0) > 30,
        "{summary}"
    );
    assert!(
        summary["frames_sent"].as_u64().unwrap_or(0) > 30,
        "{summary}"
    );
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = echo.child().try_wait().expect("poll echo") {
                return status;
            }
            // Dropping `echo` on the way out kills it.
            assert!(
                std::time::Instant::now() <= deadline,
                "echo did not finish its one call"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("join");
    assert!(status.success());
}

#[tokio::test]
async fn a_bot_with_no_partner_fails() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let out = tokio::task::spawn_blocking(move || {
        cli(&["bot", "--server", &url, "--wait", "1", "--json"])
            .output()
            .expect("run bot")
    })
    .await
    .expect("join");
    assert!(!out.status.success(), "no partner is a failure");
}

/// Runs a bot to its end; returns its summary line (the last) and every line.
fn run_bot(args: Vec<String>) -> (serde_json::Value, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cli(&args).output().expect("run bot");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "bot failed: {stdout}");
    let summary = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no summary: {stdout}"));
    (summary, stdout)
}

/// Two bots meet at random and both ask to be friends; run again with the same device
/// ids, one rings the other by nickname and the other answers: a call between friends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_befriend_each_other_then_one_rings_the_other() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = server(dir.path()).await;
    let url = server.ws_url();
    let bot = |name: &str, extra: &[&str]| -> Vec<String> {
        let device = format!("bot-device-{name:-<8}");
        [
            "bot",
            "--server",
            &url,
            "--udp",
            "127.0.0.1:0",
            "--nickname",
            name,
            "--device-id",
            &device,
            "--duration",
            "2",
            "--wait",
            "30",
            "--json",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    let (ann, ben) = tokio::join!(
        tokio::task::spawn_blocking({
            let args = bot("ann", &["--add-friend"]);
            move || run_bot(args)
        }),
        tokio::task::spawn_blocking({
            let args = bot("ben", &["--add-friend"]);
            move || run_bot(args)
        }),
    );
    let ((ann, ann_out), (ben, ben_out)) = (ann.expect("ann"), ben.expect("ben"));
    assert_eq!(ann["friends"], serde_json::json!(["ben"]), "{ann_out}");
    assert_eq!(ben["friends"], serde_json::json!(["ann"]), "{ben_out}");
    assert_eq!(ann["with_friend"], false);

    let (ann, ben) = tokio::join!(
        tokio::task::spawn_blocking({
            let args = bot("ann", &["--call-friend", "ben"]);
            move || run_bot(args)
        }),
        tokio::task::spawn_blocking({
            let args = bot("ben", &["--answer-calls"]);
            move || run_bot(args)
        }),
    );
    let ((ann, ann_out), (ben, ben_out)) = (ann.expect("ann"), ben.expect("ben"));
    for (summary, out) in [(&ann, &ann_out), (&ben, &ben_out)] {
        assert_eq!(summary["ok"], true, "{out}");
        assert_eq!(summary["with_friend"], true, "{out}");
    }
    assert_eq!(ann["peer"], "ben");
    assert!(
        ben_out.contains("\"type\":\"incoming_call\""),
        "the answering bot says it was rung: {ben_out}"
    );
}
