//! One WebSocket connection: the handshake, limits and parsing of what the client sends,
//! heartbeats, and writing what the hub sends back. Reading and writing run as two tasks;
//! when either ends, the other is stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use chingu_proto::{
    ClientMessage, ErrorCode, PROTOCOL_VERSION, ProtoError, ServerMessage, decode_client, encode,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, ConnectionSlot};
use crate::config::Config;
use crate::hub::Input;
use crate::hub_task::{ClientLink, HubCommand, Outbound};
use crate::ids::{Identity, random_token};
use crate::metrics::Metrics;
use crate::ratelimit::{Throttle, TokenBucket};
use crate::turn;

/// Messages queued for one client before it counts as not reading and is dropped.
const OUTBOUND_QUEUE: usize = 256;
/// Frames larger than this close the connection; smaller ones over the protocol limit
/// get a `too_large` error and the connection stays.
const TRANSPORT_MAX_BYTES: usize = 256 * 1024;
/// Messages dropped by the rate limit before the connection is closed as abusive.
const MAX_RATE_LIMITED: u32 = 1000;
/// How long the writer gets to say goodbye after the reader ended.
const WRITER_LINGER: Duration = Duration::from_secs(2);

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Context {
    pub config: Config,
    pub hub_tx: mpsc::Sender<HubCommand>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub admission: Arc<Admission>,
}

pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(shared): State<Arc<Context>>,
) -> Response {
    let admitted = shared.admission.admit(peer.ip());
    if admitted.is_err() {
        shared
            .metrics
            .connections_rejected_total
            .fetch_add(1, Relaxed);
    }
    // Small buffers: tens of thousands of mostly idle sockets must fit in little memory.
    ws.read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(TRANSPORT_MAX_BYTES)
        .max_frame_size(TRANSPORT_MAX_BYTES)
        .on_upgrade(move |socket| {
            let tracker = shared.tracker.clone();
            tracker.track_future(async move {
                match admitted {
                    Ok(slot) => run(socket, shared, slot, peer).await,
                    Err(refusal) => refuse(socket, refusal).await,
                }
            })
        })
}

/// Tells a client over a connection limit why, in protocol terms, and closes.
async fn refuse(mut socket: WebSocket, refusal: crate::admission::Refusal) {
    let msg = ServerMessage::error(ErrorCode::TooManyConnections, refusal.to_string());
    let _ = socket.send(Message::Text(encode(&msg).into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: close_code::POLICY,
            reason: Utf8Bytes::from_static("connection limit"),
        })))
        .await;
}

async fn run(socket: WebSocket, shared: Arc<Context>, slot: ConnectionSlot, peer: SocketAddr) {
    let client = slot.client;
    let (sink, stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let kick = CancellationToken::new();
    let reader_done = CancellationToken::new();
    let writer = tokio::spawn(write_loop(
        sink,
        out_rx,
        Arc::clone(&shared),
        kick.clone(),
        reader_done.clone(),
    ));
    let mut reader = Reader {
        shared: Arc::clone(&shared),
        out: out_tx,
        kick,
        bucket: TokenBucket::new(
            shared.config.rate_limit_per_s,
            shared.config.rate_limit_burst,
            Instant::now(),
        ),
        error_throttle: Throttle::new(Duration::from_secs(1)),
        rate_limited: 0,
    };
    tracing::debug!(client = client.0, %peer, "connected");
    let registered = reader.run(stream, slot).await;
    if registered {
        let _ = shared
            .hub_tx
            .send(HubCommand::Input(Input::Disconnected { client }))
            .await;
    }
    reader_done.cancel();
    if tokio::time::timeout(WRITER_LINGER, writer).await.is_err() {
        tracing::debug!(client = client.0, "writer did not finish in time");
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut out_rx: mpsc::Receiver<Outbound>,
    shared: Arc<Context>,
    kick: CancellationToken,
    reader_done: CancellationToken,
) {
    let heartbeat = shared.config.heartbeat_interval();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let close = |code, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }))
    };
    loop {
        tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => {
                let msg = ServerMessage::ShuttingDown { retry_after_ms: 1000 };
                let _ = sink.send(Message::Text(encode(&msg).into())).await;
                let _ = sink.send(close(close_code::AWAY, "server shutting down")).await;
                break;
            }
            () = kick.cancelled() => {
                let msg = ServerMessage::error(ErrorCode::Overloaded, "you are not reading your messages");
                let _ = sink.send(Message::Text(encode(&msg).into())).await;
                let _ = sink.send(close(close_code::POLICY, "too slow")).await;
                break;
            }
            out = out_rx.recv() => match out {
                Some(Outbound::Text(text)) => {
                    if sink.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    let _ = sink.send(close(code, reason)).await;
                    break;
                }
                None => break,
            },
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            () = reader_done.cancelled() => {
                // Flush what is already queued (a final error, say), then stop.
                while let Ok(Outbound::Text(text)) = out_rx.try_recv() {
                    if sink.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                break;
            }
        }
    }
    let _ = sink.close().await;
}

