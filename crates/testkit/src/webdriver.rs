//! A minimal W3C WebDriver client for driving the real app through `tauri-driver`
//! (which hands the session to WebKitWebDriver): sessions, elements, clicks, typing,
//! scripts and screenshots over plain HTTP/1.1 on loopback. Blocking, std only (plus
//! serde_json): tests call it from a blocking thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One HTTP exchange: `method path` with an optional JSON body; returns the JSON answer.
/// No `Connection: close`: tauri-driver forwards headers to WebKitWebDriver, which then
/// closes the connection tauri-driver pools, failing its next request. The answer is
/// read by its length and the connection dropped.
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    exchange(port, method, path, body).with_context(|| format!("WebDriver {method} {path}"))
}

fn exchange(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to the WebDriver on port {port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                length = value.parse::<usize>().ok();
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut raw = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .context("bad chunk size")?;
            if size == 0 {
                break;
            }
            let start = raw.len();
            raw.resize(start + size, 0);
            reader.read_exact(&mut raw[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(length) = length {
        raw.resize(length, 0);
        reader.read_exact(&mut raw)?;
    } else {
        reader.read_to_end(&mut raw)?;
    }
    let answer: Value = serde_json::from_slice(&raw)
        .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&raw)))?;
    if status >= 400 {
        bail!("HTTP {status}: {}", answer["value"]);
    }
    Ok(answer["value"].clone())
}

/// A program from `env`, else on PATH, else among the tools `cargo xtask` installs
/// (`~/.cache/chingu/tools/bin`).
pub fn tool(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let path = Path::new(&home).join(".cache/chingu/tools/bin").join(name);
        path.is_file().then_some(path)
    })
}

/// `n` distinct free loopback ports (all held until all are chosen, so none repeats).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let held = (0..n)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// A `tauri-driver` process for one app instance; killed (with the app) on drop.
#[derive(Debug)]
pub struct Driver {
    /// tauri-driver, and with it (its process group) WebKitWebDriver and the app.
    child: crate::process::Owned,
    pub port: u16,
}

impl Driver {
    /// Starts `driver` on `display` with its own profile: HOME and the XDG directories
    /// under `profile` (the driver's environment is the app's), its output in
    /// `profile/driver.log`. Returns once it accepts connections.
    pub fn start(driver: &Path, display: &str, profile: &Path) -> Result<Self> {
        Self::start_with(driver, display, profile, &[])
    }

    /// [`Driver::start`] with more variables in the app's environment (e.g. where its
    /// sound server is: [`crate::pulse::Pulse::client_env`]).
    pub fn start_with(
        driver: &Path,
        display: &str,
        profile: &Path,
        env: &[(String, String)],
    ) -> Result<Self> {
        let ports = free_ports(2)?;
        std::fs::create_dir_all(profile)?;
        let log = std::fs::File::create(profile.join("driver.log"))?;
        let child = crate::process::Owned::spawn(
            Command::new(driver)
                .args([
                    "--port",
                    &ports[0].to_string(),
                    "--native-port",
                    &ports[1].to_string(),
                ])
                .env("DISPLAY", display)
                .env("HOME", profile)
                .env("XDG_DATA_HOME", profile.join("data"))
                .env("XDG_CONFIG_HOME", profile.join("config"))
                .env("XDG_CACHE_HOME", profile.join("cache"))
                // The engine's own reasons (lost frames, keyframe requests) in the log a
                // failing test prints, unless the caller chose a filter.
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info,chingu_engine=debug".into()),
                )
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdout(log.try_clone()?)
                .stderr(log),
        )
        .with_context(|| format!("starting {}", driver.display()))?;
        let mut driver = Self {
            child,
            port: ports[0],
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", driver.port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("tauri-driver did not listen on {}", driver.port);
            }
            if let Ok(Some(status)) = driver.child.child().try_wait() {
                bail!("tauri-driver exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(driver)
    }
}

/// A WebDriver session (one app instance).
#[derive(Debug)]
pub struct Session {
    port: u16,
    id: String,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Session {
    /// Starts the app at `application` through the driver on `port`.
    pub fn start(port: u16, application: &str) -> Result<Self> {
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": { "tauri:options": { "application": application } }
            }
        });
        // tauri-driver listens before the native WebKitWebDriver it starts does: a session
        // asked for in that moment gets an empty answer ("client error (Connect)" in its
        // log). Ask again for a few seconds.
        let started = Instant::now();
        let value = loop {
            match request(port, "POST", "/session", Some(&capabilities)) {
                Ok(value) => break value,
                Err(e) if started.elapsed() < Duration::from_secs(10) => {
                    eprintln!("webdriver: no session yet ({e}); asking again");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => return Err(e),
            }
        };
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id in {value}"))?
            .to_owned();
        Ok(Self { port, id })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        request(
            self.port,
            method,
            &format!("/session/{}{path}", self.id),
            body.as_ref(),
        )
    }

