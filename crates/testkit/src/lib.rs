//! Test-only helpers: a protocol client over a real WebSocket with timeouts on every
//! wait, a bare HTTP GET, a user-space PulseAudio ([`pulse`]), a private X server
//! ([`xvfb`]), a WebDriver client for the real app ([`webdriver`]), temporary
//! directories ([`tempdir`]) and child processes that die with the test ([`process`]). Used by the
//! integration tests and the end-to-end scenarios; never by shipped code.

pub mod coturn;
pub mod netlab;
pub mod process;
pub mod pulse;
pub mod tempdir;
pub mod tls;
pub mod webdriver;
pub mod xvfb;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use chingu_proto::{
    CallId, ClientMessage, ErrorCode, PROTOCOL_VERSION, Role, ServerMessage, decode_server, encode,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use tempdir::{TempDir, tempdir};
/// A raw WebSocket frame, for tests that send what the protocol does not.
pub use tokio_tungstenite::tungstenite::Message as Frame;

/// How long any single wait may take before the test fails. A guard against hangs, not a
/// performance bound: healthy waits here take milliseconds.
pub const WAIT: Duration = Duration::from_secs(10);

/// A protocol client for tests.
#[derive(Debug)]
pub struct TestClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The device id sent in hello.
    pub device_id: String,
}

/// What a `matched` message said.
#[derive(Debug, Clone)]
pub struct Matched {
    pub call_id: CallId,
    pub role: Role,
    pub peer: chingu_proto::PeerProfile,
    /// Set for a call with a friend who was rung.
    pub friend: Option<chingu_proto::FriendId>,
}

