//! `cargo xtask run | test | bench`: the project's entry points. Each sets up what is
//! missing on this machine (system packages through apt-get, pinned cargo tools), builds,
//! then runs, checks or measures. Only the standard library, so it builds in seconds.

mod bench;
mod display;
mod leftovers;
mod setup;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

  run [--listen ADDR] [--two]
                        set up, build and start coturn (STUN/TURN on port 3479) and
                        chingu-server (default 127.0.0.1:7878), which hands out its
                        credentials, a chingu-cli echo partner and the app (two
                        windows with --two; no app without a display)
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
        Some("bench") => bench::bench(&args[1..]),
        Some("bench-video") => bench::bench_video(&args[1..]),
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
    let state = repo_root().join(".chingu");
    let data_dir = state.join("server-data");
    let debug = target_dir().join("debug");
    let url = format!("ws://{listen}/v1/ws");
    let host: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| format!("--listen {listen}: {e} (want IP:PORT)"))?;
    let turn_host = match host.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    // coturn with a fresh REST secret each run; the server signs TURN credentials with it.
    if !setup::has_command(TURNSERVER) {
        return Err(
            "coturn's `turnserver` is missing: install coturn (Debian/Ubuntu: \
                    apt-get install coturn; Fedora: dnf install coturn; macOS: brew install \
                    coturn) and run again"
                .into(),
        );
    }
    let secret = fresh_secret()?;
    let coturn_dir = state.join("coturn");
    std::fs::create_dir_all(&coturn_dir).map_err(|e| e.to_string())?;
    let coturn_conf = coturn_dir.join("turnserver.conf");
    std::fs::write(&coturn_conf, coturn_config(host.ip(), &secret, &coturn_dir))
        .map_err(|e| format!("writing {}: {e}", coturn_conf.display()))?;
    let mut coturn = owned(Path::new(TURNSERVER))
        .arg("-c")
        .arg(&coturn_conf)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting coturn ({TURNSERVER}): {e}"))?;
    let server_conf = state.join("server.toml");
    std::fs::write(
        &server_conf,
        format!(
            "# Written by `cargo xtask run` for this run's coturn.\n\
             stun_urls = [\"stun:{turn_host}:{TURN_PORT}\"]\n\
             turn_urls = [\"turn:{turn_host}:{TURN_PORT}?transport=udp\", \
             \"turn:{turn_host}:{TURN_PORT}?transport=tcp\"]\n\
             turn_secret = \"{secret}\"\n"
        ),
    )
    .map_err(|e| format!("writing {}: {e}", server_conf.display()))?;
    eprintln!(
        "xtask: starting coturn and chingu-server\n\
         \n  WebSocket:  {url}   (protocol: docs/protocol.md)\
         \n  Health:     http://{listen}/healthz\
         \n  Metrics:    http://{listen}/metrics\
         \n  STUN/TURN:  {turn_host}:{TURN_PORT} (coturn; log in {})\
         \n  Data:       {}\
         \n  Stop with Ctrl-C.\n",
        coturn_dir.display(),
        data_dir.display()
    );
    let mut server = owned(&debug.join("chingu-server"))
        .arg("--config")
        .arg(&server_conf)
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
    let _ = coturn.kill();
    let _ = coturn.wait();
    result
}

/// coturn's server (Debian's `coturn` package installs it on PATH).
const TURNSERVER: &str = "turnserver";
/// Not 3478, so a system coturn already running there does not collide.
const TURN_PORT: u16 = 3479;

/// coturn's configuration for a local run: STUN and TURN (UDP and TCP) on `ip`, REST
/// credentials signed with `secret`, relays to loopback allowed (both peers are on
/// this machine), no TLS, no CLI, logs in `dir`. Deployments use deploy/turnserver.conf.
fn coturn_config(ip: std::net::IpAddr, secret: &str, dir: &Path) -> String {
    let listen = if ip.is_unspecified() {
        String::new()
    } else {
        format!("listening-ip={ip}\nrelay-ip={ip}\n")
    };
    format!(
        "{listen}listening-port={TURN_PORT}\nmin-port=49152\nmax-port=65535\n\
         use-auth-secret\nstatic-auth-secret={secret}\nrealm=chingu.local\n\
         fingerprint\nno-cli\nno-tls\nno-dtls\nno-multicast-peers\nallow-loopback-peers\n\
         log-file={}\nsimple-log\npidfile={}\n",
        dir.join("turnserver.log").display(),
        dir.join("turnserver.pid").display(),
    )
}

/// A fresh random secret (hex) for coturn's REST credentials.
fn fresh_secret() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom for coturn's secret: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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
        .env("CHINGU_BIN_DIR", target_dir().join("debug"))
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
    // Doc tests build every library once more in their own way (and the next build
    // then rebuilds them): run them only when there are some.
    if has_doc_tests(&repo_root()) {
        step(
            "doc tests",
            cargo().args(["test", "--locked", "--workspace", "--doc"]),
        )?;
    } else {
        eprintln!("xtask: no doc tests in the workspace (no rust code blocks in doc comments)");
    }
    eprintln!("xtask: all checks passed");
    Ok(())
}

/// Whether any doc comment under `crates/`, `src-tauri/`, `tests/` or `xtask/` opens a
/// code block that rustdoc would run (a bare fence or a `rust` one).
fn has_doc_tests(root: &Path) -> bool {
    fn scan(dir: &Path) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let path = entry.path();
            if path.is_dir() {
                return path.file_name().is_none_or(|n| n != "target") && scan(&path);
            }
            path.extension().is_some_and(|e| e == "rs")
                && std::fs::read_to_string(&path).is_ok_and(|text| runs_doc_code(&text))
        })
    }
    ["crates", "src-tauri", "tests", "xtask"]
        .iter()
        .any(|dir| scan(&root.join(dir)))
}

/// Opening fences in doc comments whose language rustdoc compiles (none given, or
/// Rust with its attributes); closing fences and other languages do not count.
fn runs_doc_code(text: &str) -> bool {
    const OTHER: &[&str] = &[
        "text", "json", "sh", "bash", "toml", "console", "sql", "ignore",
    ];
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim_start();
        let Some(doc) = line
            .strip_prefix("///")
            .or_else(|| line.strip_prefix("//!"))
        else {
            continue;
        };
        let Some(info) = doc.trim().strip_prefix("```") else {
            continue;
        };
        if inside {
            inside = false;
            continue;
        }
        inside = true;
        if !OTHER.contains(&info.trim()) {
            return true;
        }
    }
    false
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

#[cfg(test)]
mod tests {
    #[test]
    fn only_code_blocks_rustdoc_runs_count_as_doc_tests() {
        assert!(!super::runs_doc_code("//! ```text\n//! a -> b\n//! ```\n"));
        assert!(super::runs_doc_code(
            "/// ```\n/// assert!(true);\n/// ```\n"
        ));
        assert!(super::runs_doc_code("/// ```rust\n/// x();\n/// ```\n"));
        assert!(!super::runs_doc_code("// ```\nlet x = 1;\n"));
    }
}
