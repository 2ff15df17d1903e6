//! The hub task: the one owner of the sans-IO [`Hub`] and of the way to reach each
//! connection. It applies what connections send and what the clock says, and carries the
//! hub's outputs out: messages to connections' outboxes (a full outbox drops that client),
//! records to the storage writer thread, whose results come back as hub inputs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use chingu_proto::{ErrorCode, ServerMessage, encode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hub::{Hub, Input, Output, Record};
use crate::ids::{ClientId, Identity};
use crate::metrics::Metrics;
use crate::storage::Storage;

/// Capacity of the queue into the hub. Connections wait when it is full, which slows
/// every sender equally; rate limits keep any one connection's share small.
pub(crate) const HUB_QUEUE: usize = 4096;
/// Records waiting for the disk; beyond this a request is refused (`overloaded`).
const STORAGE_QUEUE: usize = 1024;

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
    pub tx: mpsc::Sender<Outbound>,
    /// Cancelled by the hub to drop a client that does not read its messages.
    pub kick: CancellationToken,
}

/// What a connection's writer sends.
#[derive(Debug)]
pub(crate) enum Outbound {
    Text(Utf8Bytes),
    /// Send a close frame and stop.
    Close(u16, &'static str),
}

/// A record to write, who asked for it, and what to send once it is written.
#[derive(Debug)]
pub(crate) struct WriteJob {
    pub client: Option<ClientId>,
    pub record: Record,
    pub acks: Vec<(ClientId, ServerMessage)>,
}

/// Starts the storage writer thread. Its queue is bounded: when full, the hub refuses
/// the request rather than waiting, so it never blocks on the disk. Results go back to
/// the hub as [`Input::Persisted`]; the thread ends when the hub drops its sender.
pub(crate) fn spawn_writer(
    mut storage: Storage,
    results: mpsc::Sender<HubCommand>,
) -> std::io::Result<(std_mpsc::SyncSender<WriteJob>, JoinHandle<()>)> {
    let (tx, rx) = std_mpsc::sync_channel::<WriteJob>(STORAGE_QUEUE);
    let handle = std::thread::Builder::new()
        .name("chingu-storage".into())
        .spawn(move || {
            for job in rx {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let result = match storage.store(&job.record, now) {
                    Ok(()) => Ok(job.acks),
                    Err(err) => {
                        tracing::error!(%err, "storing a record failed");
                        Err(())
                    }
                };
                let input = Input::Persisted {
                    client: job.client,
                    result,
                };
                // The hub is gone only during shutdown; nothing is left to tell.
                if results.blocking_send(HubCommand::Input(input)).is_err() {
                    break;
                }
            }
        })?;
    Ok((tx, handle))
}

/// Runs the hub: applies commands and timeouts, and carries its outputs out.
pub(crate) async fn run_hub(
    mut hub: Hub,
    mut rx: mpsc::Receiver<HubCommand>,
    writer: std_mpsc::SyncSender<WriteJob>,
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
            if let Input::Disconnected { client, .. } = &input {
                links.remove(client);
            }
            hub.handle(input, now);
        }
    }
}

fn flush(
    hub: &mut Hub,
    links: &mut HashMap<ClientId, ClientLink>,
    writer: &std_mpsc::SyncSender<WriteJob>,
    metrics: &Metrics,
) {
    loop {
        let mut too_slow = Vec::new();
        let mut deliver = |client: ClientId, link: &ClientLink, text: Utf8Bytes| {
            match link.tx.try_send(Outbound::Text(text)) {
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
                    acks,
                } => {
                    let job = WriteJob {
                        client,
                        record,
                        acks,
                    };
                    if writer.try_send(job).is_err()
                        && let Some((client, link)) =
                            client.and_then(|c| links.get(&c).map(|l| (c, l)))
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
                hub.handle(
                    Input::Disconnected {
                        client,
                        silent: false,
                    },
                    Instant::now(),
                );
            }
        }
    }
}
