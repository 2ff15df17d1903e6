//! A user-space PulseAudio for device tests: two null sinks, `vsink` (the default
//! speaker) and `vmic` (whose monitor is the default microphone). Stopped on drop, with
//! any helper processes (pacat, parec) registered through [`Pulse::own`].
//! Outside CI a machine without PulseAudio skips (returns `None` with a message); in CI
//! its absence is a failure, because `cargo xtask` installs it.

use std::process::Command;

use crate::process::Owned;

#[derive(Debug)]
pub struct Pulse {
    children: Vec<Owned>,
}

/// Runs `pactl` with `args`; panics (it is a test helper) if it fails.
pub fn pactl(args: &[&str]) {
    let status = Command::new("pactl")
        .args(args)
        .status()
        .expect("run pactl");
    assert!(status.success(), "pactl {args:?} failed");
}

impl Pulse {
    pub fn start() -> Option<Self> {
        if Command::new("pulseaudio")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must have pulseaudio (cargo xtask installs it)"
            );
            eprintln!("SKIPPED: pulseaudio is not installed");
            return None;
        }
        let _ = Command::new("pulseaudio").arg("--kill").status();
        let started = Command::new("pulseaudio")
            .args([
                "--start",
                "-n",
                "--exit-idle-time=-1",
                "-L",
                "module-native-protocol-unix",
                "-L",
                "module-null-sink sink_name=vsink",
                "-L",
                "module-null-sink sink_name=vmic",
            ])
            .status()
            .expect("run pulseaudio");
        assert!(started.success(), "pulseaudio --start failed");
        pactl(&["set-default-sink", "vsink"]);
        pactl(&["set-default-source", "vmic.monitor"]);
        Some(Self {
            children: Vec::new(),
        })
    }

    /// `pacat` playing 48 kHz mono s16le from its stdin into `device` (a sink, such as
    /// `vmic`), at real-time pace; owned by this daemon. Returns its stdin.
    pub fn play_into(&mut self, device: &str) -> std::process::ChildStdin {
        let mut pacat = Owned::spawn(
            Command::new("pacat")
                .args([
                    "--playback",
                    &format!("--device={device}"),
                    "--format=s16le",
                    "--rate=48000",
                    "--channels=1",
                    "--latency-msec=20",
                ])
                .stdin(std::process::Stdio::piped()),
        )
        .expect("run pacat");
        let stdin = pacat.child().stdin.take().expect("pacat stdin");
        self.own(pacat);
        stdin
    }

    /// A sine of `frequency_hz` at half scale (-9 dBFS RMS) played into `device` at
    /// real-time pace until the daemon stops: a "microphone" that is always talking.
    pub fn play_tone(&mut self, device: &str, frequency_hz: f64) {
        use std::io::Write;
        let mut feed = self.play_into(device);
        std::thread::spawn(move || {
            let step = std::f64::consts::TAU * frequency_hz / 48_000.0;
            let mut phase = 0.0f64;
            let mut bytes = Vec::with_capacity(9600);
            loop {
                bytes.clear();
                for _ in 0..4800 {
                    let sample = (0.5 * 32767.0 * phase.sin()) as i16;
                    bytes.extend_from_slice(&sample.to_le_bytes());
                    phase = (phase + step) % std::f64::consts::TAU;
                }
                if feed.write_all(&bytes).is_err() {
                    break; // pacat was stopped
                }
            }
        });
    }

    /// What a client with another HOME (an app under WebDriver) needs to reach this
    /// daemon: its socket (from `pactl info`) and its cookie.
    pub fn client_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        let info = Command::new("pactl")
            .arg("info")
            .env("LC_ALL", "C")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if let Some(server) = info.lines().find_map(|l| l.strip_prefix("Server String: ")) {
            env.push(("PULSE_SERVER".into(), server.trim().to_owned()));
        }
        if let Some(home) = std::env::var_os("HOME") {
            let cookie = std::path::Path::new(&home).join(".config/pulse/cookie");
            if cookie.is_file() {
                env.push(("PULSE_COOKIE".into(), cookie.display().to_string()));
            }
        }
        env
    }

    /// Keeps a helper process to be killed before the daemon stops.
    pub fn own(&mut self, child: Owned) {
        self.children.push(child);
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        self.children.clear(); // each is killed, with its group, as it drops
        let _ = Command::new("pulseaudio").arg("--kill").status();
    }
}
