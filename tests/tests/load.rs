//! The load generator against an in-process server: the benchmark's machinery works
//! end to end, and a steady stream of matches produces no protocol errors.

use std::time::Duration;

use chingu_cli::load::{LoadConfig, run};
use chingu_server::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_clients_match_signal_and_press_next_without_errors() {
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = chingu_server::start(Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().to_owned(),
        // Everyone meets everyone again and again in a short run.
        cooldown_s: 0,
        // Ten simulated people per address, each at its connection's limit: the
        // per-address budget is for real households, not for this.
        address_rate_limit_per_s: 100_000,
        address_rate_limit_burst: 100_000,
        ..Config::default()
    })
    .await
    .expect("server starts");
    let report = run(LoadConfig {
        server: server.ws_url(),
        clients: 40,
        duration: Duration::from_secs(2),
        source_addresses: 4,
        // Long enough that no client exceeds the per-connection rate limit.
        hold: Duration::from_millis(200),
        connect_concurrency: 20,
        server_pid: Some(std::process::id()),
    })
    .await
    .expect("load run");
    assert_eq!(report.connected, 40, "every client connects: {report:?}");
    assert!(
        report.errors.is_empty(),
        "no errors expected: {:?}",
        report.errors
    );
    assert!(
        report.matches >= 40,
        "each pair cycles several times: {report:?}"
    );
    // Both sides time each match; at the stop some matches are seen by one side only,
    // and at most one exchange per pair (20 pairs) is cut short.
    let (samples, matches) = (report.join_to_match_ms.samples as u64, report.matches);
    assert!(
        samples >= 2 * matches - 20 && samples <= 2 * matches + 20,
        "{report:?}"
    );
    assert!(
        report.signals_sent + 3 * 20 >= 4 * matches,
        "offer, answer, candidate, end: {report:?}"
    );
    let server_figures = report.server.expect("sampled this process");
    assert!(server_figures.rss_mb_max > 0.0);
    server.shutdown();
    server.stopped().await;
}
