//! The Linux package: the .deb that `cargo xtask bundle` builds (`CHINGU_DEB`, set by
//! `cargo xtask test`, which builds a debug one) has the binary, icons and a valid
//! desktop entry, declares its libraries, and the installed binary starts and shows its
//! first screen under Xvfb (a screenshot, through WebDriver, goes to
//! `CHINGU_ARTIFACTS`). In CI, as root, it is installed with dpkg and removed
//! afterwards; otherwise it is extracted with dpkg-deb and run from there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chingu_testkit::webdriver::{Driver, Session, tool};
use chingu_testkit::xvfb::Xvfb;

const PACKAGE: &str = "chingu";

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    run("id", &["-u"]).is_ok_and(|uid| uid.trim() == "0")
}

/// Checks the desktop entry's keys (Desktop Entry Specification 1.5).
fn check_desktop_entry(text: &str) -> Result<()> {
    let mut lines = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    ensure!(
        lines.next() == Some("[Desktop Entry]"),
        "the desktop entry must start with [Desktop Entry]:\n{text}"
    );
    let entries: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once('=')).collect();
    let get = |key: &str| entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    ensure!(get("Type") == Some("Application"), "Type: {text}");
    ensure!(get("Name") == Some("Chingu"), "Name: {text}");
    ensure!(get("Exec") == Some(PACKAGE), "Exec: {text}");
    ensure!(get("Icon") == Some(PACKAGE), "Icon: {text}");
    ensure!(get("Terminal") == Some("false"), "Terminal: {text}");
    ensure!(
        get("Categories").is_some_and(|c| c.ends_with(';') && c.contains("Network")),
        "Categories: {text}"
    );
    Ok(())
}

/// Starts `binary` through tauri-driver under a private Xvfb with a fresh profile and
/// saves a screenshot of its first screen.
fn start_and_screenshot(binary: &Path, driver: &Path, shot: &Path) -> Result<()> {
    let x = Xvfb::start()?;
    let profile = chingu_testkit::tempdir()?;
    // Dropped (stopping the app) on every return.
    let driver = Driver::start(driver, &x.display, profile.path())?;
    let session = Session::start(driver.port, binary.to_str().context("path")?)?;
    // A first run starts at onboarding, with the camera preview live.
    session.wait_for("[data-screen=onboarding]", Duration::from_secs(60))?;
    session.wait_until(
        "the camera preview",
        "const c = document.querySelector('[data-testid=camera-preview]'); \
         return !!c && Number(c.dataset.frames || 0) > 5;",
        Duration::from_secs(60),
    )?;
    let png = session.screenshot()?;
    ensure!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(shot, png)?;
    session.close()
}

#[test]
fn the_deb_installs_and_starts() -> Result<()> {
    let (Some(deb), Some(driver)) = (
        std::env::var_os("CHINGU_DEB").map(PathBuf::from),
        tool("CHINGU_TAURI_DRIVER", "tauri-driver"),
    ) else {
        let why = "needs CHINGU_DEB (`cargo xtask test` builds the package) and tauri-driver";
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("SKIPPED: {why}");
        return Ok(());
    };
    // The control file: name, architecture, and the libraries the binary links.
    let control = run("dpkg-deb", &["-f", deb.to_str().context("path")?])?;
    for needed in [
        "Package: chingu",
        "Architecture: amd64",
        "libwebkit2gtk-4.1-0",
        "libasound2",
        "fonts-noto-cjk",
    ] {
        ensure!(
            control.contains(needed),
            "control lacks {needed:?}:\n{control}"
        );
    }
    let contents = run("dpkg-deb", &["-c", deb.to_str().context("path")?])?;
    let files: Vec<&str> = contents
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches("./"))
        .collect();
    for file in [
        "usr/bin/chingu",
        "usr/share/applications/Chingu.desktop",
        "usr/share/icons/hicolor/128x128/apps/chingu.png",
        "usr/share/icons/hicolor/32x32/apps/chingu.png",
    ] {
        ensure!(
            files.contains(&file),
            "the package lacks {file}:\n{contents}"
        );
    }

    let artifacts = std::env::var_os("CHINGU_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e"));
    std::fs::create_dir_all(&artifacts)?;
    let shot = artifacts.join("installed-deb.png");
    let install = std::env::var_os("CI").is_some() && is_root();
    if install {
        run("dpkg", &["-i", deb.to_str().context("path")?])?;
        let result = (|| -> Result<()> {
            let files = run("dpkg", &["-L", PACKAGE])?;
            ensure!(files.lines().any(|l| l == "/usr/bin/chingu"), "{files}");
            check_desktop_entry(&std::fs::read_to_string(
                "/usr/share/applications/Chingu.desktop",
            )?)?;
            start_and_screenshot(Path::new("/usr/bin/chingu"), &driver, &shot)
        })();
        let removed = run("dpkg", &["-r", PACKAGE]);
        result?;
        removed?;
        ensure!(
            !Path::new("/usr/bin/chingu").exists(),
            "dpkg -r left the binary"
        );
    } else {
        let root = chingu_testkit::tempdir()?;
        run(
            "dpkg-deb",
            &[
                "-x",
                deb.to_str().context("path")?,
                root.path().to_str().context("path")?,
            ],
        )?;
        check_desktop_entry(&std::fs::read_to_string(
            root.path().join("usr/share/applications/Chingu.desktop"),
        )?)?;
        start_and_screenshot(&root.path().join("usr/bin/chingu"), &driver, &shot)?;
    }
    eprintln!(
        "{} the package; screenshot at {}",
        if install {
            "installed and removed"
        } else {
            "extracted"
        },
        shot.display()
    );
    Ok(())
}

#[test]
fn desktop_entries_are_checked() {
    let good = "[Desktop Entry]\nCategories=Network;\nExec=chingu\nIcon=chingu\nName=Chingu\nTerminal=false\nType=Application\n";
    check_desktop_entry(good).expect("valid");
    assert!(check_desktop_entry(&good.replace("Exec=chingu", "Exec=other")).is_err());
    assert!(check_desktop_entry(&good.replace("[Desktop Entry]", "[Other]")).is_err());
    assert!(check_desktop_entry(&good.replace("Network;", "Network")).is_err());
}