impl TestClient {
    /// Opens the WebSocket without saying hello.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .context("connect timed out")?
            .with_context(|| format!("connect to {url}"))?;
        Ok(Self {
            ws,
            device_id: String::new(),
        })
    }

    /// Opens the WebSocket from a chosen local address (any of 127.0.0.0/8 on loopback),
    /// without saying hello: to look like another machine to the server.
    pub async fn connect_from(url: &str, source: std::net::IpAddr) -> anyhow::Result<Self> {
        let host = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .context("a ws:// url")?;
        let server: SocketAddr = host.parse().context("a numeric host:port")?;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = tokio::time::timeout(WAIT, socket.connect(server))
            .await
            .context("connect timed out")??;
        let (ws, _) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream)),
        )
        .await
        .context("handshake timed out")?
        .with_context(|| format!("connect to {url} from {source}"))?;
        Ok(Self {
            ws,
            device_id: String::new(),
        })
    }

    /// Says hello as device `name` on an open connection.
    pub async fn say_hello(mut self, name: &str) -> anyhow::Result<Self> {
        self.device_id = format!("{name:-<16}");
        self.send(&ClientMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            client_version: "testkit".into(),
            device_id: self.device_id.clone(),
        })
        .await?;
        match self.recv().await? {
            ServerMessage::Welcome { .. } => Ok(self),
            other => bail!("expected welcome, got {other:?}"),
        }
    }

    /// Connects and completes the hello handshake as device `name` (padded to a valid id).
    pub async fn hello(url: &str, name: &str) -> anyhow::Result<Self> {
        Self::connect(url).await?.say_hello(name).await
    }

    pub async fn send(&mut self, msg: &ClientMessage) -> anyhow::Result<()> {
        self.send_raw(&encode(msg)).await
    }

    pub async fn send_raw(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .context("send")
    }

    pub async fn send_frame(&mut self, frame: Message) -> anyhow::Result<()> {
        self.ws.send(frame).await.context("send frame")
    }

    /// The next message other than `online_count`.
    pub async fn recv(&mut self) -> anyhow::Result<ServerMessage> {
        loop {
            match self.recv_any().await? {
                ServerMessage::OnlineCount { .. } => continue,
                msg => return Ok(msg),
            }
        }
    }

    /// The next message of any type.
    pub async fn recv_any(&mut self) -> anyhow::Result<ServerMessage> {
        // One deadline for the whole wait: heartbeat pings must not extend it.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .context("no message within the wait")?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return decode_server(text.as_str())
                        .with_context(|| format!("server sent an invalid message: {text}"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
                Some(Ok(other)) => bail!("unexpected frame {other:?}"),
                Some(Err(err)) => bail!("connection failed: {err}"),
                None => bail!("connection ended"),
            }
        }
    }

    /// Waits for an error message with this code.
    pub async fn expect_error(&mut self, code: ErrorCode) -> anyhow::Result<String> {
        match self.recv().await? {
            ServerMessage::Error { code: got, message } if got == code => Ok(message),
            other => bail!("expected error {code}, got {other:?}"),
        }
    }

    /// Reads until the server closes; returns the close frame, skipping other messages.
    pub async fn expect_close(&mut self) -> anyhow::Result<Option<CloseFrame>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .context("the server did not close within the wait")?;
            match frame {
                Some(Ok(Message::Close(frame))) => return Ok(frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(None),
            }
        }
    }

    /// Joins the queue and waits for `queued`.
    pub async fn join(&mut self, languages: &[&str], interests: &[&str]) -> anyhow::Result<()> {
        self.send(&ClientMessage::JoinQueue {
            nickname: self.device_id.trim_end_matches('-').to_owned(),
            languages: languages.iter().map(|s| s.to_string()).collect(),
            interests: interests.iter().map(|s| s.to_string()).collect(),
        })
        .await?;
        match self.recv().await? {
            ServerMessage::Queued => Ok(()),
            other => bail!("expected queued, got {other:?}"),
        }
    }

    pub async fn expect_matched(&mut self) -> anyhow::Result<Matched> {
        match self.recv().await? {
            ServerMessage::Matched {
                call_id,
                role,
                peer,
                friend,
            } => Ok(Matched {
                call_id,
                role,
                peer,
                friend,
            }),
            other => bail!("expected matched, got {other:?}"),
        }
    }

    /// Proves the server has handled everything sent before: a ping is answered in order,
    /// so any message it had to send us earlier arrives before the pong.
    pub async fn sync(&mut self) -> anyhow::Result<Vec<ServerMessage>> {
        let nonce = 0x5eed;
        self.send(&ClientMessage::Ping { nonce }).await?;
        let mut before = Vec::new();
        loop {
            match self.recv().await? {
                ServerMessage::Pong { nonce: n } if n == nonce => return Ok(before),
                other => before.push(other),
            }
        }
    }

    pub async fn close(mut self) -> anyhow::Result<()> {
        self.ws.close(None).await.context("close")
    }
}

/// Two clients, devices "a" and "b", both speaking Korean, matched with each other:
/// `a` joined first, so it is the offerer. Returns both and the call id.
pub async fn matched_pair(url: &str) -> anyhow::Result<(TestClient, TestClient, CallId)> {
    let mut a = TestClient::hello(url, "a").await?;
    let mut b = TestClient::hello(url, "b").await?;
    a.join(&["ko"], &[]).await?;
    b.join(&["ko"], &[]).await?;
    let matched = a.expect_matched().await?;
    let other = b.expect_matched().await?;
    if matched.call_id != other.call_id || matched.role != Role::Offerer {
        bail!("a and b were not matched with each other: {matched:?} / {other:?}");
    }
    Ok((a, b, matched.call_id))
}

/// A plain HTTP/1.1 GET; returns the status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .context("HTTP connect timed out")??;
    http_get_on(stream, addr, path).await
}

/// [`http_get`] from a chosen local address (any of 127.0.0.0/8 on loopback).
pub async fn http_get_from(
    addr: SocketAddr,
    source: std::net::IpAddr,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .context("HTTP connect timed out")??;
    http_get_on(stream, addr, path).await
}

async fn http_get_on(
    mut stream: TcpStream,
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .context("HTTP response timed out")??;
    let text = String::from_utf8(response).context("HTTP response is not UTF-8")?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no HTTP status")?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((status, body.to_owned()))
}

/// Reads one metric's value from a Prometheus text page.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok())?
        })
}
