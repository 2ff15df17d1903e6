//! `chingu-cli shape` on the kernel's packets (what `chingu-cli beside` puts both stacks
//! through): in a network namespace, an iptables rule queues UDP to it, and datagrams
//! arrive no sooner than the scenario's delay, or not at all when its link loses them;
//! its counts say what it did. Without the shaper bound, the rule drops (fails closed).
//!
//! Needs root (namespaces, iptables, netfilter queues) and chingu-cli built next to this
//! test (or CHINGU_BIN_DIR); skips with a message otherwise.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chingu_testkit::netlab::{Lab, in_namespace};
use serde_json::Value;

fn cli() -> Option<PathBuf> {
    let dir = match std::env::var_os("CHINGU_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe().ok()?.parent()?.parent()?.to_owned(),
    };
    Some(dir.join("chingu-cli")).filter(|p| p.is_file())
}

/// A namespace with loopback up and UDP queued to queue 0, or why not.
fn lab() -> Result<(Lab, PathBuf), String> {
    let cli = cli().ok_or("chingu-cli is not built next to this test")?;
    let lab = Lab::new().map_err(|e| format!("the lab needs namespaces: {e:#}"))?;
    let ns = lab.internet().to_owned();
    for args in [
        vec!["ip", "link", "set", "lo", "up"],
        vec![
            "iptables",
            "-A",
            "INPUT",
            "-p",
            "udp",
            "-j",
            "NFQUEUE",
            "--queue-num",
            "0",
        ],
    ] {
        let status = lab
            .command(&ns, args[0])
            .args(&args[1..])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("{} failed here", args.join(" ")));
        }
    }
    Ok((lab, cli))
}

/// Sends `n` datagrams, 10 ms apart, from one loopback socket to another inside the
/// lab's namespace; each one's one-way time, or `None` where it did not arrive.
fn send(lab: &Lab, n: u8) -> Vec<Option<Duration>> {
    in_namespace(lab.internet(), move || {
        let to = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let from = UdpSocket::bind("127.0.0.1:0").expect("bind");
        to.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let target: SocketAddr = to.local_addr().expect("address");
        let start = Instant::now();
        let mut sent = Vec::new();
        let mut arrived = vec![None; usize::from(n)];
        let mut buf = [0u8; 64];
        // Until 400 ms after the last is sent: far longer than any delay used here.
        while start.elapsed() < Duration::from_millis(10 * u64::from(n) + 400) {
            if sent.len() < usize::from(n)
                && start.elapsed() >= Duration::from_millis(10 * sent.len() as u64)
            {
                from.send_to(&[sent.len() as u8], target).expect("send");
                sent.push(Instant::now());
            }
            if let Ok((len, _)) = to.recv_from(&mut buf)
                && len == 1
                && let Some(at) = sent.get(usize::from(buf[0]))
            {
                arrived[usize::from(buf[0])] = Some(at.elapsed());
            }
        }
        arrived
    })
    .expect("in the namespace")
}

/// Starts the shaper with `net` in the lab's namespace, runs `f`, stops it; its counts.
fn shaped<T>(lab: &Lab, cli: &PathBuf, net: &str, f: impl FnOnce() -> T) -> (T, Value) {
    let mut child = lab
        .command(lab.internet(), cli)
        .args(["shape", "--net", net])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start chingu-cli shape");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert_eq!(line.trim(), "bound", "the shaper did not start");
    let result = f();
    drop(child.stdin.take());
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read the counts");
    assert!(child.wait().expect("wait").success());
    let counts = serde_json::from_str(rest.trim()).expect("counts are JSON");
    (result, counts)
}

#[test]
fn the_kernels_packets_take_the_links_delay_and_loss_and_nothing_passes_without_it() {
    let (lab, cli) = match lab() {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };

    // Delay: every datagram arrives, none before its link's 60 ms.
    let (arrived, counts) = shaped(&lab, &cli, "delay=60ms", || send(&lab, 20));
    for (i, one_way) in arrived.iter().enumerate() {
        let one_way = one_way.unwrap_or_else(|| panic!("datagram {i} did not arrive"));
        assert!(
            one_way >= Duration::from_millis(60),
            "datagram {i} arrived after {one_way:?}, sooner than the link's delay"
        );
    }
    assert_eq!(counts["flows"], 1, "{counts}");
    assert_eq!(counts["packets"], 20, "{counts}");
    assert_eq!(counts["delivered"], 20, "{counts}");

    // Loss: a link that loses everything delivers nothing, and says so.
    let (arrived, counts) = shaped(&lab, &cli, "loss=100%", || send(&lab, 10));
    assert!(arrived.iter().all(Option::is_none), "{arrived:?}");
    assert_eq!(counts["lost"], 10, "{counts}");

    // A seeded 50 % loses some and passes some.
    let (arrived, counts) = shaped(&lab, &cli, "loss=50%,seed=3", || send(&lab, 40));
    let through = arrived.iter().filter(|a| a.is_some()).count() as u64;
    assert!(through > 0 && through < 40, "{through} of 40 arrived");
    assert_eq!(counts["delivered"], through, "{counts}");

    // No shaper bound: the rule drops (a broken shaper cannot pass for a clean link).
    assert!(send(&lab, 5).iter().all(Option::is_none));
}
