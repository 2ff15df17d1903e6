//! The real desktop app, end to end: two instances (separate profiles) under a private
//! Xvfb, each driven through `tauri-driver` and WebKitWebDriver, against a local server.
//! Onboarding → Match in both → both on the call screen → the remote video's pixels
//! change over time → a chat message arrives → Next (both meet again: the test server
//! has no rematch cooldown) → both press Add friend → hang up → the after-call screen,
//! where the call is rated → each sees the other online in the lobby → alice rings bob,
//! who accepts → a call with video both ways → hang up → alice removes bob: both lists
//! empty, bob's call refused. Each step's screenshot is written to `CHINGU_ARTIFACTS` (default: `<target tmp>/e2e`).
//!
//! Needs the app built with its UI (`CHINGU_APP`, set by `cargo xtask test`), and
//! `tauri-driver`, `WebKitWebDriver` and `Xvfb` (installed by `cargo xtask`). Outside CI
//! a machine without them skips with a message; in CI their absence is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chingu_testkit::webdriver::{Driver, Session, tool};
use chingu_testkit::xvfb::Xvfb;

const WAIT: Duration = Duration::from_secs(60);
const ENTER: &str = "\u{E007}";

fn prerequisites() -> Option<(PathBuf, PathBuf)> {
    let app = std::env::var_os("CHINGU_APP").map(PathBuf::from);
    let driver = tool("CHINGU_TAURI_DRIVER", "tauri-driver");
    let webkit = tool("CHINGU_WEBKIT_DRIVER", "WebKitWebDriver");
    let xvfb = tool("CHINGU_XVFB", "Xvfb");
    match (app, driver, webkit, xvfb) {
        (Some(app), Some(driver), Some(_), Some(_)) if app.is_file() => Some((app, driver)),
        missing => {
            let why = format!(
                "needs CHINGU_APP (the app built with its UI: `cargo xtask test` sets it), \
                 tauri-driver, WebKitWebDriver and Xvfb; found {missing:?}"
            );
            assert!(std::env::var_os("CI").is_none(), "{why}");
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

fn artifacts_dir() -> PathBuf {
    std::env::var_os("CHINGU_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e"))
}

struct App {
    name: &'static str,
    session: Session,
    artifacts: PathBuf,
}

impl App {
    fn shot(&self, step: &str) -> Result<()> {
        let png = self.session.screenshot()?;
        ensure!(
            png.starts_with(b"\x89PNG"),
            "{step}: the screenshot is not a PNG"
        );
        let path = self.artifacts.join(format!("{step}-{}.png", self.name));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))
    }

    fn wait(&self, css: &str) -> Result<chingu_testkit::webdriver::Element> {
        self.session
            .wait_for(css, WAIT)
            .with_context(|| format!("{}: waiting for {css}", self.name))
    }

    /// Waits until the remote video canvas has drawn more than `frames` frames.
    fn wait_for_video(&self, frames: u32) -> Result<()> {
        self.session
            .wait_until(
                &format!("{}: remote video frames", self.name),
                &format!(
                    "const c = document.querySelector('[data-testid=remote-video]'); \
                     return !!c && Number(c.dataset.frames || 0) > {frames};"
                ),
                WAIT,
            )
            .map(drop)
    }

    /// Prints what the page knows about its video streams (frames drawn, the
    /// connection's state, the last sequence number), for a failing test's output.
    fn print_page_state(&self) {
        let state = self.session.script(
            "return [...document.querySelectorAll('canvas')].map(c => \
               ({ testid: c.dataset.testid, ...c.dataset, width: c.width, height: c.height }));",
        );
        eprintln!("--- {}'s video canvases: {state:?}", self.name);
    }

    /// A small fingerprint of the remote video's pixels: (hash, brightness sum).
    fn remote_pixels(&self) -> Result<(u64, u64)> {
        let value = self.session.script(
            "const c = document.querySelector('[data-testid=remote-video]'); \
             const t = document.createElement('canvas'); t.width = 64; t.height = 36; \
             const g = t.getContext('2d'); g.drawImage(c, 0, 0, 64, 36); \
             const d = g.getImageData(0, 0, 64, 36).data; let h = 0, sum = 0; \
             for (let i = 0; i < d.length; i++) { h = (h * 31 + d[i]) >>> 0; } \
             for (let i = 0; i < d.length; i += 4) { sum += d[i] + d[i + 1] + d[i + 2]; } \
             return [h, sum];",
        )?;
        let at = |i: usize| value[i].as_u64().unwrap_or(0);
        Ok((at(0), at(1)))
    }
}

