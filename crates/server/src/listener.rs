//! The accept loop and each connection's HTTP exchange. Every TCP connection is
//! accounted for from accept to close: admission ([`crate::admission`]) decides before
//! any byte of HTTP is read; the request's headers must arrive, and the request be
//! answered (or upgraded to a WebSocket), within `request_timeout_ms`; headers are
//! bounded in size; a kept-alive connection gets no more time than that for all its
//! requests (monitoring polls `/healthz` with a new one each time). The WebSocket that
//! follows an upgrade runs in
//! `connection`, holding the connection's slot until its socket is closed.
//!
//! Shutdown: the loop stops accepting, HTTP exchanges are asked to finish, WebSockets say
//! goodbye; whatever is still open when the grace period ends is closed ([`Stop::hard`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::Service;

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, Admitted, ConnectionSlot, Refusal, RefusalSlot};
use crate::config::Config;
use crate::hub_task::HubCommand;
use crate::metrics::Metrics;
use crate::proxy_protocol;

/// The most bytes a request's head (request line and headers) may take.
pub(crate) const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
/// Headers per request at most.
const MAX_HEADERS: usize = 32;
/// The kernel's send buffer per connection: signaling messages are small, and a client
/// that stops reading must not pin megabytes of kernel memory.
const SEND_BUFFER_BYTES: usize = 64 * 1024;
/// After a failed accept (out of file descriptors, say), wait this long before the next,
/// rather than spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Context {
    pub config: Config,
    pub hub_tx: mpsc::Sender<HubCommand>,
    pub metrics: Arc<Metrics>,
    pub stop: Stop,
    pub tracker: TaskTracker,
    pub admission: Arc<Admission>,
}

/// The two stages of stopping.
#[derive(Debug, Clone)]
pub(crate) struct Stop {
    /// Stop accepting; ask every connection to finish.
    pub graceful: CancellationToken,
    /// The grace period is over: close everything now.
    pub hard: CancellationToken,
}

/// What admission decided about a connection, handed to its request handler.
#[derive(Debug, Clone)]
pub(crate) enum Ticket {
    Admitted(Arc<ConnectionSlot>),
    /// To be told `too_many_connections`, then closed.
    Refused(Arc<RefusalSlot>, Refusal),
}

/// A connection's address and ticket, in each request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub peer: SocketAddr,
    pub ticket: Ticket,
}

/// Accepts until `stop.graceful`, serving each connection on a task of `ctx.tracker`.
pub(crate) async fn accept_loop(listener: TcpListener, app: Router, ctx: Arc<Context>, stop: Stop) {
    loop {
        let accepted = tokio::select! {
            () = stop.graceful.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(connection) => connection,
            Err(err) => {
                // EMFILE and friends: the connections in hand are fine; wait a moment.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if ctx.config.trusted_proxies.contains(&peer.ip()) {
            // The proxy names the client in a PROXY header; admission waits for it.
            let (ctx, app, stop) = (Arc::clone(&ctx), app.clone(), stop.clone());
            ctx.tracker.clone().spawn(async move {
                let mut tcp = tcp;
                let header =
                    tokio::time::timeout(ctx.config.request_timeout(), proxy_protocol::read(&mut tcp))
                        .await;
                let client = match header {
                    Ok(Ok(Some(client))) => client,
                    Ok(Ok(None)) => peer,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, %err, "closed: bad PROXY header from a trusted proxy");
                        return;
                    }
                    Err(_) => {
                        ctx.metrics.http_timeouts_total.fetch_add(1, Relaxed);
                        tracing::debug!(%peer, "closed: no PROXY header in time");
                        return;
                    }
                };
                if let Some(accepted) = admit(&ctx, client) {
                    tune(&tcp);
                    serve_http(tcp, accepted, app, Arc::clone(&ctx), stop).await;
                }
            });
            continue;
        }
        let Some(accepted) = admit(&ctx, peer) else {
            continue; // dropping the stream closes it
        };
        tune(&tcp);
        ctx.tracker.spawn(serve_http(
            tcp,
            accepted,
            app.clone(),
            Arc::clone(&ctx),
            stop.clone(),
        ));
    }
}

/// Admission's decision for a connection from `peer` (the client's address, which a
/// trusted proxy names); `None`: close it now, unanswered.
fn admit(ctx: &Arc<Context>, peer: SocketAddr) -> Option<Accepted> {
    let ticket = match ctx.admission.admit(peer.ip(), Instant::now()) {
        Admitted::Slot(slot) => Ticket::Admitted(Arc::new(slot)),
        Admitted::Refuse(slot, why) => Ticket::Refused(Arc::new(slot), why),
        Admitted::Drop(why) => {
            tracing::debug!(%peer, %why, "connection closed at accept");
            return None;
        }
    };
    Some(Accepted { peer, ticket })
}

/// Socket options: no Nagle delay (signaling is small messages that must go out at
/// once) and a bounded send buffer.
fn tune(tcp: &TcpStream) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(%err, "could not set TCP_NODELAY");
    }
    if let Err(err) = socket2::SockRef::from(tcp).set_send_buffer_size(SEND_BUFFER_BYTES) {
        tracing::debug!(%err, "could not set SO_SNDBUF");
    }
}

/// Serves the connection's one HTTP request within the request deadline. A WebSocket
/// upgrade hands the socket on (the exchange ends here, the WebSocket goes on).
async fn serve_http(
    tcp: TcpStream,
    accepted: Accepted,
    app: Router,
    ctx: Arc<Context>,
    stop: Stop,
) {
    let deadline = ctx.config.request_timeout();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(accepted.clone());
        let mut app = app.clone();
        async move { app.call(request).await }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(deadline)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES.max(8192))
        .max_headers(MAX_HEADERS);
    let exchange = builder
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(exchange);
    tokio::select! {
        result = exchange.as_mut() => {
            if let Err(err) = result {
                if err.is_timeout() {
                    // The headers did not arrive in time (hyper's own deadline).
                    ctx.metrics.http_timeouts_total.fetch_add(1, Relaxed);
                }
                tracing::debug!(%err, "HTTP exchange failed");
            }
        }
        () = tokio::time::sleep(deadline) => {
            ctx.metrics.http_timeouts_total.fetch_add(1, Relaxed);
            tracing::debug!("HTTP request not finished in time; closing");
        }
        () = stop.graceful.cancelled() => {
            exchange.as_mut().graceful_shutdown();
            tokio::select! {
                _ = exchange.as_mut() => {}
                () = stop.hard.cancelled() => {}
            }
        }
    }
}
