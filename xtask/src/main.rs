//! `cargo xtask run | test | bench`: the project's entry points. Each sets up what is
//! missing on this machine (system packages through apt-get, pinned cargo tools), builds,
//! then runs, checks or measures. Only the standard library, so it builds in seconds.

mod display;
mod leftovers;
mod setup;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

  run [--listen ADDR] [--two]
                        set up, build and start chingu-server (default 127.0.0.1:7878),
                        a chingu-cli echo partner and the app (two windows with --two;
                        no app without a display)
  test                  set up, then check formatting, run clippy, every test and the
                        UI checks
  bench [--clients N] [--duration S]
                        build release binaries; measure calls, codecs, the matchmaker
                        and the signaling load; writes target/bench/*.json*
  bindings              regenerate the UI's TypeScript bindings of the app's commands
                        and events (ui/src/lib/bindings.ts) from the Rust code
  bundle                set up and build the release .deb and .rpm (AppImage is
                        configured but needs downloaded tooling, so not built here)
  bench-video [--runs N]
                        build the app with the video benchmark and measure the three
                        video transports at 1280x720 30 fps in the real webview (under
                        Xvfb without a display); writes target/bench/video.jsonl
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("test") => test(),
        Some("bench") => bench(&args[1..]),
        Some("bench-video") => bench_video(&args[1..]),
        Some("bindings") => step(
            "regenerating ui/src/lib/bindings.ts",
            cargo()
                // The workspace's feature resolution (see `build_all`); only the app's
                // test binary is built.
                .args([
                    "test",
                    "--locked",
                    "--workspace",
                    "--bin",
                    "chingu",
                    "--",
                    "--exact",
                    "bindings::tests::the_committed_typescript_bindings_match_the_rust_code",
                ])
                .env("CHINGU_UPDATE_BINDINGS", "1"),
        ),
        Some("bundle") => build_ui().and_then(|()| bundle(false)).map(|paths| {
            for path in paths {
                println!("{}", path.display());
            }
        }),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown or missing command\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_owned()
}

/// Where builds go: `CARGO_TARGET_DIR` if set, else a directory outside the clone that
/// later clones (and CI on this machine) reuse, so a fresh checkout does not rebuild
/// every dependency.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME") {
        Some(home) => Path::new(&home).join(".cache/chingu/target"),
        None => repo_root().join("target"),
    }
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(repo_root())
        .env("CARGO_TARGET_DIR", target_dir());
    cmd
}

/// Runs a command, echoing it; fails with its exit status.
fn step(what: &str, cmd: &mut Command) -> Result {
    eprintln!("xtask: {what}");
    let status = cmd
        .status()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn run(args: &[String]) -> Result {
    let listen = flag(args, "--listen").unwrap_or_else(|| "127.0.0.1:7878".into());
    setup::ensure_all(false)?;
    let display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    // The app embeds the built UI, and is part of the one workspace build.
    build_ui()?;
    // Debug builds: the app has devtools and serves the built UI itself.
    build_all(false)?;
    let data_dir = repo_root().join(".chingu/server-data");
    let debug = target_dir().join("debug");
    let url = format!("ws://{listen}/v1/ws");
    eprintln!(
        "xtask: starting chingu-server\n\
         \n  WebSocket:  {url}   (protocol: docs/protocol.md)\
         \n  Health:     http://{listen}/healthz\
         \n  Metrics:    http://{listen}/metrics\
         \n  Data:       {}\
         \n  Stop with Ctrl-C.\n",
        data_dir.display()
    );
    let mut server = owned(&debug.join("chingu-server"))
        .args(["--listen", &listen, "--data-dir"])
        .arg(&data_dir)
        .spawn()
        .map_err(|e| format!("starting chingu-server: {e}"))?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let two = args.iter().any(|a| a == "--two");
    // The demo partner: waits in the queue and sends back what it receives, so a
    // newcomer who presses Match sees themselves as the other side sees them. With two
    // windows they are each other's partner instead.
    let mut echo = if two {
        None
    } else {
        Some(
            owned(&debug.join("chingu-cli"))
                .args(["echo", "--server", &url, "--nickname", "echo"])
                .spawn()
                .map_err(|e| format!("starting chingu-cli echo: {e}"))?,
        )
    };
    let result = if display && two {
        // Two app windows with separate profiles (settings, device id), so they can
        // match each other (the server never matches a device with itself).
        eprintln!("xtask: starting two app windows; press Match in both");
        let profiles = repo_root().join(".chingu/profiles");
        let mut apps = Vec::new();
        for name in ["a", "b"] {
            let home = profiles.join(name);
            std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
            apps.push(
                owned(&debug.join("chingu"))
                    .env("XDG_DATA_HOME", home.join("data"))
                    .env("XDG_CONFIG_HOME", home.join("config"))
                    .env("XDG_CACHE_HOME", home.join("cache"))
                    .spawn()
                    .map_err(|e| format!("starting the app: {e}"))?,
            );
        }
        let mut result = Ok(());
        for mut app in apps {
            if let Err(e) = app.wait() {
                result = Err(e.to_string());
            }
        }
        result
    } else if display {
        eprintln!("xtask: starting the app; press Match to call the echo partner");
        step("chingu (the app)", &mut owned(&debug.join("chingu")))
    } else {
        eprintln!("xtask: no display, so no app window; the server runs until Ctrl-C");
        server.wait().map_err(|e| e.to_string()).and_then(|status| {
            if status.success() {
                Ok(())
            } else {
                Err(format!("chingu-server exited: {status}"))
            }
        })
    };
    if let Some(echo) = echo.as_mut() {
        let _ = echo.kill();
        let _ = echo.wait();
    }
    let _ = server.kill();
    let _ = server.wait();
    result
}

fn test() -> Result {
    let nextest = setup::ensure_all(true)?;
    let tauri_driver = setup::tauri_driver()?;
    step(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    // The UI first: the app embeds its build (ui/dist), and the end-to-end tests drive it.
    ui_checks()?;
    step(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--locked",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // The workspace's debug build and a package of it for the bundle test; the same
    // build is the app the end-to-end tests drive, and the tests below reuse it.
    let packages = bundle(true)?;
    let deb = packages
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or("no .deb was built")?
        .clone();
    let app = target_dir().join("debug").join("chingu");
    let artifacts = target_dir().join("e2e");
    let _ = std::fs::remove_dir_all(&artifacts);
    let mut tests = if nextest {
        let mut cmd = cargo();
        cmd.args([
            "nextest",
            "run",
            "--locked",
            "--workspace",
            "--profile",
            "ci",
            "--no-fail-fast",
        ]);
        cmd
    } else {
        let mut cmd = cargo();
        cmd.args(["test", "--locked", "--workspace", "--no-fail-fast"]);
        cmd
    };
    tests
        .env("CHINGU_APP", &app)
        .env("CHINGU_DEB", &deb)
        .env("CHINGU_TAURI_DRIVER", &tauri_driver)
        .env("CHINGU_ARTIFACTS", &artifacts);
    let before = leftovers::snapshot();
    let tested = step(
        if nextest {
            "cargo nextest run"
        } else {
            "cargo test (cargo-nextest is unavailable)"
        },
        &mut tests,
    );
    // Nothing a test started may outlive it, pass or fail.
    let left = leftovers::since(&before);
    if !left.is_empty() {
        eprintln!("xtask: processes the tests left running:");
        for process in &left {
            eprintln!("  {process}");
        }
        tested?;
        return Err(format!("{} processes outlived the tests", left.len()));
    }
    tested?;
    eprintln!("xtask: end-to-end screenshots in {}", artifacts.display());
    step(
        "doc tests",
        cargo().args(["test", "--locked", "--workspace", "--doc"]),
    )?;
    eprintln!("xtask: all checks passed");
    Ok(())
}

/// Sets up and builds the UI (`ui/dist`, which the app embeds).
fn build_ui() -> Result {
    setup::ensure_all(false)?;
    setup::node()?;
    step(
        "ui: npm ci",
        &mut npm(&["ci", "--no-audit", "--no-fund", "--loglevel=error"]),
    )?;
    step("ui: vite build", &mut npm(&["run", "build"]))
}

/// Builds every package of the workspace: chingu-server, chingu-cli, the app and the
/// libraries. Always the whole workspace, so that `run`, `test`, `bundle` and `bench`
/// resolve dependency features the same way and reuse each other's builds (building
/// `-p chingu-server -p chingu-cli` alone resolved them differently and rebuilt 129
/// crates). Dev-dependencies add no features either (the `layout` of Cargo.toml keeps
/// it so: see crates/testkit/src/tempdir.rs), so the tests reuse these builds too.
fn build_all(release: bool) -> Result {
    let mut cmd = cargo();
    cmd.args(["build", "--locked", "--workspace"]);
    if release {
        cmd.arg("--release");
    }
    step(
        if release {
            "building the workspace (release)"
        } else {
            "building the workspace"
        },
        &mut cmd,
    )
}

/// Builds the workspace, then packages the app's .deb and .rpm from that build with the
/// Tauri CLI (`tauri bundle`, from the UI's locked npm dependencies), from the UI already
/// built (`debug`: a debug build, quicker, for the tests). Returns the packages' paths.
fn bundle(debug: bool) -> Result<Vec<PathBuf>> {
    build_all(!debug)?;
    let profile = if debug { "debug" } else { "release" };
    let out = target_dir().join(profile).join("bundle");
    let _ = std::fs::remove_dir_all(&out);
    let mut cli = Command::new(repo_root().join("ui/node_modules/.bin/tauri"));
    cli.current_dir(repo_root())
        .env("CARGO_TARGET_DIR", target_dir())
        .args(["bundle", "--ci", "--bundles", "deb,rpm"]);
    if debug {
        cli.arg("--debug");
    }
    step(
        &format!("tauri bundle ({profile}): .deb and .rpm"),
        &mut cli,
    )?;
    let mut packages = Vec::new();
    for kind in ["deb", "rpm"] {
        let dir = out.join(kind);
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        packages.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == kind)),
        );
    }
    Ok(packages)
}

fn npm(args: &[&str]) -> Command {
    let mut cmd = Command::new("npm");
    cmd.args(args).current_dir(repo_root().join("ui"));
    cmd
}

/// The web UI: dependencies exactly as locked, unit tests against the fake backend, type
/// and Svelte checks, and a production build.
fn ui_checks() -> Result {
    setup::node()?;
    step(
        "ui: npm ci",
        &mut npm(&["ci", "--no-audit", "--no-fund", "--loglevel=error"]),
    )?;
    step("ui: vitest", &mut npm(&["test"]))?;
    step("ui: svelte-check", &mut npm(&["run", "check"]))?;
    step("ui: vite build", &mut npm(&["run", "build"]))
}

/// The load benchmark: a release server and a separate load process, two scenarios.
/// `paced` holds each simulated call ~1 s so 10,000 clients make ~5,000 matches/s,
/// leaving CPU to spare, and measures latency; `saturated` presses Next at once and
/// measures the most matches per second this machine manages (load generator included).
fn bench(args: &[String]) -> Result {
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

    let mut results = Vec::new();
    for (scenario, hold_ms) in [("paced", "1000"), ("saturated", "0")] {
        eprintln!("xtask: load scenario {scenario}: {clients} clients, {duration} s");
        let json = load_run(&clients, &duration, hold_ms)?;
        println!("{scenario}: {json}");
        results.push(format!(
            "{{\"scenario\":\"{scenario}\",\"hold_ms\":{hold_ms},\"report\":{json}}}"
        ));
    }
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
    Ok(())
}

/// One attack run against a fresh release server with its default limits; returns the
/// report's JSON.
fn attack_run(kind: &str, duration: &str) -> Result<String> {
    let release = target_dir().join("release");
    let data = tempdir(&format!("chingu-attack-{kind}"))?;
    let listen = "127.0.0.1:7898";
    let mut server = owned(&release.join("chingu-server"))
        .args(["--listen", listen, "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting chingu-server: {e}"))?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let output = Command::new(release.join("chingu-cli"))
        .args([
            "attack",
            "--server",
            &format!("ws://{listen}/v1/ws"),
            "--kind",
            kind,
            "--duration",
            duration,
            "--json",
        ])
        .output();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&data);
    let output = output.map_err(|e| format!("running chingu-cli attack: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "chingu-cli attack failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The video transport benchmark: a release app built with `video-bench`, one run per
/// transport and repetition, each in a fresh profile; the page's figures plus the CPU
/// time of the app's process tree and the X server (docs/decisions/0007).
fn bench_video(args: &[String]) -> Result {
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

/// One load run against a fresh release server; returns the report's JSON.
fn load_run(clients: &str, duration: &str, hold_ms: &str) -> Result<String> {
    let release = target_dir().join("release");
    let data = tempdir("chingu-bench")?;
    let listen = "127.0.0.1:7899";
    // 25 simulated people share each source address here, pressing Next as fast as the
    // server answers: lift the per-address message budget (meant for one household or
    // office) so the run measures the server, not the limiter.
    let config = data.join("server.toml");
    std::fs::write(
        &config,
        "address_rate_limit_per_s = 100000\naddress_rate_limit_burst = 100000\n",
    )
    .map_err(|e| format!("writing {}: {e}", config.display()))?;
    let mut server = owned(&release.join("chingu-server"))
        .args(["--listen", listen, "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting chingu-server: {e}"))?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    // 400 loopback source addresses keep every address under the server's default
    // per-address connection limit of 32 with 10,000 clients.
    let output = Command::new(release.join("chingu-cli"))
        .args([
            "load",
            "--server",
            &format!("ws://{listen}/v1/ws"),
            "--clients",
            clients,
            "--duration",
            duration,
            "--hold-ms",
            hold_ms,
            "--source-addresses",
            "400",
            "--server-pid",
            &server.id().to_string(),
            "--json",
        ])
        .output();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&data);
    let output = output.map_err(|e| format!("running chingu-cli load: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "chingu-cli load failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A command for a child that must not outlive xtask. Ctrl-C in a terminal reaches the
/// whole process group, but a `kill` of xtask alone (an IDE's stop button, a supervisor)
/// does not: on Linux, `setpriv --pdeathsig TERM` (util-linux, on every Debian) has the
/// kernel send the child SIGTERM when xtask dies, however it dies.
fn owned(program: &Path) -> Command {
    const SETPRIV: &str = "/usr/bin/setpriv";
    if cfg!(target_os = "linux") && Path::new(SETPRIV).exists() {
        let mut cmd = Command::new(SETPRIV);
        cmd.args(["--pdeathsig", "TERM", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

fn tempdir(prefix: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}
