//! A deployment's shape on one machine: chingu-server behind a TLS-terminating proxy that
//! names each client with a PROXY header (what deploy/nginx/chingu.conf does), and two
//! chingu-cli processes calling each other through `wss://`, trusting the proxy's
//! certificate through the system's certificate store (`SSL_CERT_FILE`). The proxy here
//! is a few lines of tokio-rustls; the server trusts it (`trusted_proxies`).
//!
//! Needs openssl (to make the certificate) and chingu-cli built next to this test
//! (`cargo xtask test`, or CHINGU_BIN_DIR); skips with a message otherwise.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;

use chingu_testkit::process::Owned;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Accepts TLS on `listener`; for each connection, opens one to `server`, writes a
/// PROXY header naming `client_ip` and the client's port, and copies both ways.
async fn tls_proxy(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, server: SocketAddr) {
    loop {
        let Ok((tcp, from)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let Ok(mut upstream) = TcpStream::connect(server).await else {
                return;
            };
            // Every client is named 198.51.100.7, as if from the internet.
            let header = format!(
                "PROXY TCP4 198.51.100.7 {} {} {}\r\n",
                server.ip(),
                from.port(),
                server.port()
            );
            if upstream.write_all(header.as_bytes()).await.is_err() {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_call_through_wss_behind_a_proxy_that_names_them() {
    let Some(cli) = common::cli() else {
        eprintln!("SKIPPED: chingu-cli is not built next to the tests (run `cargo xtask test`)");
        return;
    };
    let dir = chingu_testkit::tempdir().expect("temp dir");
    let (cert, key) = match chingu_testkit::tls::certificate(dir.path(), "DNS:localhost") {
        Ok(files) => files,
        Err(why) => {
            eprintln!("SKIPPED: no certificate for the proxy: {why:#}");
            return;
        }
    };
    let server = chingu_server::start(chingu_server::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("data"),
        cooldown_s: 0,
        trusted_proxies: vec!["127.0.0.1".parse().expect("ip")],
        // Both clients come from the one address the proxy names.
        max_connections_per_ip: 2,
        ..chingu_server::Config::default()
    })
    .await
    .expect("server starts");

    let certs = CertificateDer::pem_file_iter(&cert)
        .expect("cert")
        .collect::<Result<Vec<_>, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_file(&key).expect("key");
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("tls config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(tls_proxy(
        listener,
        tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        server.local_addr(),
    ));

    let url = format!("wss://localhost:{port}/v1/ws");
    let peer = |args: &[&str]| {
        let mut cmd = Command::new(&cli);
        cmd.args(args)
            .args(["--server", &url, "--udp", "127.0.0.1:0"])
            .env("SSL_CERT_FILE", &cert)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    };
    let echo = Owned::spawn(
        peer(&["echo", "--calls", "1", "--nickname", "echo"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("echo starts");
    let mut bot = peer(&[
        "bot",
        "--json",
        "--nickname",
        "bot",
        "--duration",
        "1",
        "--wait",
        "15",
    ]);
    bot.args(["--width", "320", "--height", "240", "--chat", "over wss"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let bot = tokio::task::spawn_blocking(move || {
        Owned::spawn(&mut bot)
            .expect("bot starts")
            .output()
            .expect("bot output")
    })
    .await
    .expect("bot");
    drop(echo);
    let stdout = String::from_utf8_lossy(&bot.stdout);
    let summary: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary\n{}", String::from_utf8_lossy(&bot.stderr)));
    assert_eq!(
        summary["ok"],
        true,
        "{summary}\n{}",
        String::from_utf8_lossy(&bot.stderr)
    );
    assert_eq!(
        summary["chat_received"],
        serde_json::json!(["over wss"]),
        "{summary}"
    );
    server.shutdown();
    server.stopped().await;
}