fn onboard(app: &App, server_url: &str, screenshot: bool) -> Result<()> {
    let nickname = app.wait("[data-screen=onboarding] [data-testid=nickname]")?;
    // The camera preview (the test pattern: no camera here) is live before saving.
    app.session.wait_until(
        "onboarding camera preview",
        "const c = document.querySelector('[data-testid=camera-preview]'); \
         return !!c && Number(c.dataset.frames || 0) > 5;",
        WAIT,
    )?;
    app.session.fill(&nickname, app.name)?;
    // Languages by name, stored as codes: Korean found by typing, added with Enter
    // (the system's language is already chosen); an interest by a tap.
    app.session.type_into(
        &app.wait("[data-testid=language-search]")?,
        &format!("ko{ENTER}"),
    )?;
    app.wait("[data-testid=languages] li[data-code=ko]")?;
    app.session
        .click(&app.wait("[data-testid=interests] [data-interest=music]")?)?;
    app.wait("[data-testid=interests] [data-interest=music][aria-pressed=true]")?;
    // Everything else waits under More settings (closed on a first run); the server
    // address under Advanced there, with a test that says what it found.
    if screenshot {
        app.shot("1-first-run")?;
    }
    app.session
        .click(&app.wait("[data-testid=more-settings] summary")?)?;
    app.session
        .click(&app.wait("[data-testid=advanced] summary")?)?;
    let server = app.wait("[data-testid=server-url]")?;
    app.session.fill(&server, server_url)?;
    app.session.click(&app.wait("[data-testid=test-server]")?)?;
    app.session.wait_until(
        "the server test says reachable",
        "return /Reachable|연결됨/.test(document.querySelector('[data-testid=probe-says]')?.innerText ?? '');",
        WAIT,
    )?;
    // The privacy setting says in one sentence what each choice reveals.
    let says = || app.session.text("[data-testid=relay-only-says]");
    let direct = says()?;
    app.session.click(&app.wait("[data-testid=relay-only]")?)?;
    let hidden = says()?;
    ensure!(
        !direct.is_empty() && !hidden.is_empty() && direct != hidden,
        "the Hide-my-IP sentence changes with the setting: {direct:?} / {hidden:?}"
    );
    if screenshot {
        app.shot("1-onboarding-hide-my-ip")?;
    }
    app.session.click(&app.wait("[data-testid=relay-only]")?)?;
    // Echo cancellation is on by default; turned off, the screen says what that costs.
    ensure!(
        app.session.text("[data-testid=echo-off-says]")?.is_empty(),
        "no warning while echo cancellation is on"
    );
    app.session
        .click(&app.wait("[data-testid=echo-cancellation]")?)?;
    let warning = app.session.text("[data-testid=echo-off-says]")?;
    ensure!(
        !warning.is_empty(),
        "turning echo cancellation off says why not to"
    );
    app.session
        .click(&app.wait("[data-testid=echo-cancellation]")?)?;
    if screenshot {
        app.shot("1-onboarding")?;
        // The identity that friends know this install by, as a phrase to carry along.
        app.session
            .click(&app.wait("[data-testid=identity] summary")?)?;
        app.session.click(&app.wait("[data-testid=show-phrase]")?)?;
        app.wait("[data-testid=phrase]")?;
        let phrase = app.session.text("[data-testid=phrase]")?;
        ensure!(
            phrase.len() == 39
                && phrase
                    .split('-')
                    .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit())),
            "a recovery phrase is eight groups of four hex digits: {phrase:?}"
        );
        app.shot("1-onboarding-identity")?;
    }
    app.session.click(&app.wait("[data-testid=save]")?)?;
    app.wait("[data-screen=lobby]")?;
    // Settings keep the choices: reopened, Korean and music are still chosen.
    if screenshot {
        app.session.click(&app.wait("[data-testid=settings]")?)?;
        app.wait("[data-testid=languages] li[data-code=ko]")?;
        app.wait("[data-testid=interests] [data-interest=music][aria-pressed=true]")?;
        app.session.click(&app.wait("[data-testid=save]")?)?;
        app.wait("[data-screen=lobby]")?;
    }
    Ok(())
}

