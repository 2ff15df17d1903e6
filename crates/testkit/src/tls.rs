//! A throwaway TLS certificate for tests (a TLS proxy, coturn's TLS listener), made with
//! the `openssl` command: self-signed, valid for a day, not a CA (so rustls accepts it as
//! a server certificate when it is also the trusted root, through `SSL_CERT_FILE`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, ensure};

/// Writes `cert.pem` and `key.pem` into `dir` for `subject_alt_name` (`DNS:localhost`,
/// `IP:203.0.113.1`); returns their paths.
pub fn certificate(dir: &Path, subject_alt_name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=chingu-test"])
        .args(["-addext", &format!("subjectAltName={subject_alt_name}")])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .context("cannot run openssl")?;
    ensure!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok((cert, key))
}
