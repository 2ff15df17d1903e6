//! `chingu-cli beside`: Chingu's call and libwebrtc's ([`crate::reference`]) in the same
//! conditions, one after the other, so a figure is read beside the yardstick measured in
//! the same minute on the same machine. Each condition gets a fresh network namespace
//! (loopback, a veth pair and a default route, which Chromium needs to gather candidates)
//! where both peers live, and each stack runs as a child process inside it:
//! `chingu-cli bench` (two engines and a server over loopback) and `chingu-cli reference`
//! (two peer connections in headless Chromium). Unless the condition is `clean`, an
//! iptables rule hands every UDP datagram received in the namespace to a `chingu-cli
//! shape` process (netsim/nfqueue.rs), which puts each flow — each direction of the call,
//! STUN, DTLS and RTCP included — through its own link of the same scenario `bench --net`
//! uses (loss, bursts, rate and queue, delay, jitter; seeded), so both stacks cross the
//! same links. Needs root (namespaces, iptables, NFQUEUE) and Chromium.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::bench::{DirectionResult, video_cells};
use crate::netsim::Scenario;
use crate::netsim::flows::{FlowShaper, ShapeCounts};
use crate::reference::ReferenceResult;

/// The netfilter queue the shaper binds in each namespace.
const QUEUE_NUM: &str = "0";

/// One stack's call in one condition.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// The scenario (as `bench --net` takes it, seed included).
    pub net: String,
    /// `chingu` or `libwebrtc`.
    pub stack: &'static str,
    /// Which run of this condition (from 1).
    pub run: u32,
    /// The figures, or why there are none.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What the shaper did to the call's packets (none for a clean condition).
    pub shaped: Option<ShapeCounts>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Measured(Box<Figures>),
    Failed(String),
}

/// What both stacks report, the same way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub connected_ms: u64,
    pub cpu_pct_one_core: f64,
    pub up: DirectionResult,
    pub down: DirectionResult,
}

impl From<ReferenceResult> for Figures {
    fn from(r: ReferenceResult) -> Self {
        Self {
            connected_ms: r.connected_ms,
            cpu_pct_one_core: r.cpu_pct_one_core,
            up: r.up,
            down: r.down,
        }
    }
}

/// A network namespace that is deleted when dropped.
struct Namespace(String);

impl Namespace {
    /// A namespace with loopback, one more interface and a default route through it
    /// (Chromium gathers candidates only there), IPv4 only (so nothing goes around the
    /// shaper's IPv4 rule).
    fn new(name: String) -> anyhow::Result<Self> {
        sh("ip", &["netns", "add", &name])?;
        let ns = Self(name);
        let n = ns.0.as_str();
        // Best effort: a kernel without IPv6 has nothing to turn off.
        let _ = sh(
            "ip",
            &[
                "netns",
                "exec",
                n,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ],
        );
        for args in [
            "link set lo up",
            "link add v0 type veth peer name v1",
            "addr add 10.123.0.1/24 dev v0",
            "link set v0 up",
            "link set v1 up",
            "route add default via 10.123.0.2",
        ] {
            let mut all = vec!["-n", n];
            all.extend(args.split(' '));
            sh("ip", &all)?;
        }
        Ok(ns)
    }

