//! The I/O shell: binds the listener, routes HTTP, starts the hub task and the storage
//! writer, and shuts everything down in order.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, Limits};
use crate::config::{Config, ConfigError};
use crate::connection;
use crate::hub::Hub;
use crate::hub_task::{self, HUB_QUEUE};
use crate::listener::{self, Context, Stop};
use crate::metrics::Metrics;
use crate::storage::{Storage, StorageError};

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

/// After a hard stop, how long the aborted connection tasks get to unwind.
const HARD_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens storage, binds, and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    config.validate()?;
    let data_dir = config.data_dir.clone();
    // SQLite is blocking I/O: open it and read the blocks off the async workers.
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (storage, blocks, friendships, requests) = tokio::task::spawn_blocking(move || {
        let storage = Storage::open(&data_dir)?;
        let blocks = storage.blocks()?;
        let friendships = storage.friendships()?;
        let requests = storage.friend_requests(now_unix as i64)?;
        Ok::<_, StorageError>((storage, blocks, friendships, requests))
    })
    .await
    .expect("opening storage does not panic")?;
    let mut hub = Hub::new(config.hub());
    let now = std::time::Instant::now();
    hub.set_epoch(now, now_unix);
    tracing::info!(
        blocks = blocks.len(),
        friendships = friendships.len(),
        friend_requests = requests.len(),
        "restored"
    );
    for (blocker, blocked) in blocks {
        hub.restore_block(blocker, blocked);
    }
    for f in friendships {
        hub.restore_friendship(f.id, f.devices, f.nicknames, f.last_call_unix);
    }
    for request in requests {
        hub.restore_friend_request(request, now);
    }

    let listener = bind(config.listen).map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;

    let (hub_tx, hub_rx) = mpsc::channel(HUB_QUEUE);
    let (writer_tx, writer_thread) =
        hub_task::spawn_writer(storage, hub_tx.clone()).map_err(ServerError::Thread)?;
    let metrics = Arc::new(Metrics::default());
    let stop = Stop {
        graceful: CancellationToken::new(),
        hard: CancellationToken::new(),
    };
    let admission = Admission::new(
        Limits {
            max_total: config.max_connections,
            max_per_address: config.max_connections_per_ip,
            address_rate_per_s: config.address_rate_limit_per_s,
            address_rate_burst: config.address_rate_limit_burst,
        },
        Arc::clone(&metrics),
    );
    let shared = Arc::new(Context {
        config,
        hub_tx,
        metrics: Arc::clone(&metrics),
        stop: stop.clone(),
        tracker: TaskTracker::new(),
        admission,
    });

    let hub_stop = CancellationToken::new();
    let hub_task = tokio::spawn(hub_task::run_hub(
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
        let stop = stop.clone();
        async move {
            listener::accept_loop(listener, app, Arc::clone(&shared), stop.clone()).await;
            // Connections saw the same token and are telling their clients (HTTP
            // exchanges are asked to finish); give them the grace period, then close
            // whatever is left, so that shutdown ends in time whatever clients do.
            shared.tracker.close();
            let grace = shared.config.shutdown_grace();
            if tokio::time::timeout(grace, shared.tracker.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    open = shared.tracker.len(),
                    "connections still open after the grace period; closing them"
                );
                stop.hard.cancel();
                let _ = tokio::time::timeout(HARD_STOP_WAIT, shared.tracker.wait()).await;
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
        shutdown: stop.graceful,
        metrics,
        task,
    })
}

/// Pending connections the kernel queues for `accept`. A burst of connections (one
/// address opening thousands a second) must not push honest ones out of the queue, where
/// a dropped SYN costs them a second.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn render_metrics(State(shared): State<Arc<Context>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}
