//! The I/O shell: binds the listener, routes HTTP, starts the hub task and the storage
//! writer, and shuts everything down in order.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::config::{Config, ConfigError};
use crate::connection::{self, Context};
use crate::hub::Hub;
use crate::hub_task::{self, HUB_QUEUE};
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
        hub_task::spawn_writer(storage, hub_tx.clone()).map_err(ServerError::Thread)?;
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    let admission = Admission::new(
        config.max_connections,
        config.max_connections_per_ip,
        Arc::clone(&metrics),
    );
    let shared = Arc::new(Context {
        config,
        hub_tx,
        metrics: Arc::clone(&metrics),
        shutdown: shutdown.clone(),
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

async fn render_metrics(State(shared): State<Arc<Context>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}
