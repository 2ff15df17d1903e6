//! The connection to chingu-server: says hello, hands server messages to the engine as
//! events, and reconnects with [`Backoff`] when the connection drops. One task owns the
//! WebSocket; the engine talks to it through bounded channels.

use std::sync::Arc;
use std::time::Duration;

use chingu_proto::{
    ClientMessage, ErrorCode, IceServer, PROTOCOL_VERSION, ServerMessage, SessionId, decode_server,
    encode,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;

/// How to reach the server and who we are.
#[derive(Debug, Clone)]
pub struct SignalingConfig {
    /// `ws://host:port/v1/ws` or `wss://…`
    pub url: String,
    /// The device's secret id (see docs/protocol.md, `hello`).
    pub device_id: String,
    pub client_version: String,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// What the signaling connection reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SignalingEvent {
    /// Connected and welcomed (again, after a reconnect: the server forgot our state).
    Connected {
        session_id: SessionId,
        ice_servers: Vec<IceServer>,
    },
    /// Any other server message.
    Message(ServerMessage),
    /// The connection dropped; the next attempt is in `retry_in`.
    Disconnected { why: String, retry_in: Duration },
    /// The server refused us for good (an unsupported protocol version); no retries.
    Refused { code: ErrorCode, message: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalingError {
    #[error("not connected to the server")]
    NotConnected,
    #[error("the signaling client has stopped")]
    Stopped,
}

/// How long connecting (TCP, TLS, WebSocket upgrade) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a probed connection may stay silent before it is abandoned.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an abandoned connection is kept open (longer than the server's resume grace).
const LINGER: Duration = Duration::from_secs(20);
/// How long the server may say nothing before `welcome` tells its heartbeat interval.
const SILENCE_BEFORE_WELCOME: Duration = Duration::from_secs(10);

/// Handle to the signaling task.
#[derive(Debug)]
pub struct SignalingClient {
    outbox: mpsc::Sender<ClientMessage>,
    events: mpsc::Receiver<SignalingEvent>,
    connected: tokio::sync::watch::Receiver<bool>,
    stop: CancellationToken,
    reconnect: Arc<tokio::sync::Notify>,
    probe: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl SignalingClient {
    /// Starts connecting in the background.
    pub fn start(config: SignalingConfig) -> Self {
        let (outbox, outbox_rx) = mpsc::channel(64);
        let (events_tx, events) = mpsc::channel(256);
        let (connected_tx, connected) = tokio::sync::watch::channel(false);
        let stop = CancellationToken::new();
        let reconnect = Arc::new(tokio::sync::Notify::new());
        let probe = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(run(
            config,
            outbox_rx,
            events_tx,
            connected_tx,
            stop.clone(),
            Arc::clone(&reconnect),
            Arc::clone(&probe),
        ));
        Self {
            outbox,
            events,
            connected,
            stop,
            reconnect,
            probe,
            task,
        }
    }

    /// Sends a message if connected. While disconnected it fails at once rather than
    /// queueing: a join or a signal sent minutes late would be wrong.
    pub async fn send(&self, msg: ClientMessage) -> Result<(), SignalingError> {
        if !*self.connected.borrow() {
            return Err(SignalingError::NotConnected);
        }
        self.outbox
            .send(msg)
            .await
            .map_err(|_| SignalingError::Stopped)
    }

    /// The next event; `None` once stopped.
    pub async fn next_event(&mut self) -> Option<SignalingEvent> {
        self.events.recv().await
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Drops the current connection (without a goodbye: it is probably dead) and
    /// connects again at once. Used when the network changed under it.
    pub fn reconnect(&self) {
        self.reconnect.notify_one();
    }

    /// Checks that the connection is alive: sends a `ping`, and reconnects at once if
    /// nothing at all comes back within [`PROBE_TIMEOUT`] (after an outage TCP may hold
    /// on to a dead connection, or only deliver after its retransmission backoff).
    pub fn probe(&self) {
        self.probe.notify_one();
    }

    /// Sends what is already queued (a last hang-up, say), closes the connection and
    /// waits for the task to end; gives up on the queue after a second.
    pub async fn stop(self) {
        let Self {
            outbox,
            events,
            stop,
            mut task,
            ..
        } = self;
        drop(outbox);
        drop(events);
        if tokio::time::timeout(Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            stop.cancel();
            let _ = task.await;
        }
    }
}

async fn run(
    config: SignalingConfig,
    mut outbox: mpsc::Receiver<ClientMessage>,
    events: mpsc::Sender<SignalingEvent>,
    connected: tokio::sync::watch::Sender<bool>,
    stop: CancellationToken,
    reconnect: Arc<tokio::sync::Notify>,
    probe: Arc<tokio::sync::Notify>,
) {
    let seed = config
        .device_id
        .bytes()
        .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b))
        ^ u64::from(std::process::id());
    let mut backoff = Backoff::new(config.initial_backoff, config.max_backoff, seed);
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = session(&config, &mut outbox, &events, &connected, &mut backoff, &reconnect, &probe) => outcome,
        };
        connected.send_replace(false);
        match outcome {
            Outcome::Abandoned(ws, why) => {
                // Not closed: if the old path still works, a close would reach the server
                // before our new connection takes the call over, and end it. The server
                // notices the silence; the socket goes when the call has moved.
                tokio::spawn(async move {
                    tokio::time::sleep(LINGER).await;
                    drop(ws);
                });
                tracing::info!(%why, "reconnecting to the server");
                backoff.reset();
                if events
                    .send(SignalingEvent::Disconnected {
                        why,
                        retry_in: Duration::ZERO,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Outcome::Reconnect => {
                tracing::info!("reconnecting to the server (the network changed)");
                backoff.reset();
                if events
                    .send(SignalingEvent::Disconnected {
                        why: "reconnecting: the network changed".into(),
                        retry_in: Duration::ZERO,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Outcome::Refused { code, message } => {
                let _ = events.send(SignalingEvent::Refused { code, message }).await;
                return;
            }
            Outcome::Lost(why) => {
                let retry_in = backoff.next_delay();
                tracing::info!(%why, ?retry_in, "signaling connection lost");
                if events
                    .send(SignalingEvent::Disconnected { why, retry_in })
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = reconnect.notified() => {}
                    () = tokio::time::sleep(retry_in) => {}
                }
            }
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Outcome {
    /// Asked to reconnect at once, before a connection was up.
    Reconnect,
    /// A connection we stopped using (asked to reconnect, or the server went silent):
    /// kept open a while rather than closed.
    Abandoned(Box<Ws>, String),
    Lost(String),
    Refused {
        code: ErrorCode,
        message: String,
    },
}

/// One connection, from connect to loss.
async fn session(
    config: &SignalingConfig,
    outbox: &mut mpsc::Receiver<ClientMessage>,
    events: &mpsc::Sender<SignalingEvent>,
    connected: &tokio::sync::watch::Sender<bool>,
    backoff: &mut Backoff,
    reconnect: &tokio::sync::Notify,
    probe: &tokio::sync::Notify,
) -> Outcome {
    let connect = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async(&config.url),
    );
    let connect = async {
        tokio::select! {
            () = reconnect.notified() => None,
            result = connect => Some(result),
        }
    };
    let ws = match Box::pin(connect).await {
        None => return Outcome::Reconnect,
        Some(result) => result,
    };
    let mut ws = match ws {
        Err(_) => return Outcome::Lost("connecting timed out".into()),
        Ok(Err(err)) => return Outcome::Lost(format!("cannot connect: {err}")),
        Ok(Ok((ws, _))) => ws,
    };
    let hello = ClientMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        client_version: config.client_version.clone(),
        device_id: config.device_id.clone(),
    };
    if let Err(err) = ws.send(Message::Text(encode(&hello).into())).await {
        return Outcome::Lost(format!("sending hello: {err}"));
    }
    // The server pings every few seconds (`heartbeat_interval_ms`): a connection silent
    // for three intervals is dead, whatever TCP thinks.
    let mut silence = SILENCE_BEFORE_WELCOME;
    let mut heard = tokio::time::Instant::now();
    // A probe's deadline: something must arrive before it.
    let mut probing: Option<tokio::time::Instant> = None;
    let mut nonce = 0u64;
    loop {
        let probe_deadline = probing.unwrap_or_else(|| heard + silence);
        tokio::select! {
            () = tokio::time::sleep_until(probe_deadline), if probing.is_some() => {
                return Outcome::Abandoned(
                    Box::new(ws),
                    format!("the server did not answer a ping within {} s", PROBE_TIMEOUT.as_secs()),
                );
            }
            () = probe.notified() => {
                nonce += 1;
                let ping = ClientMessage::Ping { nonce };
                if let Err(err) = ws.send(Message::Text(encode(&ping).into())).await {
                    return Outcome::Lost(format!("send failed: {err}"));
                }
                probing.get_or_insert(tokio::time::Instant::now() + PROBE_TIMEOUT);
            }
            () = tokio::time::sleep_until(heard + silence) => {
                return Outcome::Abandoned(
                    Box::new(ws),
                    format!("the server was silent for {} s", silence.as_secs()),
                );
            }
            () = reconnect.notified() => {
                return Outcome::Abandoned(Box::new(ws), "the network changed".into());
            }
            msg = outbox.recv() => {
                let Some(msg) = msg else { return Outcome::Lost("engine stopped".into()) };
                if let Err(err) = ws.send(Message::Text(encode(&msg).into())).await {
                    return Outcome::Lost(format!("send failed: {err}"));
                }
            }
            frame = ws.next() => {
                heard = tokio::time::Instant::now();
                probing = None;
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => {
                        return Outcome::Lost(frame.map_or("closed".into(), |f| format!("closed: {}", f.reason)));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(err)) => return Outcome::Lost(format!("connection failed: {err}")),
                    None => return Outcome::Lost("connection ended".into()),
                };
                let msg = match decode_server(text.as_str()) {
                    Ok(msg) => msg,
                    Err(err) => {
                        // A server we do not understand: skip the message, keep the call.
                        tracing::warn!(%err, "ignoring an invalid server message");
                        continue;
                    }
                };
                let event = match msg {
                    ServerMessage::Welcome { session_id, ice_servers, heartbeat_interval_ms, .. } => {
                        silence = Duration::from_millis(heartbeat_interval_ms.clamp(500, 60_000) * 3);
                        backoff.reset();
                        connected.send_replace(true);
                        SignalingEvent::Connected { session_id, ice_servers }
                    }
                    ServerMessage::Error { code: code @ (ErrorCode::UnsupportedVersion | ErrorCode::TooManyConnections), message } => {
                        if code == ErrorCode::UnsupportedVersion {
                            return Outcome::Refused { code, message };
                        }
                        return Outcome::Lost(message);
                    }
                    other => SignalingEvent::Message(other),
                };
                if events.send(event).await.is_err() {
                    return Outcome::Lost("engine stopped".into());
                }
            }
        }
    }
}

/// What a server address leads to (the settings' "test connection").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum ServerProbe {
    /// A Chingu server that speaks this app's protocol.
    Reachable,
    /// A Chingu server for another version of the app.
    VersionMismatch { message: String },
    /// Something answered, but not as a Chingu server (refused us, or not WebSocket).
    Refused { message: String },
    /// Nothing answered in time, or the address does not resolve or connect.
    Unreachable { message: String },
    /// Not a ws:// or wss:// address.
    BadUrl,
}

/// Connects to `url`, says hello as `device_id` and reads the answer; never waits more
/// than `timeout` in all.
pub async fn probe(url: &str, device_id: &str, timeout: Duration) -> ServerProbe {
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return ServerProbe::BadUrl;
    }
    let attempt = async {
        let (mut ws, _) = match tokio_tungstenite::connect_async(url).await {
            Ok(ws) => ws,
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                return ServerProbe::Refused {
                    message: format!("HTTP {}", response.status()),
                };
            }
            Err(e @ tokio_tungstenite::tungstenite::Error::Url(_)) => {
                return ServerProbe::Unreachable {
                    message: e.to_string(),
                };
            }
            Err(e) => {
                return ServerProbe::Unreachable {
                    message: e.to_string(),
                };
            }
        };
        let hello = ClientMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            client_version: concat!("chingu-probe/", env!("CARGO_PKG_VERSION")).into(),
            device_id: device_id.to_owned(),
        };
        if let Err(e) = ws.send(Message::Text(encode(&hello).into())).await {
            return ServerProbe::Refused {
                message: e.to_string(),
            };
        }
        let verdict = loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => match decode_server(text.as_str()) {
                    Ok(ServerMessage::Welcome { .. }) => break ServerProbe::Reachable,
                    Ok(ServerMessage::Error {
                        code: ErrorCode::UnsupportedVersion,
                        message,
                    }) => break ServerProbe::VersionMismatch { message },
                    Ok(ServerMessage::Error { message, .. }) => {
                        break ServerProbe::Refused { message };
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        break ServerProbe::Refused {
                            message: format!("not a Chingu server: {e}"),
                        };
                    }
                },
                Some(Ok(Message::Close(frame))) => {
                    break ServerProbe::Refused {
                        message: frame.map_or_else(|| "closed".into(), |f| f.reason.to_string()),
                    };
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    break ServerProbe::Refused {
                        message: e.to_string(),
                    };
                }
                None => {
                    break ServerProbe::Refused {
                        message: "the connection closed".into(),
                    };
                }
            }
        };
        let _ = ws.close(None).await;
        verdict
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(verdict) => verdict,
        Err(_) => ServerProbe::Unreachable {
            message: format!("no answer within {} s", timeout.as_secs()),
        },
    }
}
