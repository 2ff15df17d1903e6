//! Connection admission, decided when a TCP connection is accepted — before any byte of
//! HTTP is read: how many connections the server holds in all and per source address.
//! A [`ConnectionSlot`] is the permission to hold one; it counts itself out when
//! dropped, and the connection's task holds it until the socket is closed, so a
//! connection is counted exactly as long as it exists.
//!
//! Over a limit, a few connections per address get a short-lived refusal slot: enough
//! to finish the WebSocket handshake and hear `too_many_connections` (docs/protocol.md).
//! Beyond those, the socket is closed at once.
//!
//! Each address also shares one message budget among its connections (a token bucket
//! per address, besides each connection's own), so that many connections from one
//! address cannot multiply what one may send.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::ids::ClientId;
use crate::metrics::Metrics;
use crate::ratelimit::TokenBucket;

/// Refusals being told at once per address; more are closed without a word.
pub(crate) const REFUSALS_PER_ADDRESS: usize = 4;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("the server is full; try again later")]
    ServerFull,
    #[error("too many connections from your address")]
    TooManyFromAddress,
}

/// The limits admission enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_total: usize,
    pub max_per_address: usize,
    /// Messages per second shared by all connections of one address, and the burst.
    pub address_rate_per_s: u32,
    pub address_rate_burst: u32,
}

/// Counts connections against the configured limits.
#[derive(Debug)]
pub(crate) struct Admission {
    limits: Limits,
    counts: Mutex<Counts>,
    metrics: Arc<Metrics>,
    next_client: AtomicU64,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    refusing: usize,
    per_address: HashMap<IpAddr, Address>,
}

#[derive(Debug)]
struct Address {
    connections: usize,
    refusing: usize,
    budget: Arc<Mutex<TokenBucket>>,
}

/// What to do with a new connection.
#[derive(Debug)]
pub(crate) enum Admitted {
    /// Serve it.
    Slot(ConnectionSlot),
    /// Tell it why not (`too_many_connections`), briefly, then close.
    Refuse(RefusalSlot, Refusal),
    /// Close it now.
    Drop(Refusal),
}

/// A counted connection; counts itself out when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionSlot {
    admission: Arc<Admission>,
    ip: IpAddr,
    pub client: ClientId,
    /// The message budget this connection shares with the others from its address.
    budget: Arc<Mutex<TokenBucket>>,
}

/// A connection being told it is refused; counts itself out when dropped.
#[derive(Debug)]
pub(crate) struct RefusalSlot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    pub(crate) fn new(limits: Limits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::default(),
            metrics,
            next_client: AtomicU64::new(1),
        })
    }

    /// The counts are plain integers, consistent after any panic.
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decides what to do with a connection from `ip`, accepted at `now`.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Admitted {
        let mut counts = self.counts();
        let limits = self.limits;
        let refusal = if counts.total >= limits.max_total {
            Some(Refusal::ServerFull)
        } else if counts
            .per_address
            .get(&ip)
            .is_some_and(|a| a.connections >= limits.max_per_address)
        {
            Some(Refusal::TooManyFromAddress)
        } else {
            None
        };
        let counts = &mut *counts;
        let address = counts.per_address.entry(ip).or_insert_with(|| Address {
            connections: 0,
            refusing: 0,
            budget: Arc::new(Mutex::new(TokenBucket::new(
                limits.address_rate_per_s,
                limits.address_rate_burst,
                now,
            ))),
        });
        match refusal {
            None => {
                address.connections += 1;
                counts.total += 1;
                self.metrics.connections.fetch_add(1, Relaxed);
                Admitted::Slot(ConnectionSlot {
                    admission: Arc::clone(self),
                    ip,
                    client: ClientId(self.next_client.fetch_add(1, Relaxed)),
                    budget: Arc::clone(&address.budget),
                })
            }
            // Refusals are bounded too: per address, and in all to the total limit.
            Some(why)
                if address.refusing < REFUSALS_PER_ADDRESS
                    && counts.refusing < limits.max_total / 8 + REFUSALS_PER_ADDRESS =>
            {
                address.refusing += 1;
                counts.refusing += 1;
                self.count_refusal(why, false);
                Admitted::Refuse(
                    RefusalSlot {
                        admission: Arc::clone(self),
                        ip,
                    },
                    why,
                )
            }
            Some(why) => {
                let idle = address.connections == 0 && address.refusing == 0;
                if idle {
                    counts.per_address.remove(&ip);
                }
                self.count_refusal(why, true);
                Admitted::Drop(why)
            }
        }
    }

    fn count_refusal(&self, why: Refusal, silently: bool) {
        let m = &self.metrics;
        m.connections_rejected_total.fetch_add(1, Relaxed);
        match why {
            Refusal::ServerFull => &m.refused_server_full_total,
            Refusal::TooManyFromAddress => &m.refused_address_limit_total,
        }
        .fetch_add(1, Relaxed);
        if silently {
            m.refused_silently_total.fetch_add(1, Relaxed);
        }
    }

    fn release(&self, ip: IpAddr, refusing: bool) {
        let mut counts = self.counts();
        if refusing {
            counts.refusing -= 1;
        } else {
            counts.total -= 1;
        }
        if let Some(address) = counts.per_address.get_mut(&ip) {
            if refusing {
                address.refusing -= 1;
            } else {
                address.connections -= 1;
            }
            if address.connections == 0 && address.refusing == 0 {
                counts.per_address.remove(&ip);
            }
        }
    }

    /// Connections held now, in all and from `ip` (refusals not counted).
    #[cfg(test)]
    pub(crate) fn held(&self, ip: IpAddr) -> (usize, usize) {
        let counts = self.counts();
        let from = counts.per_address.get(&ip).map_or(0, |a| a.connections);
        (counts.total, from)
    }
}

