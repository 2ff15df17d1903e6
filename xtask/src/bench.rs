//! `cargo xtask bench` and `bench-video`: release builds, then the measurements, each
//! against a fresh server or app; figures go to `target/bench/`.

use std::process::Command;

use crate::{Result, build_all, build_ui, cargo, display, flag, owned, step, target_dir, tempdir};

/// The load benchmark: a release server and a separate load process, two scenarios.
/// `paced` holds each simulated call ~1 s so 10,000 clients make ~5,000 matches/s,
/// leaving CPU to spare, and measures latency; `saturated` presses Next at once and
/// measures the most matches per second this machine manages (load generator included).
pub fn bench(args: &[String]) -> Result {
    let clients = flag(args, "--clients").unwrap_or_else(|| "10000".into());
    let duration = flag(args, "--duration").unwrap_or_else(|| "20".into());
    // The release workspace build, shared with `cargo xtask bundle`.
    build_ui()?;
    build_all(true)?;
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    step(
        "building the benchmark examples (release)",
        cargo().args([
            "build",
            "--locked",
            "--release",
            "--workspace",
            "--examples",
        ]),
    )?;
    for (example, file) in [
        ("matchmaker_bench", "matchmaker.jsonl"),
        ("codec_bench", "codecs.jsonl"),
    ] {
        eprintln!("xtask: {example}");
        let output = Command::new(target_dir().join("release/examples").join(example))
            .output()
            .map_err(|e| format!("running {example}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{example} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let lines = String::from_utf8_lossy(&output.stdout);
        print!("{lines}");
        let path = out_dir.join(file);
        std::fs::write(&path, lines.as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }

    // Calls: two engines and a server in one process, per frame size.
    eprintln!("xtask: call bench (chingu-cli bench)");
    let cli = target_dir().join("release").join("chingu-cli");
    let output = Command::new(&cli)
        .args(["bench", "--json", "--duration", &duration])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", cli.display()))?;
    if !output.status.success() {
        return Err("chingu-cli bench failed".into());
    }
    let lines = String::from_utf8_lossy(&output.stdout);
    print!("{lines}");
    let path = out_dir.join("call.jsonl");
    std::fs::write(&path, lines.as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;

    // Calls through the network simulator: the scenario table, also into the docs.
    eprintln!("xtask: calls on bad networks (chingu-cli bench --net all)");
    let table = out_dir.join("impairment.md");
    let output = Command::new(&cli)
        .args(["bench", "--json", "--duration", "20", "--sizes", "640x480"])
        .args(["--net", "all", "--table"])
        .arg(&table)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", cli.display()))?;
    if !output.status.success() {
        return Err("chingu-cli bench --net failed".into());
    }
    let path = out_dir.join("impairment.jsonl");
    std::fs::write(&path, &output.stdout)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let rows =
        std::fs::read_to_string(&table).map_err(|e| format!("reading {}: {e}", table.display()))?;
    splice_docs("impairment-table", &rows)?;

    // The same call beside libwebrtc's (headless Chromium), one after the other, through
    // the same links (the kernel's packets through the simulator's links: `chingu-cli
    // shape`); needs root for the namespaces, skipped with a message otherwise.
    crate::setup::ensure_bench()?;
    eprintln!("xtask: beside libwebrtc (chingu-cli beside)");
    let table = out_dir.join("beside.md");
    let output = Command::new(&cli)
        .args([
            "beside",
            "--net",
            "clean",
            "--net",
            "loss5",
            "--net",
            "loss20",
            "--net",
            "loss40",
            "--net",
            "farloss",
            "--net",
            "loss=40%,rate=500k",
            "--runs",
            "2",
            "--duration",
            "20",
        ])
        .arg("--table")
        .arg(&table)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", cli.display()))?;
    if output.status.success() {
        let path = out_dir.join("beside.jsonl");
        std::fs::write(&path, &output.stdout)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        let rows = std::fs::read_to_string(&table)
            .map_err(|e| format!("reading {}: {e}", table.display()))?;
        splice_docs("beside-table", &rows)?;
    } else {
        eprintln!("xtask: beside libwebrtc not measured (see above)");
    }

    // The microphone's processing in the simulated room (speech from espeak-ng).
    eprintln!("xtask: audio processing in a simulated room (chingu-cli audio-bench)");
    let table = out_dir.join("audio.md");
    let output = Command::new(&cli)
        .args(["audio-bench", "--json", "--table"])
        .arg(&table)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", cli.display()))?;
    if !output.status.success() {
        return Err("chingu-cli audio-bench failed".into());
    }
    print!("{}", String::from_utf8_lossy(&output.stdout));
    let path = out_dir.join("audio.jsonl");
    std::fs::write(&path, &output.stdout)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    let rows =
        std::fs::read_to_string(&table).map_err(|e| format!("reading {}: {e}", table.display()))?;
    splice_docs("audio-table", &rows)?;

    let mut results = Vec::new();
    for (scenario, hold_ms) in [("paced", "1000"), ("saturated", "0")] {
        eprintln!("xtask: load scenario {scenario}: {clients} clients, {duration} s");
        let json = load_run(&clients, &duration, hold_ms)?;
        println!("{scenario}: {json}");
        results.push(format!(
            "{{\"scenario\":\"{scenario}\",\"hold_ms\":{hold_ms},\"report\":{json}}}"
        ));
    }
    // Presence: the paced run again, each client with 50 friends (seeded in the
    // server's database first), so every call's start and end reaches 50 friends.
    eprintln!(
        "xtask: load scenario presence: {clients} clients with 50 friends each, {duration} s"
    );
    let json = presence_run(&clients, &duration)?;
    println!("presence: {json}");
    results.push(format!(
        "{{\"scenario\":\"presence\",\"hold_ms\":1000,\"friends\":50,\"report\":{json}}}"
    ));
    let path = out_dir.join("load.json");
    std::fs::write(&path, format!("[{}]\n", results.join(",")))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());

    // What one address can do to the server, and what honest users see meanwhile.
    let mut lines = String::new();
    for kind in ["none", "slow-readers", "half-requests", "join-storm"] {
        eprintln!("xtask: attack {kind}, {duration} s");
        let json = attack_run(kind, &duration)?;
        println!("attack {kind}: {json}");
        lines.push_str(&json);
        lines.push('\n');
    }
    let path = out_dir.join("attack.jsonl");
    std::fs::write(&path, lines).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());

    // Calls across NATs in the network lab (needs root; skips with a message otherwise):
    // setup time per cell, and recovery after an outage and an address change. The lab
    // runs the debug binaries the tests use, as the lab tests do.
    eprintln!("xtask: network lab (setup time per cell, recovery)");
    build_all(false)?;
    let path = out_dir.join("netlab.jsonl");
    step(
        "the network lab sweep",
        cargo()
            .args(["test", "--locked", "-p", "chingu-tests", "--test", "netlab"])
            .args([
                "--",
                "--ignored",
                "--nocapture",
                "bench_lab_setup_and_recovery",
            ])
            .env("CHINGU_BIN_DIR", target_dir().join("debug"))
            .env("CHINGU_BENCH_OUT", &path),
    )?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

/// Replaces what docs/benchmarks.md holds between `<!-- NAME:begin -->` and
/// `<!-- NAME:end -->` with `text`.
fn splice_docs(name: &str, text: &str) -> Result {
    let path = crate::repo_root().join("docs/benchmarks.md");
    let doc =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let spliced = splice(&doc, name, text).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::write(&path, spliced).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("xtask: updated {} ({name})", path.display());
    Ok(())
}

/// `doc` with what lies between the `NAME` markers replaced by `text`.
fn splice(doc: &str, name: &str, text: &str) -> Result<String> {
    let (begin, end) = (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    );
    let (Some(start), Some(stop)) = (doc.find(&begin), doc.find(&end)) else {
        return Err(format!("no {begin} … {end} markers"));
    };
    if stop < start {
        return Err(format!("{end} comes before {begin}"));
    }
    Ok(format!("{}{begin}\n{text}{}", &doc[..start], &doc[stop..]))
}

/// One attack run against a fresh release server with its default limits; returns the
/// report's JSON.
fn attack_run(kind: &str, duration: &str) -> Result<String> {
    against_fresh_server("attack", "", |url, _| {
        vec![
            "attack".into(),
            "--server".into(),
            url.into(),
            "--kind".into(),
            kind.into(),
            "--duration".into(),
            duration.into(),
            "--json".into(),
        ]
    })
}

/// Starts a release `chingu-server` on a fresh data directory (with `config`, TOML, if
/// not empty), runs `chingu-cli` with the arguments `args(url, server pid)` gives, stops
/// the server; returns what the tool printed.
fn against_fresh_server(
    what: &str,
    config: &str,
    args: impl FnOnce(&str, u32) -> Vec<String>,
) -> Result<String> {
    against_prepared_server(what, config, |_| Ok(()), args)
}

/// As [`against_fresh_server`], with the data directory prepared before the server
/// starts (seeded friendships).
fn against_prepared_server(
    what: &str,
    config: &str,
    prepare: impl FnOnce(&std::path::Path) -> Result,
    args: impl FnOnce(&str, u32) -> Vec<String>,
) -> Result<String> {
    let release = target_dir().join("release");
    let data = tempdir(&format!("chingu-bench-{what}"))?;
    prepare(&data)?;
    let listen = "127.0.0.1:7899";
    let mut command = owned(&release.join("chingu-server"));
    command
        .args(["--listen", listen, "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::null());
    if !config.is_empty() {
        let path = data.join("server.toml");
        std::fs::write(&path, config).map_err(|e| format!("writing {}: {e}", path.display()))?;
        command.arg("--config").arg(&path);
    }
    let mut server = command
        .spawn()
        .map_err(|e| format!("starting chingu-server: {e}"))?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let output = Command::new(release.join("chingu-cli"))
        .args(args(&format!("ws://{listen}/v1/ws"), server.id()))
        .output();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&data);
    let output = output.map_err(|e| format!("running chingu-cli {what}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "chingu-cli {what} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The video transport benchmark: a release app built with `video-bench`, one run per
/// transport and repetition, each in a fresh profile; the page's figures plus the CPU
/// time of the app's process tree and the X server (docs/decisions/0007).
pub fn bench_video(args: &[String]) -> Result {
    let runs: usize = flag(args, "--runs")
        .map(|r| r.parse().map_err(|_| "--runs takes a number".to_string()))
        .transpose()?
        .unwrap_or(3);
    build_ui()?;
    // The custom-scheme candidate needs its scheme in the page's CSP; only this build
    // gets it (tauri-build merges TAURI_CONFIG into tauri.conf.json).
    let csp = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
               img-src 'self' data: blob:; connect-src 'self' ipc: http://ipc.localhost \
               ws://127.0.0.1:* chingu-video: http://chingu-video.localhost; \
               object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
    step(
        "building the app with the video benchmark (release)",
        cargo()
            .args([
                "build",
                "--locked",
                "--release",
                "-p",
                "chingu",
                "--features",
                "custom-protocol,video-bench",
            ])
            .env(
                "TAURI_CONFIG",
                format!("{{\"app\":{{\"security\":{{\"csp\":\"{csp}\"}}}}}}"),
            ),
    )?;
    // A private X server, so nothing else draws during the measurement.
    let display = display::Display::get(true)?;
    let out_dir = target_dir().join("bench");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    let out = out_dir.join("video.jsonl");
    let _ = std::fs::remove_file(&out);
    let app = target_dir().join("release").join("chingu");
    for run in 0..runs {
        for transport in ["protocol", "channel", "websocket"] {
            eprintln!("xtask: video transport {transport}, run {}/{runs}", run + 1);
            let profile = tempdir(&format!("chingu-video-bench-{transport}-{run}"))?;
            let mut cmd = Command::new(&app);
            cmd.env("DISPLAY", &display.name)
                .env("CHINGU_VIDEO_BENCH", transport)
                .env("CHINGU_VIDEO_BENCH_OUT", &out)
                .env("XDG_DATA_HOME", profile.join("data"))
                .env("XDG_CONFIG_HOME", profile.join("config"))
                .env("XDG_CACHE_HOME", profile.join("cache"))
                .stdout(std::process::Stdio::null());
            if let Some(pid) = display.server_pid() {
                cmd.env("CHINGU_VIDEO_BENCH_XPID", pid.to_string());
            }
            let status = wait_with_timeout(
                cmd.spawn().map_err(|e| format!("starting the app: {e}"))?,
                std::time::Duration::from_secs(60),
            );
            let _ = std::fs::remove_dir_all(&profile);
            if !status? {
                return Err(format!("the {transport} run failed or timed out"));
            }
        }
    }
    let lines = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    print!("{lines}");
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

/// Waits for `child` up to `limit`, killing it after; whether it exited successfully.
fn wait_with_timeout(mut child: std::process::Child, limit: std::time::Duration) -> Result<bool> {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status.success());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The server's settings for load runs (see `load_run`).
const LOAD_SERVER_CONFIG: &str =
    "address_rate_limit_per_s = 100000\naddress_rate_limit_burst = 100000\n";

/// The paced load run against a server whose clients have 50 friends each.
fn presence_run(clients: &str, duration: &str) -> Result<String> {
    let config = LOAD_SERVER_CONFIG;
    let cli = target_dir().join("release").join("chingu-cli");
    let seed = |data: &std::path::Path| -> Result {
        let status = Command::new(&cli)
            .args([
                "seed-friends",
                "--clients",
                clients,
                "--friends",
                "50",
                "--data-dir",
            ])
            .arg(data)
            .status()
            .map_err(|e| format!("running chingu-cli seed-friends: {e}"))?;
        if !status.success() {
            return Err("chingu-cli seed-friends failed".into());
        }
        Ok(())
    };
    against_prepared_server("presence", config, seed, |url, pid| {
        load_args(url, pid, clients, duration, "1000")
    })
}

/// `chingu-cli load`'s arguments for the runs above.
fn load_args(url: &str, pid: u32, clients: &str, duration: &str, hold_ms: &str) -> Vec<String> {
    [
        "load",
        "--server",
        url,
        "--clients",
        clients,
        "--duration",
        duration,
        "--hold-ms",
        hold_ms,
        "--source-addresses",
        "400",
        "--server-pid",
        &pid.to_string(),
        "--json",
    ]
    .map(String::from)
    .to_vec()
}

/// One load run against a fresh release server; returns the report's JSON.
fn load_run(clients: &str, duration: &str, hold_ms: &str) -> Result<String> {
    // 25 simulated people share each source address here, pressing Next as fast as the
    // server answers: lift the per-address message budget (meant for one household or
    // office) so the run measures the server, not the limiter. 400 loopback source
    // addresses keep every address under the default limit of 32 connections.
    let config = LOAD_SERVER_CONFIG;
    against_fresh_server("load", config, |url, pid| {
        load_args(url, pid, clients, duration, hold_ms)
    })
}

#[cfg(test)]
mod tests {
    use super::splice;

    #[test]
    fn the_table_replaces_what_was_between_the_markers_and_nothing_else() {
        let doc = "a\n<!-- t:begin -->\nold\n<!-- t:end -->\nz\n";
        assert_eq!(
            splice(doc, "t", "| new |\n").unwrap(),
            "a\n<!-- t:begin -->\n| new |\n<!-- t:end -->\nz\n"
        );
        assert!(splice(doc, "other", "x").is_err());
        assert!(splice("<!-- t:end --> <!-- t:begin -->", "t", "x").is_err());
    }
}
