//! Installs what building and testing need, or says exactly what is missing.
//!
//! On Debian and Ubuntu, missing system packages are installed with apt-get (through
//! `sudo -n` when not root). Elsewhere nothing is installed; the missing pieces are
//! listed. Cargo tools are installed pinned, with `--locked`.

use std::process::{Command, Stdio};

use crate::{Result, step};

/// Debian packages needed to build and test. `build-essential` provides the C and C++
/// compilers (bundled SQLite, openh264); `pkg-config` is what -sys crates look libraries
/// up with; `cmake` builds the bundled libopus; `nasm` gives openh264 its SIMD (without it
/// the build succeeds silently and encodes several times slower); `libasound2-dev` is
/// ALSA for cpal; `libclang-dev` lets nokhwa generate its V4L2 bindings;
/// `libwebkit2gtk-4.1-dev` is the webview (and GTK) the desktop app is built on. The
/// PulseAudio packages give the device tests real, paced virtual microphones and
/// speakers on machines without a sound card. The app's end-to-end tests run it under
/// `xvfb` (with `xauth`), driven through `webkit2gtk-driver` (WebKitWebDriver);
/// `fonts-noto-cjk` renders Korean. `iptables` and `iproute2` build the network lab
/// (namespaces, NAT routers, a firewall). `coturn` is the project's TURN/STUN relay:
/// `cargo xtask run` starts it beside chingu-server, and the lab tests relay through it.
/// `espeak-ng` speaks the two talkers of the audio processing's room simulation
/// (`chingu-cli audio-bench` and its tests): speech made here, nothing downloaded.
/// `libdbus-1-dev` is the app's notification path (and the windowing library's);
/// `dbus-daemon` hosts the private session bus its test notifies on.
const APT_PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "cmake",
    "nasm",
    "libasound2-dev",
    "libclang-dev",
    "libwebkit2gtk-4.1-dev",
    "pulseaudio",
    "pulseaudio-utils",
    "libasound2-plugins",
    "xvfb",
    "xauth",
    "webkit2gtk-driver",
    "fonts-noto-cjk",
    "iptables",
    "iproute2",
    "coturn",
    "espeak-ng",
    "libdbus-1-dev",
    "dbus-daemon",
];

/// Debian packages only `cargo xtask bench` needs: `chromium` is the libwebrtc yardstick
/// `chingu-cli beside` runs in the same network conditions as Chingu.
const BENCH_APT_PACKAGES: &[&str] = &["chromium"];

/// Commands that must exist where apt-get does not, with what provides them.
const REQUIRED_COMMANDS: &[(&str, &str)] = &[
    ("cc", "a C compiler (gcc or clang)"),
    ("c++", "a C++ compiler"),
    ("cmake", "CMake"),
    ("nasm", "the NASM assembler"),
    ("pkg-config", "pkg-config and the ALSA headers"),
];

const NEXTEST_VERSION: &str = "0.9.143";
/// The WebDriver bridge for Tauri apps, installed under `~/.cache/chingu/tools`.
const TAURI_DRIVER_VERSION: &str = "2.0.6";

/// The UI's toolchain (Vite 7) needs Node 20.19 or newer.
const NODE_MIN: (u32, u32) = (20, 19);

/// Checks that Node.js and npm are present and new enough. Debian's own `nodejs` (18)
/// is too old for the UI's build tools, so this does not install it: it says what to do.
pub fn node() -> Result {
    let out = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|_| "Node.js is missing: install Node.js 20.19 or newer (with npm)".to_string())?;
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version.trim().trim_start_matches('v').split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) < NODE_MIN {
        return Err(format!(
            "Node.js {} is too old: the UI needs {}.{} or newer",
            version.trim(),
            NODE_MIN.0,
            NODE_MIN.1
        ));
    }
    if !has_command("npm") {
        return Err("npm is missing: install it with Node.js".into());
    }
    Ok(())
}

/// Makes sure everything is present. Returns whether cargo-nextest is usable
/// (when `want_nextest`).
pub fn ensure_all(want_nextest: bool) -> Result<bool> {
    system_packages(APT_PACKAGES)?;
    if want_nextest {
        return Ok(nextest());
    }
    Ok(false)
}

/// What the benchmarks need beyond [`ensure_all`]'s (Chromium). Elsewhere than Debian,
/// says what is missing.
pub fn ensure_bench() -> Result {
    system_packages(APT_PACKAGES)?;
    if has_command("dpkg-query") {
        return system_packages(BENCH_APT_PACKAGES);
    }
    if has_command("chromium") || has_command("chromium-browser") {
        return Ok(());
    }
    Err("the libwebrtc yardstick needs Chromium: install it (chromium)".into())
}

fn system_packages(packages: &[&str]) -> Result {
    if !has_command("dpkg-query") || !has_command("apt-get") {
        let missing: Vec<String> = REQUIRED_COMMANDS
            .iter()
            .filter(|(cmd, _)| !has_command(cmd))
            .map(|(cmd, what)| format!("{cmd} ({what})"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        return Err(format!(
            "this is not a Debian-like system, so nothing was installed. Missing: {}",
            missing.join(", ")
        ));
    }
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|pkg| !dpkg_installed(pkg))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let root = is_root();
    if !root && !has_command("sudo") {
        return Err(format!(
            "missing Debian packages: {}. Install them as root: apt-get install {}",
            missing.join(" "),
            missing.join(" ")
        ));
    }
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    step("apt-get update", &mut apt(&["update", "-q"]))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    step(&format!("installing {}", missing.join(" ")), &mut install)
}

fn nextest() -> bool {
    let installed = Command::new("cargo")
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        return true;
    }
    let result = step(
        &format!("installing cargo-nextest {NEXTEST_VERSION}"),
        Command::new("cargo").args([
            "install",
            "--locked",
            "cargo-nextest",
            "--version",
            NEXTEST_VERSION,
        ]),
    );
    if let Err(err) = result {
        eprintln!("xtask: {err}; falling back to cargo test");
        return false;
    }
    true
}

/// Installs `tauri-driver` (pinned) where the tests look for it, unless it is there;
/// returns its path.
pub fn tauri_driver() -> Result<std::path::PathBuf> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let root = std::path::Path::new(&home).join(".cache/chingu/tools");
    let binary = root.join("bin/tauri-driver");
    // cargo install records what it installed; reinstall when the pin changes.
    let recorded = std::fs::read_to_string(root.join(".crates.toml")).unwrap_or_default();
    if binary.is_file() && recorded.contains(&format!("tauri-driver {TAURI_DRIVER_VERSION} ")) {
        return Ok(binary);
    }
    step(
        &format!("installing tauri-driver {TAURI_DRIVER_VERSION}"),
        Command::new("cargo")
            .args([
                "install",
                "--locked",
                "tauri-driver",
                "--version",
                TAURI_DRIVER_VERSION,
                "--root",
            ])
            .arg(&root),
    )?;
    Ok(binary)
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

pub fn has_command(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}
