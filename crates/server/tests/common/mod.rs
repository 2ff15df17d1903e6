//! Shared setup for the server's integration tests.
#![allow(dead_code)]

use chingu_server::{Config, RunningServer};
use chingu_testkit::{http_get, metric};

pub struct TestServer {
    pub server: RunningServer,
    pub url: String,
    pub dir: chingu_testkit::TempDir,
}

/// Settings for tests: a free port, a fresh data dir, and fast widening so nobody waits.
pub fn config(dir: &chingu_testkit::TempDir) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().to_owned(),
        // A lost connection ends its call at once, as most tests expect; the tests of
        // resuming set a grace.
        call_resume_grace_ms: 0,
        ..Config::default()
    }
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let mut config = config(&dir);
    tweak(&mut config);
    start_in(dir, config).await
}

pub async fn start_in(dir: chingu_testkit::TempDir, config: Config) -> TestServer {
    let server = chingu_server::start(config).await.expect("server starts");
    let url = server.ws_url();
    TestServer { server, url, dir }
}

impl TestServer {
    pub async fn metric(&self, name: &str) -> f64 {
        let (status, body) = http_get(self.server.local_addr(), "/metrics")
            .await
            .expect("metrics answer");
        assert_eq!(status, 200);
        metric(&body, name).unwrap_or_else(|| panic!("{name} missing from /metrics:\n{body}"))
    }

    pub async fn stop(self) -> chingu_testkit::TempDir {
        self.server.shutdown();
        self.server.stopped().await;
        self.dir
    }
}
