//! Calls between strangers on real networks, in a lab of network namespaces
//! (chingu_testkit::netlab): chingu-server and coturn on "the internet", each peer in a
//! site of its own — public, behind a cone NAT, a symmetric NAT, or a firewall that
//! drops UDP — running chingu-cli (`bot` on one side, `echo` on the other) as separate
//! processes. Each cell asserts the path ICE selected and records the time from matched
//! to first frame.
//!
//! Needs root (network namespaces), coturn, and chingu-server and chingu-cli built next
//! to this test (`cargo xtask test` builds the workspace first; or set CHINGU_BIN_DIR).
//! Skips with a message where any of these is missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chingu_testkit::coturn::{self, Coturn};
use chingu_testkit::netlab::{Access, Lab, Site};
use chingu_testkit::process::Owned;
use serde_json::Value;

const SERVER_PORT: u16 = 7878;
const TURN_PORT: u16 = 3478;
const TURNS_PORT: u16 = 5349;

/// Where chingu-server and chingu-cli are: CHINGU_BIN_DIR, else the profile directory
/// this test binary was built in.
fn bin_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("CHINGU_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe().ok()?.parent()?.parent()?.to_owned(),
    };
    ["chingu-server", "chingu-cli"]
        .iter()
        .all(|b| dir.join(b).is_file())
        .then_some(dir)
}

/// The lab with chingu-server and coturn running, or why not.
struct World {
    // Field order is drop order: processes before the namespaces they run in.
    _server: Owned,
    coturn: Coturn,
    _dir: chingu_testkit::TempDir,
    bins: PathBuf,
    /// The certificate the peers trust (`SSL_CERT_FILE`) when coturn speaks TLS.
    trusted: Option<PathBuf>,
    lab: Lab,
}

impl World {
    /// The lab, or `None` after saying why it cannot run here (no root, no coturn...).
    fn or_skip(tls_only: bool) -> Option<Self> {
        Self::start_with(tls_only)
            .map_err(|why| eprintln!("SKIPPED: {why}"))
            .ok()
    }