fn scenario(app: &Path, driver: &Path, server_url: &str, artifacts: &Path) -> Result<()> {
    let x = Xvfb::start()?;
    // A microphone and speakers for the apps (the microphone test), from a user-space
    // PulseAudio; its microphone plays a tone.
    let mut pulse = chingu_testkit::pulse::Pulse::start();
    if let Some(pulse) = pulse.as_mut() {
        pulse.play_tone("vmic", 440.0);
    }
    let sound = pulse.as_ref().map(|p| p.client_env()).unwrap_or_default();
    let profiles = chingu_testkit::tempdir()?;
    let drivers = [
        Driver::start_with(driver, &x.display, &profiles.path().join("alice"), &sound)?,
        Driver::start_with(driver, &x.display, &profiles.path().join("bob"), &sound)?,
    ];
    let app_path = app.to_str().context("app path is not UTF-8")?;
    let result = (|| -> Result<()> {
        let alice = App {
            name: "alice",
            session: Session::start(drivers[0].port, app_path)?,
            artifacts: artifacts.to_owned(),
        };
        let bob = App {
            name: "bob",
            session: Session::start(drivers[1].port, app_path)?,
            artifacts: artifacts.to_owned(),
        };
        if let Err(e) = call_steps(&alice, &bob, server_url, pulse.is_some()) {
            for app in [&alice, &bob] {
                app.print_page_state();
                let _ = app.shot("failed");
            }
            return Err(e);
        }
        alice.session.close()?;
        bob.session.close()?;
        Ok(())
    })();
    drop(drivers);
    for name in ["alice", "bob"] {
        keep_log(&profiles.path().join(name), name, artifacts);
        if result.is_err() {
            print_log(&profiles.path().join(name), name);
        }
    }
    result
}

/// Copies an app's driver and app log next to the screenshots.
fn keep_log(profile: &Path, name: &str, artifacts: &Path) {
    let _ = std::fs::copy(
        profile.join("driver.log"),
        artifacts.join(format!("{name}-driver.log")),
    );
}

/// The scenario's steps, from onboarding to the after-call screen.
/// "Test my microphone" in the real app: three seconds recorded from the (PulseAudio)
/// microphone, which plays a tone, then played back; the screen follows each step.
fn test_microphone(app: &App) -> Result<()> {
    let says = || app.session.text("[data-testid=mic-test-says]");
    let idle = says()?;
    // The button waits for the device check to run.
    app.session.wait_until(
        "the microphone test can start",
        "const b = document.querySelector('[data-testid=mic-test]'); return !!b && !b.disabled;",
        WAIT,
    )?;
    app.session.click(&app.wait("[data-testid=mic-test]")?)?;
    app.session.wait_until(
        "microphone test recording",
        &format!(
            "return document.querySelector('[data-testid=mic-test-says]')?.innerText !== {};",
            serde_json::to_string(&idle)?
        ),
        WAIT,
    )?;
    let recording = says()?;
    app.session.wait_until(
        "microphone test played back",
        &format!(
            "return ![{}, {}].includes(document.querySelector('[data-testid=mic-test-says]')?.innerText);",
            serde_json::to_string(&idle)?,
            serde_json::to_string(&recording)?
        ),
        WAIT,
    )?;
    app.shot("1-onboarding-mic-test")?;
    // Playing, then done: anything but a failure (the microphone and speaker exist).
    let failed = "return /could not run|할 수 없어요/.test(document.querySelector('[data-testid=mic-test-says]')?.innerText ?? '');";
    app.session.wait_until(
        "microphone test done",
        "return !document.querySelector('[data-testid=mic-test]')?.disabled;",
        WAIT,
    )?;
    let done = says()?;
    ensure!(
        !app.session.script(failed)?.as_bool().unwrap_or(true),
        "the microphone test failed: {done:?}"
    );
    ensure!(
        done != recording && done != idle,
        "the test ended where it began: {idle:?} / {recording:?} / {done:?}"
    );
    Ok(())
}

