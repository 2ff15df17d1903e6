//! One WebSocket connection: the handshake, limits and parsing of what the client sends,
//! heartbeats, and writing what the hub sends back. Reading and writing run as two tasks;
//! when either ends, the other is stopped — the writer is aborted if it does not finish
//! its goodbye in time — and only then is the socket closed and the connection's slot
//! given back. Every write has a deadline, so a client that stops reading is dropped
//! instead of holding a task, a socket and its queued bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Extension, State};
use axum::response::Response;
use chingu_proto::{
    ClientMessage, ErrorCode, PROTOCOL_VERSION, ProtoError, ServerMessage, decode_client, encode,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admission::{ConnectionSlot, Refusal};
use crate::hub::Input;
use crate::hub_task::{ClientLink, HubCommand, Outbound};
use crate::ids::{Identity, random_token};
use crate::listener::{Accepted, Context, Ticket};
use crate::ratelimit::{Throttle, TokenBucket};
use crate::turn;

/// Messages queued for one client before it counts as not reading and is dropped.
const OUTBOUND_QUEUE: usize = 256;
/// Frames larger than this close the connection; smaller ones over the protocol limit
/// get a `too_large` error and the connection stays.
const TRANSPORT_MAX_BYTES: usize = 256 * 1024;
/// Messages dropped by the rate limit before the connection is closed as abusive.
const MAX_RATE_LIMITED: u32 = 1000;
/// How long the writer gets to say goodbye after the reader ended; then it is aborted.
const WRITER_LINGER: Duration = Duration::from_secs(2);
/// How long a refused client gets to hear why.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    Extension(accepted): Extension<Accepted>,
    State(ctx): State<Arc<Context>>,
) -> Response {
    // Small buffers: tens of thousands of mostly idle sockets must fit in little memory.
    ws.read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(TRANSPORT_MAX_BYTES)
        .max_frame_size(TRANSPORT_MAX_BYTES)
        .on_upgrade(move |socket| {
            let tracker = ctx.tracker.clone();
            let hard_stop = ctx.stop.hard.clone();
            let metrics = Arc::clone(&ctx.metrics);
            let Accepted { peer, ticket } = accepted;
            // Tens of thousands of these wait at once: keep the state each holds small.
            // The socket is split here, so no future carries the whole WebSocket, and the
            // rare refusal is a separate allocation.
            let connection: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = match ticket {
                Ticket::Admitted(slot) => {
                    let (sink, stream) = socket.split();
                    Box::pin(run(sink, stream, ctx, slot, peer))
                }
                Ticket::Refused(slot, why) => Box::pin(async move {
                    let _ = tokio::time::timeout(REFUSAL_TIME, refuse(socket, why)).await;
                    drop(slot);
                }),
            };
            tracker.track_future(async move {
                tokio::select! {
                    () = connection => {}
                    () = hard_stop.cancelled() => {
                        metrics.shutdown_aborted_total.fetch_add(1, Relaxed);
                    }
                }
            })
        })
}

/// Tells a client over a connection limit why, in protocol terms, and closes.
async fn refuse(mut socket: WebSocket, why: Refusal) {
    let msg = ServerMessage::error(ErrorCode::TooManyConnections, why.to_string());
    let _ = socket.send(Message::Text(encode(&msg).into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: close_code::POLICY,
            reason: Utf8Bytes::from_static("connection limit"),
        })))
        .await;
}