struct Reader {
    shared: Arc<Context>,
    out: mpsc::Sender<Outbound>,
    kick: CancellationToken,
    bucket: TokenBucket,
    error_throttle: Throttle,
    rate_limited: u32,
}

/// The next frame, or why there is none.
enum Next {
    Frame(Message),
    Closed,
    TimedOut,
    Failed(axum::Error),
}

impl Reader {
    /// Reads until the connection ends. Returns whether the client was registered with the
    /// hub (and so must be unregistered).
    async fn run(&mut self, mut stream: SplitStream<WebSocket>, slot: ConnectionSlot) -> bool {
        let client = slot.client;
        let Some(identity) = self.handshake(&mut stream).await else {
            return false;
        };
        let session = random_token();
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let welcome = ServerMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            ice_servers: turn::ice_servers(&self.shared.config, &session, now_unix),
            session_id: chingu_proto::SessionId(session),
            heartbeat_interval_ms: self.shared.config.heartbeat_interval_ms,
        };
        self.reply(welcome);
        let link = ClientLink {
            tx: self.out.clone(),
            kick: self.kick.clone(),
        };
        let register = HubCommand::Register {
            client,
            identity,
            link,
        };
        if self.shared.hub_tx.send(register).await.is_err() {
            return false;
        }
        let idle = self.shared.config.idle_timeout();
        loop {
            let frame = tokio::select! {
                () = self.kick.cancelled() => break,
                () = self.shared.shutdown.cancelled() => break,
                next = next_frame(&mut stream, idle) => next,
            };
            let text = match frame {
                Next::Frame(Message::Text(text)) => text,
                Next::Frame(Message::Binary(_)) => {
                    self.reject(ProtoError::new(
                        ErrorCode::Malformed,
                        "binary frames are not part of the protocol",
                    ));
                    continue;
                }
                Next::Frame(Message::Ping(_) | Message::Pong(_)) => continue,
                Next::Frame(Message::Close(_)) | Next::Closed => break,
                Next::TimedOut => {
                    self.shared
                        .metrics
                        .heartbeat_timeouts_total
                        .fetch_add(1, Relaxed);
                    tracing::info!(client = client.0, "no heartbeat; disconnecting");
                    break;
                }
                Next::Failed(err) => {
                    self.transport_error(&err);
                    break;
                }
            };
            if !self.admit_message() {
                if self.rate_limited > MAX_RATE_LIMITED {
                    self.close(close_code::POLICY, "flooding");
                    break;
                }
                continue;
            }
            match decode_client(&text) {
                Ok(ClientMessage::Hello { .. }) => self.reject(ProtoError::new(
                    ErrorCode::AlreadyHello,
                    "hello was already accepted",
                )),
                Ok(msg) => {
                    let input = HubCommand::Input(Input::Message { client, msg });
                    if self.shared.hub_tx.send(input).await.is_err() {
                        break;
                    }
                }
                Err(err) => self.reject(err),
            }
        }
        true
    }

    /// Waits for a valid `hello`; answers anything else with an error. Returns the
    /// device identity, or `None` if the connection should end.
    async fn handshake(&mut self, stream: &mut SplitStream<WebSocket>) -> Option<Identity> {
        let deadline = Duration::from_millis(self.shared.config.hello_timeout_ms);
        let started = Instant::now();
        loop {
            let left = deadline.saturating_sub(started.elapsed());
            let text = tokio::select! {
                () = self.shared.shutdown.cancelled() => return None,
                next = next_frame(stream, left) => match next {
                    Next::Frame(Message::Text(text)) => text,
                    Next::Frame(Message::Binary(_)) => {
                        self.reject(ProtoError::new(ErrorCode::Malformed, "binary frames are not part of the protocol"));
                        continue;
                    }
                    Next::Frame(Message::Ping(_) | Message::Pong(_)) => continue,
                    Next::Frame(Message::Close(_)) | Next::Closed => return None,
                    Next::TimedOut => {
                        self.reject(ProtoError::new(ErrorCode::HelloRequired, "no hello in time"));
                        self.close(close_code::POLICY, "no hello");
                        return None;
                    }
                    Next::Failed(err) => {
                        self.transport_error(&err);
                        return None;
                    }
                },
            };
            if !self.admit_message() {
                if self.rate_limited > MAX_RATE_LIMITED {
                    self.close(close_code::POLICY, "flooding");
                    return None;
                }
                continue;
            }
            match decode_client(&text) {
                Ok(ClientMessage::Hello {
                    protocol_version,
                    client_version,
                    device_id,
                }) => {
                    if protocol_version != PROTOCOL_VERSION {
                        self.reject(ProtoError::new(
                            ErrorCode::UnsupportedVersion,
                            format!(
                                "this server speaks protocol version {PROTOCOL_VERSION}, not {protocol_version}"
                            ),
                        ));
                        self.close(close_code::POLICY, "unsupported protocol version");
                        return None;
                    }
                    tracing::debug!(%client_version, "hello");
                    return Some(Identity::from_device_id(&device_id));
                }
                Ok(_) => self.reject(ProtoError::new(
                    ErrorCode::HelloRequired,
                    "the first message must be hello",
                )),
                Err(err) => self.reject(err),
            }
        }
    }

    /// Applies the rate limit to one incoming message; tells the client (at most once a
    /// second) when it drops one.
    fn admit_message(&mut self) -> bool {
        let now = Instant::now();
        if self.bucket.try_take(now) {
            return true;
        }
        self.rate_limited += 1;
        self.shared.metrics.rate_limited_total.fetch_add(1, Relaxed);
        if self.error_throttle.ready(now) {
            self.reply(ServerMessage::error(
                ErrorCode::RateLimited,
                format!(
                    "more than {} messages per second; some were dropped",
                    self.shared.config.rate_limit_per_s
                ),
            ));
        }
        false
    }

    fn reject(&mut self, err: ProtoError) {
        self.shared
            .metrics
            .protocol_errors_total
            .fetch_add(1, Relaxed);
        self.reply(ServerMessage::error(err.code, err.message));
    }

    fn transport_error(&mut self, err: &axum::Error) {
        let text = err.to_string();
        // tungstenite reports an oversized frame or message as a capacity error.
        if text.contains("too long") || text.contains("too big") {
            self.reject(ProtoError::new(
                ErrorCode::TooLarge,
                format!("frame over {TRANSPORT_MAX_BYTES} bytes; closing"),
            ));
            self.close(close_code::SIZE, "message too big");
        } else {
            tracing::debug!(%err, "transport error");
        }
    }

    /// Queues a message for the client. If its queue is full the client is not reading
    /// and the hub will drop it; replies are not worth waiting for.
    fn reply(&self, msg: ServerMessage) {
        let _ = self.out.try_send(Outbound::Text(encode(&msg).into()));
    }

    fn close(&self, code: u16, reason: &'static str) {
        let _ = self.out.try_send(Outbound::Close(code, reason));
    }
}

async fn next_frame(stream: &mut SplitStream<WebSocket>, within: Duration) -> Next {
    match tokio::time::timeout(within, stream.next()).await {
        Err(_) => Next::TimedOut,
        Ok(None) => Next::Closed,
        Ok(Some(Err(err))) => Next::Failed(err),
        Ok(Some(Ok(msg))) => Next::Frame(msg),
    }
}
