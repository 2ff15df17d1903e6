//! The tasks one peer starts, owned so that closing the peer ends them all.

use std::future::Future;

use tokio::task::JoinSet;

/// The tasks one peer runs. Spawning after [`Self::shutdown`] starts nothing.
#[derive(Debug)]
pub(crate) struct PeerTasks {
    set: std::sync::Mutex<Option<JoinSet<()>>>,
}

impl PeerTasks {
    pub(super) fn new() -> Self {
        Self {
            set: std::sync::Mutex::new(Some(JoinSet::new())),
        }
    }

    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut set = self
            .set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match set.as_mut() {
            Some(set) => {
                set.spawn(task);
            }
            None => tracing::debug!("peer closed: task not started"),
        }
    }

    /// Aborts every task and waits for them to end.
    pub(super) async fn shutdown(&self) {
        let set = self
            .set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(mut set) = set {
            set.shutdown().await;
        }
    }
}