    /// `tls_only`: coturn also listens for TLS, and the server hands out nothing but
    /// `turns:` (every relayed call must go over TLS).
    fn start_with(tls_only: bool) -> Result<Self, String> {
        let bins = bin_dir().ok_or(
            "chingu-server and chingu-cli are not built next to the tests (run `cargo xtask test`, \
             or set CHINGU_BIN_DIR)",
        )?;
        coturn::available().map_err(|e| e.to_string())?;
        let lab = Lab::new().map_err(|e| format!("the network lab needs namespaces: {e:#}"))?;
        let services = Lab::SERVICES;
        let secret = coturn::fresh_secret();
        let dir = chingu_testkit::tempdir().map_err(|e| e.to_string())?;
        let mut coturn_config =
            coturn::lab_config(&services.to_string(), TURN_PORT, &secret, false);
        let mut turn_urls = format!(
            "[\"turn:{services}:{TURN_PORT}?transport=udp\", \
             \"turn:{services}:{TURN_PORT}?transport=tcp\"]"
        );
        let mut stun_urls = format!("[\"stun:{services}:{TURN_PORT}\"]");
        let mut trusted = None;
        if tls_only {
            let (cert, key) =
                chingu_testkit::tls::certificate(dir.path(), &format!("IP:{services}"))
                    .map_err(|e| format!("no certificate for coturn: {e:#}"))?;
            coturn_config = coturn_config.replace("no-tls\n", "")
                + &format!(
                    "tls-listening-port={TURNS_PORT}\ncert={}\npkey={}\n",
                    cert.display(),
                    key.display()
                );
            turn_urls = format!("[\"turns:{services}:{TURNS_PORT}?transport=tcp\"]");
            stun_urls = "[]".into();
            trusted = Some(cert);
        }
        let coturn = Coturn::start(
            lab.command(lab.internet(), coturn::TURNSERVER),
            &coturn_config,
            &secret,
        )
        .map_err(|e| e.to_string())?;
        let config = dir.path().join("server.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{services}:{SERVER_PORT}\"\n\
                 data_dir = \"{}\"\n\
                 cooldown_s = 0\n\
                 stun_urls = {stun_urls}\n\
                 turn_urls = {turn_urls}\n\
                 turn_secret = \"{secret}\"\n",
                dir.path().join("data").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let server = Owned::spawn(
            lab.command(lab.internet(), bins.join("chingu-server"))
                .arg("--config")
                .arg(&config)
                .stdout(Stdio::null()),
        )
        .map_err(|e| e.to_string())?;
        let wait = Duration::from_secs(10);
        lab.wait_for_tcp(
            lab.internet(),
            SocketAddr::from((services, SERVER_PORT)),
            wait,
        )
        .map_err(|e| e.to_string())?;
        lab.wait_for_tcp(
            lab.internet(),
            SocketAddr::from((services, TURN_PORT)),
            wait,
        )
        .map_err(|e| format!("{e}\n{}", coturn.log_tail()))?;
        if tls_only {
            lab.wait_for_tcp(
                lab.internet(),
                SocketAddr::from((services, TURNS_PORT)),
                wait,
            )
            .map_err(|e| format!("{e}\n{}", coturn.log_tail()))?;
        }
        Ok(Self {
            _server: server,
            coturn,
            _dir: dir,
            bins,
            trusted,
            lab,
        })
    }

    fn cli(&self, site: &Site) -> Command {
        let mut cmd = self
            .lab
            .command(&site.namespace, self.bins.join("chingu-cli"));
        cmd.env("RUST_LOG", "warn");
        if let Some(cert) = &self.trusted {
            cmd.env("SSL_CERT_FILE", cert);
        }
        cmd
    }
}

fn server_url() -> String {
    format!("ws://{}:{SERVER_PORT}/v1/ws", Lab::SERVICES)
}

/// What one call between a bot at `a` and an echo at `b` gave.
#[derive(Debug)]
struct CallResult {
    summary: Value,
    /// The path as the echo saw it (its own side; `null` if it never said).
    echo_path: Value,
    stderr: String,
}

fn call(world: &World, a: &Site, b: &Site, bot_args: &[&str], echo_args: &[&str]) -> CallResult {
    let url = server_url();
    let echo = Owned::spawn(
        world
            .cli(b)
            .args([
                "echo",
                "--server",
                &url,
                "--calls",
                "1",
                "--nickname",
                "echo",
            ])
            .args(echo_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    )
    .expect("echo starts");
    let mut echo = echo;
    let echo_lines = json_lines(echo.child().stdout.take().expect("echo stdout"));
    let out = Owned::spawn(
        world
            .cli(a)
            .args(["bot", "--server", &url, "--json", "--nickname", "bot"])
            .args([
                "--duration",
                "2",
                "--wait",
                "20",
                "--width",
                "320",
                "--height",
                "240",
            ])
            .args(bot_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .expect("bot starts")
    .output()
    .expect("bot output");
    // The echo's call ends with the bot's; it says which path it saw as it does.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut echo_path = Value::Null;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match echo_lines.recv_timeout(left) {
            Ok((_, v)) if v["type"] == "ended" => {
                echo_path = v["path"].clone();
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    drop(echo);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|v| v["type"] == "summary")
        .unwrap_or(Value::Null);
    CallResult {
        summary,
        echo_path,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The path a call took, from the bot's summary.
fn path_of(summary: &Value) -> String {
    let path = &summary["path"];
    if path.is_null() {
        return "none".into();
    }
    let side = |s: &str| {
        let c = &path[s];
        match c["relayProtocol"].as_str() {
            Some(p) => format!("{}/{p}", c["kind"].as_str().unwrap_or("?")),
            None => c["kind"].as_str().unwrap_or("?").to_owned(),
        }
    };
    format!("{}-{}", side("local"), side("remote"))
}

/// Whether the call went through a relay, seen from either side (a side may see its
/// peer's relay only as a peer-reflexive candidate, learnt from a check before the
/// candidate itself arrived).
fn relayed(bot_path: &Value, echo_path: &Value) -> bool {
    bot_path["relayed"] == true || echo_path["relayed"] == true
}

/// Every relay on the path is our coturn's; a side's own relay was allocated over UDP or
/// TCP (the engine's bridge), and over TCP from a UDP-blocked site.
fn relayed_by_our_turn(bot_path: &Value, echo_path: &Value, a: Access, b: Access) -> bool {
    let services = Lab::SERVICES.to_string();
    let side_ok = |path: &Value, access: Access| {
        if path.is_null() {
            return true; // that side did not say
        }
        let (local, remote) = (&path["local"], &path["remote"]);
        let protocol_ok = match access {
            Access::UdpBlocked => local["relayProtocol"] == "tcp",
            _ => local["relayProtocol"] == "udp" || local["relayProtocol"] == "tcp",
        };
        let local_ok =
            local["kind"] != "relay" || (local["address"] == services.as_str() && protocol_ok);
        let remote_ok = remote["kind"] != "relay" || remote["address"] == services.as_str();
        // A UDP-blocked side can only send through its relay.
        let blocked_ok = access != Access::UdpBlocked || local["kind"] == "relay";
        local_ok && remote_ok && blocked_ok
    };
    side_ok(bot_path, a) && side_ok(echo_path, b)
}

/// No address the peer revealed is private (its LAN stays its own).
fn assert_no_private_addresses(summary: &Value, cell: &str) {
    for c in summary["remote_candidates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let address = c["address"].as_str().unwrap_or_default();
        if let Ok(ip) = address.parse::<std::net::IpAddr>() {
            assert!(
                chingu_engine::peer::privacy::is_public(ip),
                "{cell}: the peer revealed a private address: {c}"
            );
        }
    }
}

/// What a cell must give: whether the call is relayed (`None`: no path should exist;
/// no cell has none since the engine bridges TURN over TCP, see
/// docs/decisions/0008-real-networks.md).
fn expected(a: Access, b: Access) -> Option<bool> {
    use Access::*;
    match (a, b) {
        // No UDP out: only TURN over TCP (the engine's bridge) gets through.
        (UdpBlocked, _) | (_, UdpBlocked) => Some(true),
        // A symmetric NAT maps each destination to a new port: hole punching works only
        // towards a peer with a public address.
        (Symmetric, Cone | Symmetric) | (Cone, Symmetric) => Some(true),
        _ => Some(false),
    }
}

#[test]
fn every_pair_of_networks_connects_where_a_path_exists_and_over_the_expected_one() {
    let Some(mut world) = World::or_skip(false) else {
        return;
    };
    let mut failures = Vec::new();
    let mut figures = Vec::new();
    for (i, &a) in Access::ALL.iter().enumerate() {
        for &b in &Access::ALL[i..] {
            let cell = format!("{} <-> {}", a.name(), b.name());
            let site_a = world.lab.site(a).expect("site");
            let site_b = world.lab.site(b).expect("site");
            let r = call(&world, &site_a, &site_b, &[], &[]);
            let s = &r.summary;
            assert!(
                !s.is_null(),
                "{cell}: the bot printed no summary\n{}",
                r.stderr
            );
            let path = path_of(s);
            let echo_view = path_of(&serde_json::json!({ "path": r.echo_path }));
            eprintln!(
                "{cell:32} path {path:22} (echo: {echo_view:22}) connected {:>5} ms, first frame {:>5} ms, ended {}",
                s["connected_ms"], s["setup_ms"], s["ended"]
            );
            assert_no_private_addresses(s, &cell);
            match expected(a, b) {
                Some(relayed) => {
                    if s["ok"] != true {
                        failures.push(format!("{cell}: no call ({})", s["ended"]));
                    } else if self::relayed(&s["path"], &r.echo_path) != relayed {
                        failures.push(format!(
                            "{cell}: path {path} (the echo's: {}), expected relayed={relayed}",
                            r.echo_path
                        ));
                    } else if relayed && !relayed_by_our_turn(&s["path"], &r.echo_path, a, b) {
                        failures.push(format!(
                            "{cell}: relayed, but not as expected: {path} (the echo's: {})",
                            r.echo_path
                        ));
                    }
                }
                None => {
                    if s["ended"] != "connect-timeout" {
                        failures.push(format!(
                            "{cell}: expected no path, got {path} ({})",
                            s["ended"]
                        ));
                    }
                }
            }
            figures.push(serde_json::json!({
                "a": a.name(), "b": b.name(), "path": path, "echo_path": echo_view,
                "connected_ms": s["connected_ms"], "first_frame_ms": s["setup_ms"],
            }));
        }
    }
    if let Some(dir) = std::env::var_os("CHINGU_ARTIFACTS") {
        let _ = std::fs::create_dir_all(&dir);
        let lines: Vec<String> = figures.iter().map(Value::to_string).collect();
        let _ = std::fs::write(
            Path::new(&dir).join("netlab.jsonl"),
            lines.join("\n") + "\n",
        );
    }
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        world.coturn.log_tail()
    );
}

#[test]
fn with_only_turn_over_tls_handed_out_calls_relay_over_tls() {
    let Some(mut world) = World::or_skip(true) else {
        return;
    };
    // Both hide their address: a relay is the only path, and TLS the only way to one.
    let a = world.lab.site(Access::UdpBlocked).expect("site");
    let b = world.lab.site(Access::Public).expect("site");
    let r = call(
        &world,
        &a,
        &b,
        &["--relay-only", "--chat", "over TLS"],
        &["--relay-only"],
    );
    let s = &r.summary;
    assert_eq!(
        s["ok"],
        true,
        "{s}\n{}\n{}",
        r.stderr,
        world.coturn.log_tail()
    );
    let bot_local = &s["path"]["local"];
    assert_eq!(bot_local["kind"], "relay", "{s}");
    assert_eq!(bot_local["relayProtocol"], "tls", "{s}");
    assert_eq!(
        r.echo_path["local"]["relayProtocol"], "tls",
        "{}",
        r.echo_path
    );
    assert_eq!(s["chat_received"], serde_json::json!(["over TLS"]), "{s}");
}

#[test]
fn hide_my_ip_reveals_only_the_relay_and_chat_crosses_it() {
    let Some(mut world) = World::or_skip(false) else {
        return;
    };
    // Both on public addresses: without "Hide my IP" they would meet directly.
    let bot = world.lab.site(Access::Public).expect("site");
    let hidden = world.lab.site(Access::Public).expect("site");
    let r = call(
        &world,
        &bot,
        &hidden,
        &["--chat", "안녕, relay", "--chat", "second"],
        &["--relay-only"],
    );
    let s = &r.summary;
    assert_eq!(
        s["ok"], true,
        "the call works through the relay: {s}\n{}",
        r.stderr
    );
    // The hidden side sends through its relay (the bot may know that relay only as a
    // peer-reflexive address, learnt from a check before the candidate arrived).
    assert_eq!(r.echo_path["local"]["kind"], "relay", "{}", r.echo_path);
    assert!(
        ["relay", "prflx"].contains(&s["path"]["remote"]["kind"].as_str().unwrap_or_default()),
        "{s}"
    );
    let revealed = s["remote_candidates"].as_array().expect("candidates");
    assert!(!revealed.is_empty(), "{s}");
    for c in revealed {
        assert_eq!(c["kind"], "relay", "only relay candidates: {c}");
        assert_eq!(
            c["address"],
            Lab::SERVICES.to_string(),
            "only the relay's address: {c}"
        );
    }
    let hidden_address = hidden.address.to_string();
    assert!(
        !s.to_string().contains(&hidden_address),
        "the hidden peer's address {hidden_address} appears nowhere: {s}"
    );
    // The echo sent our chat back over the data channel, through the relay.
    assert_eq!(s["chat_sent"], 2, "{s}");
    assert_eq!(
        s["chat_received"],
        serde_json::json!(["안녕, relay", "second"]),
        "{s}"
    );
}

/// Each JSON line `pipe` gives, with the time it arrived, as it arrives.
fn json_lines(
    pipe: impl std::io::Read + Send + 'static,
) -> std::sync::mpsc::Receiver<(std::time::Instant, Value)> {
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && tx.send((std::time::Instant::now(), v)).is_err()
            {
                break;
            }
        }
    });
    lines
}

/// The peers' logs: shown (on stderr) only when `CHINGU_LAB_LOG` sets their filter, e.g.
/// `CHINGU_LAB_LOG=warn,chingu_engine=debug`.
fn lab_log() -> Stdio {
    if std::env::var_os("CHINGU_LAB_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// A call between a bot and an echo that the test disturbs while it runs: the bot's
/// output lines, each with the time it arrived.
struct LiveCall {
    _echo: Owned,
    bot: Owned,
    lines: std::sync::mpsc::Receiver<(std::time::Instant, Value)>,
    seen: Vec<(std::time::Instant, Value)>,
}

impl LiveCall {
    fn start(world: &World, a: &Site, b: &Site, seconds: u32) -> Self {
        let url = server_url();
        let echo = Owned::spawn(
            world
                .cli(b)
                .args([
                    "echo",
                    "--server",
                    &url,
                    "--calls",
                    "1",
                    "--nickname",
                    "echo",
                ])
                .env(
                    "RUST_LOG",
                    std::env::var("CHINGU_LAB_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdout(Stdio::null())
                .stderr(lab_log()),
        )
        .expect("echo starts");
        let mut bot = Owned::spawn(
            world
                .cli(a)
                .args(["bot", "--server", &url, "--json", "--nickname", "bot"])
                .args(["--duration", &seconds.to_string(), "--wait", "20"])
                .args(["--width", "320", "--height", "240"])
                .stdout(Stdio::piped())
                .env(
                    "RUST_LOG",
                    std::env::var("CHINGU_LAB_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stderr(lab_log()),
        )
        .expect("bot starts");
        let lines = json_lines(bot.child().stdout.take().expect("stdout"));
        Self {
            _echo: echo,
            bot,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until `pick` accepts one (returns its time) or `within` passes.
    fn wait_for(
        &mut self,
        within: Duration,
        pick: impl Fn(&Value) -> bool,
    ) -> Option<std::time::Instant> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let (at, v) = self.lines.recv_timeout(left).ok()?;
            let hit = pick(&v);
            self.seen.push((at, v));
            if hit {
                return Some(at);
            }
        }
    }

    /// Waits until video flows after `after`: two stats lines, both later than `after`,
    /// between which more than five frames were decoded. Returns the second one's time.
    fn wait_for_flow(
        &mut self,
        after: std::time::Instant,
        within: Duration,
    ) -> Option<std::time::Instant> {
        let flowing = |seen: &[(std::time::Instant, Value)]| {
            let stats: Vec<(std::time::Instant, u64)> = seen
                .iter()
                .filter(|(at, _)| *at > after)
                .filter_map(|(at, v)| Self::frames_decoded(v).map(|f| (*at, f)))
                .collect();
            stats
                .windows(2)
                .find(|w| w[1].1 > w[0].1 + 5)
                .map(|w| w[1].0)
        };
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(at) = flowing(&self.seen) {
                return Some(at);
            }
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let (at, v) = self.lines.recv_timeout(left).ok()?;
            let end = v["type"] == "summary";
            self.seen.push((at, v));
            if end {
                return flowing(&self.seen);
            }
        }
    }

    /// Waits for the call's first frames, then lets it run two seconds.
    fn settle(&mut self) -> bool {
        let started = self
            .wait_for(Duration::from_secs(30), |v| {
                Self::frames_decoded(v).is_some_and(|f| f > 0)
            })
            .is_some();
        std::thread::sleep(Duration::from_secs(2));
        started
    }

    /// How long after `from` the bot said its media flows again (if it did).
    fn restored_after(&self, from: std::time::Instant) -> Option<Duration> {
        self.seen.iter().find_map(|(at, v)| {
            (v["type"] == "media_interrupted" && v["interrupted"] == false && *at > from)
                .then(|| at.duration_since(from))
        })
    }

    /// Frames decoded per stats line, for a failure message.
    fn timeline(&self, from: std::time::Instant) -> String {
        self.seen
            .iter()
            .filter_map(|(at, v)| {
                let t = at.saturating_duration_since(from).as_millis() as i128
                    - from.saturating_duration_since(*at).as_millis() as i128;
                match Self::frames_decoded(v) {
                    Some(f) => Some(format!(
                        "{t} ms: {f} frames, {} video and {} audio packets in, {} frames sent",
                        v["inboundVideo"]["packetsReceived"],
                        v["inboundAudio"]["packetsReceived"],
                        v["outboundVideo"]["framesSent"]
                    )),
                    None if v["type"] == "media_interrupted" => Some(format!("{t} ms: {v}")),
                    None => None,
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn frames_decoded(v: &Value) -> Option<u64> {
        (v["type"] == "stats")
            .then(|| v["inboundVideo"]["framesDecoded"].as_u64())
            .flatten()
    }

    /// The summary, once the bot has finished.
    fn finish(mut self) -> Value {
        let _ = self.wait_for(Duration::from_secs(60), |v| v["type"] == "summary");
        let _ = self.bot.wait();
        self.seen
            .iter()
            .rev()
            .find(|(_, v)| v["type"] == "summary")
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Null)
    }
}

#[test]
fn a_ten_second_outage_does_not_end_the_call_and_media_comes_back() {
    let Some(mut world) = World::or_skip(false) else {
        return;
    };
    let a = world.lab.site(Access::Cone).expect("site");
    let b = world.lab.site(Access::Cone).expect("site");
    let mut call = LiveCall::start(&world, &a, &b, 30);
    assert!(call.settle(), "the call starts");
    world.lab.set_outage(&a, true).expect("outage");
    let cut = std::time::Instant::now();
    let _ = call.wait_for(Duration::from_secs(10), |_| false);
    world.lab.set_outage(&a, false).expect("back");
    let back = std::time::Instant::now();
    let resumed = call.wait_for_flow(back, Duration::from_secs(15));
    eprintln!("{}", call.timeline(cut));
    let restored = call.restored_after(back);
    let summary = call.finish();
    eprintln!(
        "outage 10 s; media restored {restored:?} and frames flowing {:?} after the network came back; ended {}",
        resumed.map(|t| t.duration_since(back)),
        summary["ended"]
    );
    assert!(resumed.is_some(), "media came back: {summary}");
    assert_eq!(
        summary["ended"], "hung-up",
        "the call went on to its end: {summary}"
    );
}

#[test]
fn an_address_change_mid_call_does_not_end_it() {
    let Some(mut world) = World::or_skip(false) else {
        return;
    };
    let mut a = world.lab.site(Access::Public).expect("site");
    let b = world.lab.site(Access::Cone).expect("site");
    let mut call = LiveCall::start(&world, &a, &b, 20);
    assert!(call.settle(), "the call starts");
    let old = a.address;
    let new = world.lab.change_address(&mut a).expect("new address");
    let moved = std::time::Instant::now();
    let resumed = call.wait_for_flow(moved, Duration::from_secs(15));
    eprintln!("{}", call.timeline(moved));
    let restored = call.restored_after(moved);
    let summary = call.finish();
    eprintln!(
        "address {old} -> {new}; media restored after {restored:?}, frames again {:?}; ended {}",
        resumed.map(|t| t.duration_since(moved)),
        summary["ended"]
    );
    assert!(resumed.is_some(), "media came back: {summary}");
    assert_eq!(
        summary["ended"], "hung-up",
        "the call went on to its end: {summary}"
    );
    assert_eq!(
        summary["path"]["local"]["address"],
        new.to_string(),
        "the call moved to the new address: {summary}"
    );
}

/// The lab's figures for `cargo xtask bench` (a benchmark, not a check): setup time per
/// cell where a path exists, `CHINGU_LAB_RUNS` times (default 5), and how fast media
/// comes back after a 10 s outage and after an address change (3 runs each). Prints a
/// table and writes JSON lines to `$CHINGU_BENCH_OUT` when set.
#[test]
#[ignore = "a benchmark: `cargo xtask bench` runs it"]
fn bench_lab_setup_and_recovery() {
    let Some(mut world) = World::or_skip(false) else {
        return;
    };
    let runs: usize = std::env::var("CHINGU_LAB_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let mut lines = Vec::new();
    for (i, &a) in Access::ALL.iter().enumerate() {
        for &b in &Access::ALL[i..] {
            if expected(a, b).is_none() {
                continue;
            }
            let (mut connected, mut first_frame, mut paths) = (Vec::new(), Vec::new(), Vec::new());
            // One pair of sites per cell (a lab holds 99 sites at most); each run is a new
            // pair of processes, so new sockets and NAT mappings.
            let site_a = world.lab.site(a).expect("site");
            let site_b = world.lab.site(b).expect("site");
            for _ in 0..runs {
                let r = call(&world, &site_a, &site_b, &[], &[]);
                if let (Some(c), Some(f)) = (
                    r.summary["connected_ms"].as_u64(),
                    r.summary["setup_ms"].as_u64(),
                ) {
                    connected.push(c);
                    first_frame.push(f);
                }
                paths.push(path_of(&r.summary));
            }
            connected.sort_unstable();
            first_frame.sort_unstable();
            paths.sort();
            paths.dedup();
            println!(
                "{:>14} <-> {:<14} {:<22} connected {:?} ms, first frame {:?} ms",
                a.name(),
                b.name(),
                paths.join(","),
                connected,
                first_frame
            );
            lines.push(serde_json::json!({
                "kind": "setup", "a": a.name(), "b": b.name(), "paths": paths,
                "connected_ms": connected, "first_frame_ms": first_frame,
            }));
        }
    }
    for scenario in ["outage-10s", "address-change"] {
        let mut restored_ms = Vec::new();
        for _ in 0..3 {
            let mut a = world
                .lab
                .site(if scenario == "outage-10s" {
                    Access::Cone
                } else {
                    Access::Public
                })
                .expect("site");
            let b = world.lab.site(Access::Cone).expect("site");
            let mut live = LiveCall::start(&world, &a, &b, 25);
            if !live.settle() {
                continue;
            }
            let from = if scenario == "outage-10s" {
                world.lab.set_outage(&a, true).expect("outage");
                std::thread::sleep(Duration::from_secs(10));
                world.lab.set_outage(&a, false).expect("back");
                std::time::Instant::now()
            } else {
                world.lab.change_address(&mut a).expect("address");
                std::time::Instant::now()
            };
            let flowing = live.wait_for_flow(from, Duration::from_secs(15));
            // Without an interruption to end, the time video was seen flowing again (to
            // the stats line, a second's resolution).
            let back = live
                .restored_after(from)
                .or_else(|| flowing.map(|t| t.duration_since(from)));
            if let Some(back) = back {
                restored_ms.push(back.as_millis() as u64);
            }
            let _ = live.finish();
        }
        println!("{scenario}: media back after {restored_ms:?} ms");
        lines.push(serde_json::json!({"kind": scenario, "media_back_ms": restored_ms}));
    }
    if let Some(path) = std::env::var_os("CHINGU_BENCH_OUT") {
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(&path, text.join("\n") + "\n").expect("write the figures");
    }
}
