//! `chingu-cli beside`: Chingu's call and libwebrtc's ([`crate::reference`]) in the same
//! conditions, one after the other, so a figure is read beside the yardstick measured in
//! the same minute on the same machine. Each condition gets a fresh network namespace
//! whose kernel drops that share of every UDP datagram received (`iptables -m statistic`;
//! both peers live in the namespace, so each direction loses it, and so do STUN, DTLS and
//! RTCP), and each stack runs as a child process inside it: `chingu-cli bench` (two
//! engines and a server over loopback) and `chingu-cli reference` (two peer connections in
//! headless Chromium). Needs root (namespaces, iptables) and Chromium.
//!
//! Unlike `bench --net`, the loss is the kernel's: not seeded, the same mechanism for both
//! stacks.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::bench::{DirectionResult, video_cells};
use crate::reference::ReferenceResult;

/// One stack's call in one condition.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// Share of UDP datagrams dropped on receipt, %.
    pub loss_pct: u32,
    /// `chingu` or `libwebrtc`.
    pub stack: &'static str,
    /// Which run of this condition (from 1).
    pub run: u32,
    /// The figures, or why there are none.
    #[serde(flatten)]
    pub outcome: Outcome,
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
    /// (Chromium gathers candidates only there), dropping `loss_pct` % of received UDP.
    fn new(name: String, loss_pct: u32) -> anyhow::Result<Self> {
        sh("ip", &["netns", "add", &name])?;
        let ns = Self(name);
        let n = ns.0.as_str();
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
        if loss_pct > 0 {
            let probability = format!("{:.2}", f64::from(loss_pct) / 100.0);
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    n,
                    "iptables",
                    "-A",
                    "INPUT",
                    "-p",
                    "udp",
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(ns)
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
        bail!("needs root (network namespaces and iptables)");
    }
    for program in ["ip", "iptables"] {
        if Command::new(program).arg("-V").output().is_err() {
            bail!("needs `{program}`");
        }
    }
    Ok(())
}

/// Every condition `runs` times, Chingu then libwebrtc; `report` sees each run as it ends.
pub fn run(
    losses: &[u32],
    runs: u32,
    duration: Duration,
    chromium: &Path,
    mut report: impl FnMut(&Run),
) -> anyhow::Result<Vec<Run>> {
    can_run()?;
    let secs = duration.as_secs().to_string();
    let chromium = chromium.to_string_lossy().into_owned();
    let mut all = Vec::new();
    for &loss_pct in losses {
        if loss_pct >= 100 {
            bail!("loss {loss_pct} %: a call needs some packets through");
        }
        for run in 1..=runs {
            for stack in ["chingu", "libwebrtc"] {
                let name = format!("chingu-beside-{}", std::process::id());
                let outcome = Namespace::new(name, loss_pct).and_then(|ns| match stack {
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
                });
                let row = Run {
                    loss_pct,
                    stack,
                    run,
                    outcome: match outcome {
                        Ok(figures) => Outcome::Measured(Box::new(figures)),
                        Err(e) => Outcome::Failed(format!("{e:#}")),
                    },
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
        "| loss each way | stack | connected | direction | decoded / sent | freezes (frozen; longest still) | capture→render p50 / p95 | video kbit/s (estimate) | last size | audio concealed | CPU, both ends |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let label = format!("{} %", r.loss_pct);
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
                loss_pct: 20,
                stack: "chingu",
                run: 1,
                outcome: Outcome::Measured(Box::new(figures())),
            },
            Run {
                loss_pct: 20,
                stack: "libwebrtc",
                run: 1,
                outcome: Outcome::Failed("no figures | from Chromium\nwithin 80 s".into()),
            },
        ];
        let table = markdown(&runs);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert_eq!(
            lines[2],
            "| 20 % | chingu | 14 ms | up | 620 / 630 | 1 (0.2 s; 0.25 s) | 6 / 9 ms | 987 (1159) | 640x480 | 0.0 % | 39 % |"
        );
        assert!(lines[3].contains("| down |"));
        // The error stays in its cell: no stray column or line.
        assert_eq!(
            lines[4],
            "| 20 % | libwebrtc | no figures / from Chromium within 80 s | | | | | | | | |"
        );
        let json = serde_json::to_value(&runs[0]).expect("json");
        assert_eq!(json["lossPct"], 20);
        assert_eq!(json["measured"]["connected_ms"], 14);
    }
}