/// Aborts the task when dropped: a connection's writer never outlives it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the connection until it ends. `slot` is held until the socket is closed.
async fn run(
    sink: SplitSink<WebSocket, Message>,
    stream: SplitStream<WebSocket>,
    ctx: Arc<Context>,
    slot: Arc<ConnectionSlot>,
    peer: SocketAddr,
) {
    let client = slot.client;
    let (out_tx, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let kick = CancellationToken::new();
    let reader_done = CancellationToken::new();
    let mut writer = AbortOnDrop(tokio::spawn(write_loop(
        sink,
        out_rx,
        Arc::clone(&ctx),
        kick.clone(),
        reader_done.clone(),
    )));
    let mut reader = Reader {
        ctx: Arc::clone(&ctx),
        slot: Arc::clone(&slot),
        out: out_tx,
        kick,
        bucket: TokenBucket::new(
            ctx.config.rate_limit_per_s,
            ctx.config.rate_limit_burst,
            Instant::now(),
        ),
        error_throttle: Throttle::new(Duration::from_secs(1)),
        rate_limited: 0,
    };
    tracing::debug!(client = client.0, %peer, "connected");
    if let Some(silent) = reader.run(stream).await {
        let _ = ctx
            .hub_tx
            .send(HubCommand::Input(Input::Disconnected { client, silent }))
            .await;
    }
    reader_done.cancel();
    if tokio::time::timeout(WRITER_LINGER, &mut writer.0)
        .await
        .is_err()
    {
        tracing::debug!(client = client.0, "writer did not finish in time; aborted");
        writer.0.abort();
        let _ = (&mut writer.0).await;
    }
    // The reader's half was dropped with `reader.run`, the writer's with its task: the
    // socket is closed. Only now does the slot count the connection out.
    drop(reader);
    drop(slot);
}

/// Sends one frame, giving up when the client has not taken it within the write
/// timeout or when the connection is being dropped.
async fn send_bounded(
    sink: &mut SplitSink<WebSocket, Message>,
    message: Message,
    ctx: &Context,
    kick: &CancellationToken,
) -> bool {
    tokio::select! {
        sent = tokio::time::timeout(ctx.config.write_timeout(), sink.send(message)) => match sent {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                ctx.metrics.write_timeouts_total.fetch_add(1, Relaxed);
                false
            }
        },
        () = kick.cancelled() => false,
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut out_rx: mpsc::Receiver<Outbound>,
    ctx: Arc<Context>,
    kick: CancellationToken,
    reader_done: CancellationToken,
) {
    let heartbeat = ctx.config.heartbeat_interval();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let close = |code, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        }))
    };
    // Goodbyes go out with their own short deadline (the client may be the reason).
    let never = CancellationToken::new();
    loop {
        tokio::select! {
            biased;
            () = ctx.stop.graceful.cancelled() => {
                let msg = ServerMessage::ShuttingDown { retry_after_ms: 1000 };
                if send_bounded(&mut sink, Message::Text(encode(&msg).into()), &ctx, &never).await {
                    send_bounded(&mut sink, close(close_code::AWAY, "server shutting down"), &ctx, &never).await;
                }
                break;
            }
            () = kick.cancelled() => {
                // The client is not reading: a goodbye would only wait on it.
                let _ = tokio::time::timeout(
                    Duration::from_millis(100),
                    sink.send(close(close_code::POLICY, "too slow")),
                )
                .await;
                break;
            }
            out = out_rx.recv() => match out {
                Some(Outbound::Text(text)) => {
                    if !send_bounded(&mut sink, Message::Text(text), &ctx, &kick).await {
                        break;
                    }
                }
                Some(Outbound::Close(code, reason)) => {
                    send_bounded(&mut sink, close(code, reason), &ctx, &kick).await;
                    break;
                }
                None => break,
            },
            _ = ping.tick() => {
                if !send_bounded(&mut sink, Message::Ping(Default::default()), &ctx, &kick).await {
                    break;
                }
            }
            () = reader_done.cancelled() => {
                // Flush what is already queued (a final error, say), then stop.
                while let Ok(out) = out_rx.try_recv() {
                    let message = match out {
                        Outbound::Text(text) => Message::Text(text),
                        Outbound::Close(code, reason) => close(code, reason),
                    };
                    if !send_bounded(&mut sink, message, &ctx, &kick).await {
                        break;
                    }
                }
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(100), sink.close()).await;
    // However the writer ended (a write that timed out, a broken socket), the reader
    // must not go on reading for a client nobody can answer.
    kick.cancel();
}

struct Reader {
    ctx: Arc<Context>,
    slot: Arc<ConnectionSlot>,
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

/// Why reading stopped.
enum End {
    /// The client closed, was kicked, or the server is stopping.
    Closed,
    /// No frame within the deadline.
    TimedOut,
}

impl Reader {
    /// Reads until the connection ends. Returns `None` if the client never registered
    /// with the hub, else whether the connection ended by going silent (heartbeat).
    async fn run(&mut self, mut stream: SplitStream<WebSocket>) -> Option<bool> {
        let client = self.slot.client;
        let identity = self.handshake(&mut stream).await?;
        let session = random_token();
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let welcome = ServerMessage::Welcome {
            protocol_version: PROTOCOL_VERSION,
            ice_servers: turn::ice_servers(&self.ctx.config, &session, now_unix),
            session_id: chingu_proto::SessionId(session.clone()),
            heartbeat_interval_ms: self.ctx.config.heartbeat_interval_ms,
        };
        self.reply(welcome);
        self.refresh_ice_servers(session);
        let link = ClientLink {
            tx: self.out.clone(),
            kick: self.kick.clone(),
        };
        let register = HubCommand::Register {
            client,
            identity,
            link,
        };
        if self.ctx.hub_tx.send(register).await.is_err() {
            return None;
        }
        let mut silent = false;
        let idle = self.ctx.config.idle_timeout();
        loop {
            let text = match self.next_text(&mut stream, idle, true).await {
                Ok(text) => text,
                Err(End::TimedOut) => {
                    self.ctx
                        .metrics
                        .heartbeat_timeouts_total
                        .fetch_add(1, Relaxed);
                    tracing::info!(client = client.0, "no heartbeat; disconnecting");
                    silent = true;
                    break;
                }
                Err(End::Closed) => break,
            };
            match decode_client(&text) {
                Ok(ClientMessage::Hello { .. }) => self.reject(ProtoError::new(
                    ErrorCode::AlreadyHello,
                    "hello was already accepted",
                )),
                Ok(msg) => {
                    let input = HubCommand::Input(Input::Message { client, msg });
                    if self.ctx.hub_tx.send(input).await.is_err() {
                        break;
                    }
                }
                Err(err) => self.reject(err),
            }
        }
        Some(silent)
    }

    /// Sends fresh TURN credentials at half their lifetime for as long as the connection
    /// lasts, so a client never starts a call (or restarts ICE) with expired ones.
    fn refresh_ice_servers(&self, session: String) {
        let Some(every) = turn::refresh_interval(&self.ctx.config) else {
            return;
        };
        let (ctx, out, kick) = (Arc::clone(&self.ctx), self.out.clone(), self.kick.clone());
        self.ctx.tracker.spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    () = kick.cancelled() => break,
                    () = ctx.stop.graceful.cancelled() => break,
                    () = out.closed() => break,
                    _ = tick.tick() => {
                        let now_unix = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        let msg = ServerMessage::IceServers {
                            ice_servers: turn::ice_servers(&ctx.config, &session, now_unix),
                        };
                        // A full outbox: the client is behind; the next refresh will do.
                        let _ = out.try_send(Outbound::Text(encode(&msg).into()));
                    }
                }
            }
        });
    }

    /// The next text message within `within`, after the rate limits. Every frame counts
    /// against them, whatever its type: pings and pongs are answered by the transport
    /// and skipped, binary frames are a protocol error. Closing reasons (flooding,
    /// oversized frames, invalid UTF-8) are sent to the client before `Err`.
    ///
    /// `within` is a deadline for the whole wait, or with `idle`, for silence: any frame
    /// (a pong answering the server's ping, say) starts it again.
    async fn next_text(
        &mut self,
        stream: &mut SplitStream<WebSocket>,
        within: Duration,
        idle: bool,
    ) -> Result<Utf8Bytes, End> {
        let mut deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = tokio::select! {
                () = self.kick.cancelled() => return Err(End::Closed),
                () = self.ctx.stop.graceful.cancelled() => return Err(End::Closed),
                next = next_frame(stream, left) => next,
            };
            let message = match frame {
                Next::Frame(Message::Close(_)) | Next::Closed => return Err(End::Closed),
                Next::TimedOut => return Err(End::TimedOut),
                Next::Failed(err) => {
                    self.transport_error(&err);
                    return Err(End::Closed);
                }
                Next::Frame(message) => message,
            };
            if idle {
                deadline = tokio::time::Instant::now() + within;
            }
            if !self.admit_message() {
                if self.rate_limited > MAX_RATE_LIMITED {
                    self.close(close_code::POLICY, "flooding");
                    return Err(End::Closed);
                }
                continue;
            }
            match message {
                Message::Text(text) => return Ok(text),
                Message::Binary(_) => self.reject(ProtoError::new(
                    ErrorCode::Malformed,
                    "binary frames are not part of the protocol",
                )),
                // Counted above; the transport answers pings itself.
                Message::Ping(_) | Message::Pong(_) | Message::Close(_) => {}
            }
        }
    }

    /// Waits for a valid `hello`; answers anything else with an error. Returns the
    /// device identity, or `None` if the connection should end.
    async fn handshake(&mut self, stream: &mut SplitStream<WebSocket>) -> Option<Identity> {
        let deadline = Duration::from_millis(self.ctx.config.hello_timeout_ms);
        let started = Instant::now();
        loop {
            let left = deadline.saturating_sub(started.elapsed());
            let text = match self.next_text(stream, left, false).await {
                Ok(text) => text,
                Err(End::TimedOut) => {
                    self.reject(ProtoError::new(
                        ErrorCode::HelloRequired,
                        "no hello in time",
                    ));
                    self.close(close_code::POLICY, "no hello");
                    return None;
                }
                Err(End::Closed) => return None,
            };
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

    /// Applies the rate limits to one incoming frame: the connection's own, then its
    /// address's shared one. Tells the client (at most once a second) when it drops one.
    fn admit_message(&mut self) -> bool {
        let now = Instant::now();
        let limit = if !self.bucket.try_take(now) {
            self.ctx.metrics.rate_limited_total.fetch_add(1, Relaxed);
            self.ctx.config.rate_limit_per_s
        } else if !self.slot.take_address_token(now) {
            self.ctx
                .metrics
                .address_rate_limited_total
                .fetch_add(1, Relaxed);
            self.ctx.config.address_rate_limit_per_s
        } else {
            return true;
        };
        self.rate_limited += 1;
        if self.error_throttle.ready(now) {
            self.reply(ServerMessage::error(
                ErrorCode::RateLimited,
                format!("more than {limit} messages per second; some were dropped"),
            ));
        }
        false
    }

    fn reject(&mut self, err: ProtoError) {
        self.ctx.metrics.protocol_errors_total.fetch_add(1, Relaxed);
        self.reply(ServerMessage::error(err.code, err.message));
    }

    fn transport_error(&mut self, err: &axum::Error) {
        let text = err.to_string();
        // tungstenite reports an oversized frame or message as a capacity error, and a
        // text frame that is not UTF-8 as an encoding error.
        if text.contains("too long") || text.contains("too big") {
            self.reject(ProtoError::new(
                ErrorCode::TooLarge,
                format!("frame over {TRANSPORT_MAX_BYTES} bytes; closing"),
            ));
            self.close(close_code::SIZE, "message too big");
        } else if text.contains("UTF-8") {
            self.reject(ProtoError::new(
                ErrorCode::Malformed,
                "a text frame that is not UTF-8; closing",
            ));
            self.close(close_code::INVALID, "invalid UTF-8");
        } else {
            tracing::debug!(%err, "transport error");
        }
    }

    /// Queues a message for the client. A full queue means the client is not reading
    /// what it is sent (here, the errors its own messages earned): it is dropped.
    fn reply(&self, msg: ServerMessage) {
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.out.try_send(Outbound::Text(encode(&msg).into()))
            && !self.kick.is_cancelled()
        {
            self.ctx
                .metrics
                .slow_clients_dropped_total
                .fetch_add(1, Relaxed);
            tracing::info!(
                client = self.slot.client.0,
                "not reading its replies; dropping"
            );
            self.kick.cancel();
        }
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
