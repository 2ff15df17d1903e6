//! Connection admission: how many connections the server holds in all and per source
//! address. A [`ConnectionSlot`] is the permission to hold one; it counts itself out when
//! dropped, so a connection is counted exactly as long as something holds its slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::ids::ClientId;
use crate::metrics::Metrics;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("the server is full; try again later")]
    ServerFull,
    #[error("too many connections from your address")]
    TooManyFromAddress,
}

/// Counts connections against the configured limits.
#[derive(Debug)]
pub(crate) struct Admission {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
    metrics: Arc<Metrics>,
    next_client: AtomicU64,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A counted connection; counts itself out when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    admission: Arc<Admission>,
    ip: IpAddr,
    pub client: ClientId,
}

impl Admission {
    pub(crate) fn new(max_total: usize, max_per_ip: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_ip,
            counts: Mutex::default(),
            metrics,
            next_client: AtomicU64::new(1),
        })
    }

    /// The counts are plain integers, consistent after any panic.
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new connection from `ip`, or says why it is refused.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(Refusal::ServerFull);
        }
        let from_ip = counts.per_ip.entry(ip).or_default();
        if *from_ip >= self.max_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        *from_ip += 1;
        counts.total += 1;
        self.metrics.connections.fetch_add(1, Relaxed);
        Ok(ConnectionSlot {
            admission: Arc::clone(self),
            ip,
            client: ClientId(self.next_client.fetch_add(1, Relaxed)),
        })
    }

    /// Connections held now, in all and from `ip`.
    #[cfg(test)]
    pub(crate) fn held(&self, ip: IpAddr) -> (usize, usize) {
        let counts = self.counts();
        (counts.total, counts.per_ip.get(&ip).copied().unwrap_or(0))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.admission.counts();
        counts.total -= 1;
        if let Some(count) = counts.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
        self.admission.metrics.connections.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_and_slots_count_themselves_out() {
        let admission = Admission::new(3, 2, Arc::new(Metrics::default()));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = admission.admit(a).expect("first from a");
        let _a2 = admission.admit(a).expect("second from a");
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::TooManyFromAddress);
        let _b1 = admission.admit(b).expect("first from b");
        assert_eq!(admission.admit(b).unwrap_err(), Refusal::ServerFull);
        assert_ne!(a1.client, _a2.client, "each connection gets its own id");
        drop(a1);
        assert_eq!(admission.held(a), (2, 1));
        let _a3 = admission.admit(a).expect("room again");
    }
}
