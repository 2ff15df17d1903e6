//! coturn (Debian's `turnserver`) for tests, started the way `cargo xtask run` starts it:
//! `use-auth-secret` with a fresh `static-auth-secret`, so the server's TURN REST
//! credentials work against it. [`Coturn::start`] takes the whole configuration text
//! (see [`lab_config`] for the usual one, or deploy/turnserver.conf with its addresses
//! substituted) and a command that runs `turnserver` — directly, or inside a lab
//! namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::process::Owned;
use crate::tempdir::TempDir;

/// Where Debian installs coturn's server.
pub const TURNSERVER: &str = "/usr/bin/turnserver";

/// A running coturn, stopped (its process group killed) when dropped.
#[derive(Debug)]
pub struct Coturn {
    _process: Owned,
    /// The shared secret the server signs TURN credentials with.
    pub secret: String,
    /// Its log, for a failing test to show.
    pub log: PathBuf,
    _dir: TempDir,
}

/// Whether coturn is installed; `Err` says what to do.
pub fn available() -> anyhow::Result<()> {
    if Path::new(TURNSERVER).is_file() {
        Ok(())
    } else {
        bail!("coturn is not installed ({TURNSERVER}); `cargo xtask test` installs it")
    }
}

/// A fresh random secret (hex).
pub fn fresh_secret() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    if bytes == [0; 16] {
        // No /dev/urandom: time and pid still differ between runs.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes[..16].copy_from_slice(&(t ^ u128::from(std::process::id())).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A plain configuration: TURN and STUN over UDP and TCP on `listen:port`, relays on
/// `listen` (ports 49152–65535), REST credentials signed with `secret`, no TLS, no CLI.
/// `loopback_peers` lets it relay to 127.0.0.0/8 (calls between processes on one machine).
pub fn lab_config(listen: &str, port: u16, secret: &str, loopback_peers: bool) -> String {
    let mut text = format!(
        "listening-ip={listen}\nlistening-port={port}\nrelay-ip={listen}\n\
         min-port=49152\nmax-port=65535\n\
         use-auth-secret\nstatic-auth-secret={secret}\nrealm=chingu.test\n\
         fingerprint\nno-cli\nno-tls\nno-dtls\nno-multicast-peers\n"
    );
    if loopback_peers {
        text.push_str("allow-loopback-peers\n");
    }
    text
}

impl Coturn {
    /// Starts `turnserver` with `config` (the log and pid file go to a temporary
    /// directory; `secret` is what the configuration says). `turnserver` is the command
    /// to run it with (e.g. `Lab::command(ns, TURNSERVER)`), its arguments are added.
    /// Does not wait for it to listen: the caller knows where to look.
    pub fn start(mut turnserver: Command, config: &str, secret: &str) -> anyhow::Result<Self> {
        available()?;
        let dir = crate::tempdir().context("temp dir")?;
        let conf = dir.path().join("turnserver.conf");
        let log = dir.path().join("turnserver.log");
        let pid = dir.path().join("turnserver.pid");
        std::fs::write(
            &conf,
            format!(
                "{config}\nlog-file={}\nsimple-log\npidfile={}\n",
                log.display(),
                pid.display()
            ),
        )?;
        let process = Owned::spawn(
            turnserver
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .context("cannot start turnserver")?;
        Ok(Self {
            _process: process,
            secret: secret.to_owned(),
            log,
            _dir: dir,
        })
    }

    /// The end of coturn's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}
