//! The I/O shell: binds the listener, routes HTTP, runs the hub task and the storage
//! writer, and shuts everything down in order.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::Utf8Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use chingu_proto::{ErrorCode, ServerMessage, encode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ConfigError};
use crate::connection;
use crate::hub::{Hub, Input, Output};
use crate::ids::{ClientId, Identity};
use crate::metrics::Metrics;
use crate::storage::{self, Storage, StorageError, WriteJob};

/// Capacity of the queue into the hub. Connections wait when it is full, which slows
/// every sender equally; rate limits keep any one connection's share small.
const HUB_QUEUE: usize = 4096;

/// What a connection task hands the hub.
#[derive(Debug)]
pub(crate) enum HubCommand {
    Register {
        client: ClientId,
        identity: Identity,
        link: ClientLink,
    },
    Input(Input),
}

/// How the hub reaches one connection.
#[derive(Debug)]
pub(crate) struct ClientLink {
    pub tx: mpsc::Sender<connection::Outbound>,
    /// Cancelled by the hub to drop a client that does not read its messages.
    pub kick: CancellationToken,
}

/// State shared by every connection task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Config,
    pub hub_tx: mpsc::Sender<HubCommand>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    admission: Mutex<Admission>,
    next_client: AtomicU64,
}

#[derive(Debug, Default)]
struct Admission {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A counted connection; uncounts itself when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
    pub client: ClientId,
}

impl Shared {
    /// Counts a new connection from `ip`, or says why it is refused.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, &'static str> {
        let mut admission = self
            .admission
            .lock()
            .expect("admission lock is never poisoned");
        if admission.total >= self.config.max_connections {
            return Err("the server is full; try again later");
        }
        let from_ip = admission.per_ip.entry(ip).or_default();
        if *from_ip >= self.config.max_connections_per_ip {
            return Err("too many connections from your address");
        }
        *from_ip += 1;
        admission.total += 1;
        self.metrics.connections.fetch_add(1, Relaxed);
        Ok(ConnectionSlot {
            shared: Arc::clone(self),
            ip,
            client: ClientId(self.next_client.fetch_add(1, Relaxed)),
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut admission = self
            .shared
            .admission
            .lock()
            .expect("admission lock is never poisoned");
        admission.total -= 1;
        if let Some(count) = admission.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                admission.per_ip.remove(&self.ip);
            }
        }
        self.shared.metrics.connections.fetch_sub(1, Relaxed);
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the storage thread: {0}")]
    Thread(std::io::Error),
}

/// A started server. Dropping it does not stop it: call [`RunningServer::shutdown`].
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    task: JoinHandle<()>,
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL clients connect to.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Starts a graceful shutdown: clients are told, then closed.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the server has stopped (after [`Self::shutdown`]).
    pub async fn stopped(self) {
        if let Err(err) = self.task.await {
            tracing::error!(%err, "server task failed");
        }
    }
}

/// Opens storage, binds, and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    config.validate()?;
    let data_dir = config.data_dir.clone();
    // SQLite is blocking I/O: open it and read the blocks off the async workers.
    let (storage, blocks) = tokio::task::spawn_blocking(move || {
        let storage = Storage::open(&data_dir)?;
        let blocks = storage.blocks()?;
        Ok::<_, StorageError>((storage, blocks))
    })
    .await
    .expect("opening storage does not panic")?;
    let mut hub = Hub::new(config.hub());
    tracing::info!(blocks = blocks.len(), "restored blocks");
    for (blocker, blocked) in blocks {
        hub.restore_block(blocker, blocked);
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;

    let (hub_tx, hub_rx) = mpsc::channel(HUB_QUEUE);
    let (writer_tx, writer_thread) =
        storage::spawn_writer(storage, hub_tx.clone()).map_err(ServerError::Thread)?;
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let shared = Arc::new(Shared {
        config,
        hub_tx,
        metrics: Arc::clone(&metrics),
        shutdown: shutdown.clone(),
        tracker: TaskTracker::new(),
        admission: Mutex::new(Admission::default()),
        next_client: AtomicU64::new(1),
    });

    let hub_stop = CancellationToken::new();
    let hub_task = tokio::spawn(run_hub(
        hub,
        hub_rx,
        writer_tx,
        Arc::clone(&metrics),
        hub_stop.clone(),
    ));
    let app = Router::new()
        .route("/v1/ws", get(connection::upgrade))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(render_metrics))
        .with_state(Arc::clone(&shared));

    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            // Signaling is small messages that must go out at once: no Nagle delay.
            let listener = listener.tap_io(|tcp| {
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::debug!(%err, "could not set TCP_NODELAY");
                }
            });
            let serve = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(err) = serve.await {
                tracing::error!(%err, "HTTP server failed");
            }
            // Connections saw the same token and are telling their clients; give them
            // the grace period, then stop the hub and let the writer drain its queue.
            shared.tracker.close();
            let grace = std::time::Duration::from_millis(shared.config.shutdown_grace_ms);
            if tokio::time::timeout(grace, shared.tracker.wait())
                .await
                .is_err()
            {
                tracing::warn!("some connections did not close within the grace period");
            }
            hub_stop.cancel();
            let _ = hub_task.await;
            let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
            tracing::info!("stopped");
        }
    });
    tracing::info!(%addr, "listening");
    Ok(RunningServer {
        addr,
        shutdown,
        metrics,
        task,
    })
}