fn call_steps(alice: &App, bob: &App, server_url: &str, devices: bool) -> Result<()> {
    if devices {
        test_microphone(alice)?;
    }
    onboard(alice, server_url, true)?;
    onboard(bob, server_url, false)?;
    // The lobby shows the server's count once connected.
    alice.session.wait_until(
        "online count",
        "return /2/.test(document.querySelector('[data-screen=lobby]')?.innerText ?? '');",
        WAIT,
    )?;
    alice.shot("2-lobby")?;

    // Alice searches alone first (the searching screen), then bob.
    alice.session.click(&alice.wait("[data-testid=match]")?)?;
    alice.wait("[data-screen=searching]")?;
    alice.shot("3-searching")?;
    bob.session.click(&bob.wait("[data-testid=match]")?)?;
    for app in [&alice, &bob] {
        app.wait("[data-screen=call]")?;
        app.wait_for_video(10)?;
    }
    // The pattern moves: the remote picture is not blank and changes over time.
    let first = alice.remote_pixels()?;
    std::thread::sleep(Duration::from_millis(700));
    let later = alice.remote_pixels()?;
    ensure!(
        first.1 > 64 * 36 * 30,
        "the remote video is (nearly) black: {first:?}"
    );
    ensure!(
        first.0 != later.0,
        "the remote video did not change in 700 ms: {first:?} then {later:?}"
    );
    let bob_pixels = (bob.remote_pixels()?, {
        std::thread::sleep(Duration::from_millis(700));
        bob.remote_pixels()?
    });
    ensure!(
        bob_pixels.0.0 != bob_pixels.1.0,
        "bob's remote video did not change: {bob_pixels:?}"
    );
    // The call says which way it goes: over loopback, directly.
    alice.session.wait_until(
            "the call path is shown",
            "return document.querySelector('[data-testid=call-path]')?.classList.contains('relayed') === false;",
            WAIT,
        )?;
    // What each chose reached the other through the server as codes, shown by name.
    bob.session.wait_until(
        "bob sees alice's languages and their shared interest",
        "const t = document.querySelector('[data-testid=peer-about]')?.innerText ?? ''; \
         return t.includes('한국어') && /Music|음악/.test(t);",
        WAIT,
    )?;
    alice.shot("4-call")?;
    bob.shot("4-call")?;

    // Chat, Korean included.
    let text = "안녕하세요 from alice";
    alice.session.type_into(
        &alice.wait("[data-testid=chat-input]")?,
        &format!("{text}{ENTER}"),
    )?;
    bob.session.wait_until(
            "bob receives the chat message",
            &format!(
                "return [...document.querySelectorAll('.chat li')].some(li => li.innerText.includes({}));",
                serde_json::to_string(text)?
            ),
            WAIT,
        )?;
    bob.shot("5-chat")?;

    // Bob reports alice from the call screen; the call goes on.
    bob.session.click(&bob.wait("[data-testid=report]")?)?;
    bob.session.click(&bob.wait("[data-testid=report-send]")?)?;
    bob.session.wait_until(
        "bob's report is confirmed",
        "return !!document.querySelector('[data-screen=call] .reported');",
        WAIT,
    )?;

    // Next: alice leaves for someone new; bob's app searches again by itself; with no
    // rematch cooldown on the test server they meet again, in a new call.
    for app in [&alice, &bob] {
        app.session.script(
                "window.__oldVideo = document.querySelector('[data-testid=remote-video]'); return true;",
            )?;
    }
    alice.session.click(&alice.wait("[data-testid=next]")?)?;
    for app in [&alice, &bob] {
        app.session.wait_until(
            &format!("{}: a new call after Next", app.name),
            "const c = document.querySelector('[data-screen=call] [data-testid=remote-video]'); \
                 return !!c && c !== window.__oldVideo && Number(c.dataset.frames || 0) > 10;",
            WAIT,
        )?;
    }
    alice.shot("6-next-call")?;

    // 친구하자: both press Add friend; each call screen then says they are friends.
    alice
        .session
        .click(&alice.wait("[data-testid=add-friend]")?)?;
    alice.wait("[data-testid=add-friend][aria-pressed=true]")?;
    bob.session.click(&bob.wait("[data-testid=add-friend]")?)?;
    for app in [&alice, &bob] {
        app.wait("[data-screen=call] [data-testid=friends-already]")?;
    }
    bob.shot("6-friends-now")?;

    alice.session.click(&alice.wait("[data-testid=hang-up]")?)?;
    alice.wait("[data-screen=after]")?;
    // Rating the call: the star stays chosen once the engine has sent it.
    alice.session.click(&alice.wait("[data-testid=rate-4]")?)?;
    alice.wait("[data-testid=rate-4][aria-checked=true]")?;
    alice.shot("7-after-call")?;
    friend_steps(alice, bob)
}