    /// The first element matching a CSS selector, if any.
    pub fn find(&self, css: &str) -> Result<Option<Element>> {
        let found = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Ok(found
            .as_array()
            .and_then(|all| all.first())
            .and_then(|e| e[ELEMENT].as_str())
            .map(|id| Element(id.to_owned())))
    }

    /// Asks `probe` every 100 ms until it gives something, for up to `limit`; on
    /// timeout the error says `what` was awaited and what the page showed.
    fn poll<T>(
        &self,
        what: &str,
        limit: Duration,
        mut probe: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        loop {
            if let Some(found) = probe()? {
                return Ok(found);
            }
            if started.elapsed() > limit {
                bail!(
                    "{what}: not within {limit:?}; the page shows: {}",
                    self.text("body").unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `limit` for an element matching `css`.
    pub fn wait_for(&self, css: &str, limit: Duration) -> Result<Element> {
        self.poll(&format!("an element {css:?}"), limit, || self.find(css))
    }

    /// Waits up to `limit` until `script` (a function body returning a value) returns
    /// something truthy; returns it.
    pub fn wait_until(&self, what: &str, script: &str, limit: Duration) -> Result<Value> {
        self.poll(what, limit, || {
            let value = self.script(script)?;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            Ok(truthy.then_some(value))
        })
    }

    pub fn click(&self, element: &Element) -> Result<()> {
        self.call(
            "POST",
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        )?;
        Ok(())
    }

    /// Replaces the text of an input.
    pub fn fill(&self, element: &Element, text: &str) -> Result<()> {
        self.call(
            "POST",
            &format!("/element/{}/clear", element.0),
            Some(json!({})),
        )?;
        self.type_into(element, text)
    }

    /// Types into an element (WebDriver key codes allowed, e.g. "\u{E007}" for Enter).
    pub fn type_into(&self, element: &Element, text: &str) -> Result<()> {
        self.call(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(json!({"text": text})),
        )?;
        Ok(())
    }

    /// Runs `script` (a function body) in the page; returns what it returns.
    pub fn script(&self, script: &str) -> Result<Value> {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// The visible text of the first element matching `css` ("" if none).
    pub fn text(&self, css: &str) -> Result<String> {
        let css = serde_json::to_string(css)?;
        Ok(self
            .script(&format!(
                "const e = document.querySelector({css}); return e ? e.innerText : '';"
            ))?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// A PNG of the window, after letting the page paint what just changed.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        // Two animation frames: the DOM change is painted before the capture.
        self.script(
            "return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))));",
        )?;
        let encoded = self.call("GET", "/screenshot", None)?;
        decode_base64(encoded.as_str().unwrap_or_default())
    }

    /// Ends the session (the driver closes the app).
    pub fn close(self) -> Result<()> {
        request(self.port, "DELETE", &format!("/session/{}", self.id), None)?;
        Ok(())
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>> {
    let value = |c: u8| -> Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: {:?}", c as char),
        }
        .into())
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("a$==").is_err());
    }
}