async fn render_metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}

/// Runs the hub: applies commands and timeouts, and carries its outputs out.
async fn run_hub(
    mut hub: Hub,
    mut rx: mpsc::Receiver<HubCommand>,
    writer: std::sync::mpsc::SyncSender<WriteJob>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut links: HashMap<ClientId, ClientLink> = HashMap::new();
    loop {
        let deadline = hub.poll_timeout();
        let timer = async {
            match deadline {
                Some(due) => tokio::time::sleep_until(due.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                let now = Instant::now();
                apply(&mut hub, &mut links, cmd, now);
                // Take what else is queued before flushing, to batch under load.
                for _ in 0..256 {
                    match rx.try_recv() {
                        Ok(cmd) => apply(&mut hub, &mut links, cmd, now),
                        Err(_) => break,
                    }
                }
            }
            () = timer => hub.handle_timeout(Instant::now()),
        }
        flush(&mut hub, &mut links, &writer, &metrics);
        metrics.set_hub(hub.stats());
    }
}

fn apply(hub: &mut Hub, links: &mut HashMap<ClientId, ClientLink>, cmd: HubCommand, now: Instant) {
    match cmd {
        HubCommand::Register {
            client,
            identity,
            link,
        } => {
            links.insert(client, link);
            hub.handle(Input::Connected { client, identity }, now);
        }
        HubCommand::Input(input) => {
            if let Input::Disconnected { client } = &input {
                links.remove(client);
            }
            hub.handle(input, now);
        }
    }
}

fn flush(
    hub: &mut Hub,
    links: &mut HashMap<ClientId, ClientLink>,
    writer: &std::sync::mpsc::SyncSender<WriteJob>,
    metrics: &Metrics,
) {
    loop {
        let mut too_slow = Vec::new();
        let mut deliver = |client: ClientId, link: &ClientLink, text: Utf8Bytes| {
            match link.tx.try_send(connection::Outbound::Text(text)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => too_slow.push(client),
                // The connection is ending and will report its disconnect itself.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        };
        while let Some(output) = hub.poll_output() {
            match output {
                Output::Send(client, msg) => {
                    if let Some(link) = links.get(&client) {
                        deliver(client, link, encode(&msg).into());
                    }
                }
                Output::SendMany(clients, msg) => {
                    let text: Utf8Bytes = encode(&msg).into();
                    for client in clients {
                        if let Some(link) = links.get(&client) {
                            deliver(client, link, text.clone());
                        }
                    }
                }
                Output::Persist {
                    client,
                    record,
                    ack,
                } => {
                    let job = WriteJob {
                        client,
                        record,
                        ack,
                    };
                    if writer.try_send(job).is_err()
                        && let Some(link) = links.get(&client)
                    {
                        let msg = ServerMessage::error(
                            ErrorCode::Overloaded,
                            "could not store that now; try again",
                        );
                        deliver(client, link, encode(&msg).into());
                    }
                }
            }
        }
        if too_slow.is_empty() {
            return;
        }
        // A client whose queue is full is not reading: drop it rather than let it hold
        // memory or slow anyone else. Its peer hears `peer_left: disconnected`.
        for client in too_slow {
            if let Some(link) = links.remove(&client) {
                link.kick.cancel();
                metrics.slow_clients_dropped_total.fetch_add(1, Relaxed);
                hub.handle(Input::Disconnected { client }, Instant::now());
            }
        }
    }
}