impl ConnectionSlot {
    /// Takes one message from the address's shared budget.
    pub(crate) fn take_address_token(&self, now: Instant) -> bool {
        self.budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_take(now)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.admission.release(self.ip, false);
        self.admission.metrics.connections.fetch_sub(1, Relaxed);
    }
}

impl Drop for RefusalSlot {
    fn drop(&mut self) {
        self.admission.release(self.ip, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_total: usize, max_per_address: usize) -> Arc<Admission> {
        Admission::new(
            Limits {
                max_total,
                max_per_address,
                address_rate_per_s: 10,
                address_rate_burst: 3,
            },
            Arc::new(Metrics::default()),
        )
    }

    fn slot(admitted: Admitted) -> ConnectionSlot {
        match admitted {
            Admitted::Slot(slot) => slot,
            other => panic!("expected a slot, got {other:?}"),
        }
    }

    #[test]
    fn limits_hold_and_slots_count_themselves_out() {
        let admission = admission(3, 2);
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = slot(admission.admit(a, now));
        let a2 = slot(admission.admit(a, now));
        assert!(matches!(
            admission.admit(a, now),
            Admitted::Refuse(_, Refusal::TooManyFromAddress)
        ));
        let _b1 = slot(admission.admit(b, now));
        assert!(matches!(
            admission.admit(b, now),
            Admitted::Refuse(_, Refusal::ServerFull)
        ));
        assert_ne!(a1.client, a2.client, "each connection gets its own id");
        drop(a1);
        assert_eq!(admission.held(a), (2, 1));
        let _a3 = slot(admission.admit(a, now));
    }

    #[test]
    fn refusals_are_few_per_address_then_connections_are_dropped() {
        let admission = admission(100, 1);
        let now = Instant::now();
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let _held = slot(admission.admit(ip, now));
        let refusing: Vec<_> = (0..REFUSALS_PER_ADDRESS)
            .map(|_| match admission.admit(ip, now) {
                Admitted::Refuse(slot, _) => slot,
                other => panic!("expected a refusal slot, got {other:?}"),
            })
            .collect();
        assert!(
            matches!(admission.admit(ip, now), Admitted::Drop(_)),
            "beyond the refusal budget the socket is closed at once"
        );
        drop(refusing);
        assert!(matches!(admission.admit(ip, now), Admitted::Refuse(..)));
    }

    #[test]
    fn connections_from_one_address_share_its_message_budget() {
        let admission = admission(100, 10);
        let now = Instant::now();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let a = slot(admission.admit(ip, now));
        let b = slot(admission.admit(ip, now));
        let other = slot(admission.admit("10.0.0.8".parse().unwrap(), now));
        let taken = (0..4)
            .filter(|i| if i % 2 == 0 { &a } else { &b }.take_address_token(now))
            .count();
        assert_eq!(taken, 3, "the burst of 3 is shared by both connections");
        assert!(other.take_address_token(now), "another address has its own");
    }
}