/// Friends after the random call: each sees the other online in the lobby; alice rings,
/// bob accepts; a call with video both ways; hang up; alice removes bob: both lists are
/// empty, and bob's call to the old friendship is refused.
fn friend_steps(alice: &App, bob: &App) -> Result<()> {
    alice
        .session
        .click(&alice.wait("[data-testid=back-to-lobby]")?)?;
    // Bob's app searched again by itself when alice left the random call.
    bob.session
        .click(&bob.wait("[data-testid=cancel-search]")?)?;
    for app in [alice, bob] {
        app.wait("[data-screen=lobby] [data-testid=friend][data-presence=online]")?;
    }
    alice.shot("8-lobby-friends")?;
    let friend_id = alice
        .session
        .script("return document.querySelector('[data-testid=friend]').dataset.friendId;")?;
    let friend_id = friend_id.as_str().context("the friend's id")?.to_owned();

    alice
        .session
        .click(&alice.wait("[data-testid=call-friend]")?)?;
    alice.wait("[data-testid=ringing]")?;
    bob.wait("[data-testid=incoming-call]")?;
    alice.shot("9-ringing")?;
    bob.shot("9-incoming-call")?;
    bob.session.click(&bob.wait("[data-testid=accept-call]")?)?;
    for app in [alice, bob] {
        app.wait("[data-screen=call] [data-testid=friends-already]")?;
        app.session.wait_until(
            &format!("{}: video in the friends' call", app.name),
            "const c = document.querySelector('[data-screen=call] [data-testid=remote-video]'); \
             return !!c && Number(c.dataset.frames || 0) > 10;",
            WAIT,
        )?;
    }
    bob.shot("10-friends-call")?;
    alice.session.click(&alice.wait("[data-testid=hang-up]")?)?;
    for app in [alice, bob] {
        // A call with a friend ends there: no search for a stranger.
        app.wait("[data-screen=after]")?;
        app.session
            .click(&app.wait("[data-testid=back-to-lobby]")?)?;
        app.wait("[data-screen=lobby] [data-testid=friend]")?;
    }

    alice
        .session
        .click(&alice.wait("[data-testid=friend] summary")?)?;
    alice
        .session
        .click(&alice.wait("[data-testid=remove-friend]")?)?;
    for app in [alice, bob] {
        app.wait("[data-screen=lobby] [data-testid=no-friends]")?;
    }
    // Bob (say, a stale window) rings the friendship that is gone: the server refuses,
    // and the lobby says so.
    bob.session.script(&format!(
        "window.__TAURI_INTERNALS__.invoke('call_friend', {{ friend: {} }}); return true;",
        serde_json::to_string(&friend_id)?
    ))?;
    bob.session.wait_until(
        "bob's call to an ex-friend is refused",
        "return /no longer your friend|더 이상 친구가 아니에요/.test(document.querySelector('[data-screen=lobby]')?.innerText ?? '');",
        WAIT,
    )?;
    bob.shot("11-unfriended")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_match_see_each_other_chat_move_on_and_hang_up() {
    let Some((app, driver)) = prerequisites() else {
        return;
    };
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = common::server(dir.path()).await;
    let url = server.ws_url();
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shots = artifacts.clone();
    tokio::task::spawn_blocking(move || scenario(&app, &driver, &url, &shots))
        .await
        .expect("the scenario thread")
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("screenshots in {}", artifacts.display());
}

/// One app calls a bot whose uplink is capped at 250 kbit/s (its packets cross the
/// network simulator): the bot's congestion control comes down, it tells the app, the
/// call screen says that the other person's connection limits the picture, and the
/// picture keeps coming.
fn slow_peer_scenario(
    app: &Path,
    driver: &Path,
    cli: &Path,
    server_url: &str,
    artifacts: &Path,
) -> Result<()> {
    let x = Xvfb::start()?;
    let profiles = chingu_testkit::tempdir()?;
    let drivers = [Driver::start(
        driver,
        &x.display,
        &profiles.path().join("carol"),
    )?];
    let app_path = app.to_str().context("app path is not UTF-8")?;
    let _bot = chingu_testkit::process::Owned::spawn(
        std::process::Command::new(cli)
            .args(["bot", "--server", server_url, "--udp", "127.0.0.1:0"])
            .args(["--nickname", "slowpoke", "--net", "up.rate=250k"])
            .args(["--duration", "60", "--wait", "90", "--json"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )?;
    let result = (|| -> Result<()> {
        let carol = App {
            name: "carol",
            session: Session::start(drivers[0].port, app_path)?,
            artifacts: artifacts.to_owned(),
        };
        onboard(&carol, server_url, false)?;
        carol.session.click(&carol.wait("[data-testid=match]")?)?;
        carol.wait("[data-screen=call]")?;
        carol.session.wait_until(
            "the call screen names the slow connection",
            "const n = document.querySelector('[data-testid=limited-by]'); \
             return !!n && n.innerText.includes('slowpoke');",
            WAIT,
        )?;
        // The picture keeps coming at this rate (smaller and slower): more than 30 frames,
        // and it changes.
        carol.wait_for_video(30)?;
        let first = carol.remote_pixels()?;
        std::thread::sleep(Duration::from_millis(1500));
        let later = carol.remote_pixels()?;
        ensure!(
            first.0 != later.0,
            "the slow peer's picture did not change in 1.5 s: {first:?} then {later:?}"
        );
        carol.shot("8-limited-by-peer")?;
        carol.session.click(&carol.wait("[data-testid=hang-up]")?)?;
        carol.wait("[data-screen=after]")?;
        carol.session.close()?;
        Ok(())
    })();
    if result.is_err() {
        print_log(&profiles.path().join("carol"), "carol");
    }
    drop(drivers);
    result
}

/// The last lines of an app's driver and app log, newest first.
fn print_log(profile: &Path, name: &str) {
    if let Ok(text) = std::fs::read_to_string(profile.join("driver.log")) {
        // ALSA's complaints about the missing sound card, and OpenH264's about its rate
        // control options, are noise here.
        let tail: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("ALSA lib") && !l.starts_with("[OpenH264]"))
            .rev()
            .take(60)
            .collect();
        eprintln!("--- {name}'s driver and app log (last lines, newest first):");
        for line in tail {
            eprintln!("{line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_a_peer_on_a_slow_uplink_says_whose_connection_limits_it() {
    let Some((app, driver)) = prerequisites() else {
        return;
    };
    let Some(cli) = common::cli() else {
        let why = "needs chingu-cli beside the tests (cargo xtask test builds it)";
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    };
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let server = common::server(dir.path()).await;
    let url = server.ws_url();
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    tokio::task::spawn_blocking(move || slow_peer_scenario(&app, &driver, &cli, &url, &artifacts))
        .await
        .expect("the scenario thread")
        .unwrap_or_else(|e| panic!("{e:#}"));
}
