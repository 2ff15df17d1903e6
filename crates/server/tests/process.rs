//! The real binary: blocks survive a crash (SIGKILL), SIGTERM shuts down gracefully.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use chingu_proto::{ClientMessage, ServerMessage};
use chingu_testkit::process::Owned;
use chingu_testkit::{TestClient, matched_pair};

/// Starts `chingu-server` on a free port; returns the process and its WebSocket URL.
fn spawn_server(data_dir: &std::path::Path, config: Option<&std::path::Path>) -> (Owned, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chingu-server"));
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("CHINGU_LOG_JSON", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = Owned::spawn(&mut command).expect("start chingu-server");
    let stdout = child.child().stdout.take().expect("piped stdout");
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
    let (mut server, url) = spawn_server(dir.path(), None);
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
    server.child().kill().expect("SIGKILL"); // no chance to flush anything more
    server.wait().expect("reap");

    let (server, url) = spawn_server(dir.path(), None);
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
    drop(server);
}

#[tokio::test]
async fn sigterm_tells_clients_and_exits_cleanly() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let (mut server, url) = spawn_server(dir.path(), None);
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

#[tokio::test]
async fn sigterm_exits_in_time_with_half_sent_requests_open() {
    use tokio::io::AsyncWriteExt;
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "shutdown_grace_ms = 500\nrequest_timeout_ms = 60000\n",
    )
    .expect("config");
    let (mut server, url) = spawn_server(dir.path(), Some(&config));
    let addr: std::net::SocketAddr = url
        .trim_start_matches("ws://")
        .trim_end_matches("/v1/ws")
        .parse()
        .expect("address");
    // Requests that never finish their headers (the server's own deadline is a minute).
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        held.push(stream);
    }
    let started = std::time::Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    // A hang guard, far above the 0.5 s grace; the elapsed time is printed. The server
    // is killed (with `server`) if the guard fires.
    let waited = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = server.child().try_wait().expect("poll") {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    })
    .await
    .expect("join");
    let exit = waited.expect("the server exits although clients never finish their requests");
    eprintln!("exited {:?} after SIGTERM", started.elapsed());
    assert!(exit.success(), "graceful exit, got {exit}");
}
