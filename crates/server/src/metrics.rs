//! Counters and gauges, rendered in the Prometheus text format at `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::hub::HubStats;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket connections, including those still in the handshake.
    pub connections: AtomicU64,
    pub connected_clients: AtomicU64,
    pub queue_waiting: AtomicU64,
    pub calls_active: AtomicU64,
    pub matches_total: AtomicU64,
    pub protocol_errors_total: AtomicU64,
    pub rate_limited_total: AtomicU64,
    pub connections_rejected_total: AtomicU64,
    pub slow_clients_dropped_total: AtomicU64,
    pub heartbeat_timeouts_total: AtomicU64,
}

impl Metrics {
    pub fn set_hub(&self, stats: HubStats) {
        self.connected_clients.store(stats.online, Relaxed);
        self.queue_waiting.store(stats.waiting, Relaxed);
        self.calls_active.store(stats.calls_active, Relaxed);
        self.matches_total.store(stats.matches_total, Relaxed);
    }

    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 10] = [
            (
                "chingu_connections",
                "gauge",
                "Open WebSocket connections.",
                &self.connections,
            ),
            (
                "chingu_connected_clients",
                "gauge",
                "Clients past the hello handshake.",
                &self.connected_clients,
            ),
            (
                "chingu_queue_waiting",
                "gauge",
                "Clients waiting for a partner.",
                &self.queue_waiting,
            ),
            (
                "chingu_calls_active",
                "gauge",
                "Calls in progress.",
                &self.calls_active,
            ),
            (
                "chingu_matches_total",
                "counter",
                "Pairs matched since start.",
                &self.matches_total,
            ),
            (
                "chingu_protocol_errors_total",
                "counter",
                "Client messages rejected with an error code.",
                &self.protocol_errors_total,
            ),
            (
                "chingu_rate_limited_total",
                "counter",
                "Client messages dropped by the rate limit.",
                &self.rate_limited_total,
            ),
            (
                "chingu_connections_rejected_total",
                "counter",
                "Connections refused by connection limits.",
                &self.connections_rejected_total,
            ),
            (
                "chingu_slow_clients_dropped_total",
                "counter",
                "Clients disconnected for not reading their messages.",
                &self.slow_clients_dropped_total,
            ),
            (
                "chingu_heartbeat_timeouts_total",
                "counter",
                "Clients disconnected after missing heartbeats.",
                &self.heartbeat_timeouts_total,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Relaxed)
            );
        }
        out
    }
}
