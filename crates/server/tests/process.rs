//! The real binary: blocks survive a crash (SIGKILL), SIGTERM shuts down gracefully.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use chingu_proto::{ClientMessage, ServerMessage};
use chingu_testkit::{TestClient, matched_pair};

/// Starts `chingu-server` on a free port; returns the process and its WebSocket URL.
fn spawn_server(data_dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chingu-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("CHINGU_LOG_JSON", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chingu-server");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let url = line
        .trim()
        .strip_prefix("chingu-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}

#[tokio::test]
async fn a_block_survives_a_crash() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let (mut server, url) = spawn_server(dir.path());
    let (mut a, _b, call) = matched_pair(&url).await.unwrap();
    a.send(&ClientMessage::Block {
        call_id: call.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        a.recv().await.unwrap(),
        ServerMessage::Blocked { call_id: call }
    );
    server.kill().expect("SIGKILL"); // no chance to flush anything more
    server.wait().expect("reap");

    let (mut server, url) = spawn_server(dir.path());
    let mut a = TestClient::hello(&url, "a").await.unwrap();
    let mut b = TestClient::hello(&url, "b").await.unwrap();
    a.join(&["ko"], &[]).await.unwrap();
    b.join(&["ko"], &[]).await.unwrap();
    let mut c = TestClient::hello(&url, "c").await.unwrap();
    c.join(&["ko"], &[]).await.unwrap();
    let partner = c.expect_matched().await.unwrap().peer.nickname;
    assert_eq!(
        partner, "a",
        "a and b stay apart after the crash, so c gets a (oldest)"
    );
    assert!(b.sync().await.unwrap().is_empty(), "b is still waiting");
    server.kill().ok();
    server.wait().ok();
}

#[tokio::test]
async fn sigterm_tells_clients_and_exits_cleanly() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let (mut server, url) = spawn_server(dir.path());
    let mut a = TestClient::hello(&url, "a").await.unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    assert_eq!(
        a.recv().await.unwrap(),
        ServerMessage::ShuttingDown {
            retry_after_ms: 1000
        }
    );
    let exit = tokio::task::spawn_blocking(move || server.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.success(), "graceful exit, got {exit}");
}