    /// Every UDP datagram received in the namespace through a `chingu-cli shape`
    /// process with `scenario` (checked here first), until [`Shaping::finish`].
    fn shape(&self, scenario: &Scenario) -> anyhow::Result<Shaping> {
        FlowShaper::new(scenario)?;
        let me = std::env::current_exe().context("finding chingu-cli")?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .arg(me)
            .args(["shape", "--queue-num", QUEUE_NUM, "--net", &scenario.name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting chingu-cli shape")?;
        let mut stdout = BufReader::new(child.stdout.take().context("shape's output")?);
        let mut line = String::new();
        stdout.read_line(&mut line).context("waiting for shape")?;
        let shaping = Shaping { child, stdout };
        if line.trim() != "bound" {
            bail!("chingu-cli shape did not start (said {:?})", line.trim());
        }
        sh(
            "ip",
            &[
                "netns",
                "exec",
                &self.0,
                "iptables",
                "-A",
                "INPUT",
                "-p",
                "udp",
                "-j",
                "NFQUEUE",
                "--queue-num",
                QUEUE_NUM,
            ],
        )?;
        Ok(shaping)
    }

    /// This program with `args`, inside the namespace; its last line of output, parsed.
    fn run_self<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> anyhow::Result<T> {
        let me = std::env::current_exe().context("finding chingu-cli")?;
        let output = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .arg(me)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .context("running ip netns exec")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            bail!(
                "chingu-cli {} failed: {}",
                args.join(" "),
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            );
        }
        let last = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .context("no figures printed")?;
        serde_json::from_str(last).with_context(|| format!("reading figures: {last}"))
    }
}

/// A running `chingu-cli shape`; stopped (and its counts read) by [`Shaping::finish`],
/// killed if dropped first.
struct Shaping {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Shaping {
    /// Closes the shaper's input, which stops it; what it counted.
    fn finish(mut self) -> anyhow::Result<ShapeCounts> {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut rest).context("reading shape")?;
        let status = self.child.wait().context("waiting for shape")?;
        if !status.success() {
            bail!("chingu-cli shape failed ({status})");
        }
        let last = rest.lines().rev().find(|l| !l.trim().is_empty());
        let last = last.context("shape printed no counts")?;
        serde_json::from_str(last).with_context(|| format!("reading shape's counts: {last}"))
    }
}

impl Drop for Shaping {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `chingu-cli shape`: shapes queue `queue_num` with `net` until stdin closes, saying
/// `bound` once packets can come and its counts (one JSON object) at the end.
#[cfg(target_os = "linux")]
pub fn shape(net: &str, queue_num: u16) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let scenario: Scenario = net.parse()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    std::thread::spawn(move || {
        // Whatever comes in is ignored; the end of it (or an error) is the signal.
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        stopper.store(true, Ordering::Relaxed);
    });
    let counts = crate::netsim::nfqueue::run(&scenario, queue_num, &stop, || {
        println!("bound");
        let _ = std::io::stdout().flush();
    })?;
    println!("{}", serde_json::to_string(&counts)?);
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn shape(_net: &str, _queue_num: u16) -> anyhow::Result<()> {
    bail!("shape needs Linux (netfilter queues)")
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Whether this process can make namespaces (root, with `ip` and `iptables`).
pub fn can_run() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root {
        bail!("needs root (network namespaces, iptables and netfilter queues)");
    }
    for program in ["ip", "iptables"] {
        if Command::new(program).arg("-V").output().is_err() {
            bail!("needs `{program}`");
        }
    }
    Ok(())
}

/// Every condition `runs` times, Chingu then libwebrtc; `report` sees each run as it ends.
/// Run `n` of a condition uses the scenario's seed plus `n - 1`, the same for both
/// stacks.
pub fn run(
    nets: &[Scenario],
    runs: u32,
    duration: Duration,
    chromium: &Path,
    mut report: impl FnMut(&Run),
) -> anyhow::Result<Vec<Run>> {
    can_run()?;
    for net in nets {
        FlowShaper::new(net)?;
    }
    let secs = duration.as_secs().to_string();
    let chromium = chromium.to_string_lossy().into_owned();
    let mut all = Vec::new();
    for net in nets {
        let clean = net.up.is_clean() && net.down.is_clean();
        for run in 1..=runs {
            let seed = net.seed.wrapping_add(u64::from(run - 1));
            let spec = if clean {
                net.name.clone()
            } else {
                format!("{},seed={seed}", net.name)
            };
            let scenario: Scenario = spec.parse()?;
            for stack in ["chingu", "libwebrtc"] {
                let name = format!("chingu-beside-{}", std::process::id());
                let mut shaped = None;
                let outcome = Namespace::new(name).and_then(|ns| {
                    let shaping = if clean {
                        None
                    } else {
                        Some(ns.shape(&scenario)?)
                    };
                    let figures = match stack {
                        "chingu" => ns.run_self::<Figures>(&[
                            "bench",
                            "--json",
                            "--duration",
                            &secs,
                            "--sizes",
                            "640x480",
                        ]),
                        _ => ns
                            .run_self::<ReferenceResult>(&[
                                "reference",
                                "--duration",
                                &secs,
                                "--chromium",
                                &chromium,
                            ])
                            .map(Figures::from),
                    };
                    if let Some(shaping) = shaping {
                        shaped = Some(shaping.finish()?);
                    }
                    figures
                });
                let row = Run {
                    net: spec.clone(),
                    stack,
                    run,
                    outcome: match outcome {
                        Ok(figures) => Outcome::Measured(Box::new(figures)),
                        Err(e) => Outcome::Failed(format!("{e:#}")),
                    },
                    shaped,
                };
                report(&row);
                all.push(row);
            }
        }
    }
    Ok(all)
}

/// The runs as a Markdown table (docs/benchmarks.md), one line per stack and direction.
pub fn markdown(runs: &[Run]) -> String {
    let mut out = String::from(
        "| network | stack | connected | direction | decoded / sent | freezes (frozen; longest still) | capture→render p50 / p95 | video kbit/s (estimate) | last size | audio concealed | CPU, both ends |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let label = &r.net;
        match &r.outcome {
            Outcome::Measured(f) => {
                for (direction, d) in [("up", &f.up), ("down", &f.down)] {
                    out.push_str(&format!(
                        "| {label} | {} | {} ms | {direction} | {} | {:.1} % | {:.0} % |\n",
                        r.stack,
                        f.connected_ms,
                        video_cells(d),
                        d.audio_concealed_pct,
                        f.cpu_pct_one_core,
                    ));
                }
            }
            Outcome::Failed(error) => out.push_str(&format!(
                "| {label} | {} | {} | | | | | | | | |\n",
                r.stack,
                error.replace('|', "/").replace('\n', " ")
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures() -> Figures {
        let direction = r#"{"captureToRenderMs":{"p50":6.0,"p95":9.0,"p99":12.0},"framesSent":630,"framesDecoded":620,"freezeCount":1,"totalFreezesDuration":0.25,"longestStillMs":250.0,"videoKbps":987.4,"estimateKbps":1159.0,"frameWidth":640,"frameHeight":480,"audioConcealedPct":0.04,"audioDiscardedPct":0.0,"pliCount":0,"nackCount":0,"retransmittedPacketsSent":0,"retransmittedPacketsReceived":0,"psnrYDb":null,"psnrYP10Db":null,"interFrameDelayStdMs":3.0,"videoJitterBufferMs":0.5}"#;
        // What `bench --json` prints, extra fields and all.
        serde_json::from_str(&format!(
            r#"{{"size":"640x480","connected_ms":14,"cpu_pct_one_core":39.4,"up":{direction},"down":{direction},"net":null}}"#
        ))
        .expect("bench's figures")
    }

    #[test]
    fn the_table_has_a_line_per_direction_and_a_failed_run_says_why() {
        let runs = [
            Run {
                net: "loss20,seed=1".into(),
                stack: "chingu",
                run: 1,
                outcome: Outcome::Measured(Box::new(figures())),
                shaped: Some(ShapeCounts::default()),
            },
            Run {
                net: "loss20,seed=1".into(),
                stack: "libwebrtc",
                run: 1,
                outcome: Outcome::Failed("no figures | from Chromium\nwithin 80 s".into()),
                shaped: None,
            },
        ];
        let table = markdown(&runs);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert_eq!(
            lines[2],
            "| loss20,seed=1 | chingu | 14 ms | up | 620 / 630 | 1 (0.2 s; 0.25 s) | 6 / 9 ms | 987 (1159) | 640x480 | 0.0 % | 39 % |"
        );
        assert!(lines[3].contains("| down |"));
        // The error stays in its cell: no stray column or line.
        assert_eq!(
            lines[4],
            "| loss20,seed=1 | libwebrtc | no figures / from Chromium within 80 s | | | | | | | | |"
        );
        let json = serde_json::to_value(&runs[0]).expect("json");
        assert_eq!(json["net"], "loss20,seed=1");
        assert_eq!(json["shaped"]["flows"], 0);
        assert_eq!(json["measured"]["connected_ms"], 14);
    }
}
