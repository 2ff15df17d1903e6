//! Counters and gauges, rendered in the Prometheus text format at `GET /metrics`. What
//! the server refused, and why, is counted as carefully as what it served.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::hub::HubStats;

/// One metric: name, type, help, and its values by label set.
type Row<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, &'a AtomicU64)>);

#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections held, from accept to the socket's close (refusals not counted).
    pub connections: AtomicU64,
    pub connected_clients: AtomicU64,
    pub queue_waiting: AtomicU64,
    pub calls_active: AtomicU64,
    pub matches_total: AtomicU64,
    pub protocol_errors_total: AtomicU64,
    /// Messages dropped by a connection's own rate limit.
    pub rate_limited_total: AtomicU64,
    /// Messages dropped by the budget shared by an address's connections.
    pub address_rate_limited_total: AtomicU64,
    /// Connections refused by a connection limit (told or closed at once).
    pub connections_rejected_total: AtomicU64,
    pub refused_server_full_total: AtomicU64,
    pub refused_address_limit_total: AtomicU64,
    /// Refused connections closed without being told (over the refusal budget).
    pub refused_silently_total: AtomicU64,
    /// Connections closed for not finishing their HTTP request (headers or upgrade) in
    /// time.
    pub http_timeouts_total: AtomicU64,
    pub slow_clients_dropped_total: AtomicU64,
    /// Writes to a client that did not complete in time (the client was dropped).
    pub write_timeouts_total: AtomicU64,
    pub heartbeat_timeouts_total: AtomicU64,
    /// Queue entries replaced by a newer join from another connection of the same device.
    pub queue_displaced_total: AtomicU64,
    /// Reports refused: a second one about the same call, or over a device's daily budget.
    pub reports_refused_total: AtomicU64,
    /// Connections still open when the shutdown grace period ended (then closed).
    pub shutdown_aborted_total: AtomicU64,
    pub friendships: AtomicU64,
    pub presence_sent_total: AtomicU64,
}

impl Metrics {
    pub fn set_hub(&self, stats: HubStats) {
        self.connected_clients.store(stats.online, Relaxed);
        self.queue_waiting.store(stats.waiting, Relaxed);
        self.calls_active.store(stats.calls_active, Relaxed);
        self.matches_total.store(stats.matches_total, Relaxed);
        self.queue_displaced_total
            .store(stats.queue_displaced_total, Relaxed);
        self.reports_refused_total
            .store(stats.reports_refused_total, Relaxed);
        self.friendships.store(stats.friendships, Relaxed);
        self.presence_sent_total
            .store(stats.presence_sent_total, Relaxed);
    }

    pub fn render(&self) -> String {
        let plain = |value| vec![("", value)];
        let rows: Vec<Row<'_>> = vec![
            (
                "chingu_connections",
                "gauge",
                "Open TCP connections, from accept to close, including the one reading this (refusals not counted).",
                plain(&self.connections),
            ),
            (
                "chingu_connected_clients",
                "gauge",
                "Clients past the hello handshake.",
                plain(&self.connected_clients),
            ),
            (
                "chingu_queue_waiting",
                "gauge",
                "Clients waiting for a partner.",
                plain(&self.queue_waiting),
            ),
            (
                "chingu_calls_active",
                "gauge",
                "Calls in progress.",
                plain(&self.calls_active),
            ),
            (
                "chingu_matches_total",
                "counter",
                "Pairs matched since start.",
                plain(&self.matches_total),
            ),
            (
                "chingu_protocol_errors_total",
                "counter",
                "Client messages rejected with an error code.",
                plain(&self.protocol_errors_total),
            ),
            (
                "chingu_rate_limited_total",
                "counter",
                "Client frames dropped by a connection's own rate limit.",
                plain(&self.rate_limited_total),
            ),
            (
                "chingu_address_rate_limited_total",
                "counter",
                "Client frames dropped by the budget an address's connections share.",
                plain(&self.address_rate_limited_total),
            ),
            (
                "chingu_connections_rejected_total",
                "counter",
                "Connections refused by connection limits.",
                plain(&self.connections_rejected_total),
            ),
            (
                "chingu_connections_refused_total",
                "counter",
                "Connections refused, by limit; silently: closed without being told.",
                vec![
                    ("{reason=\"server_full\"}", &self.refused_server_full_total),
                    (
                        "{reason=\"address_limit\"}",
                        &self.refused_address_limit_total,
                    ),
                    ("{reason=\"silently\"}", &self.refused_silently_total),
                ],
            ),
            (
                "chingu_http_timeouts_total",
                "counter",
                "Connections closed for not finishing their HTTP request in time.",
                plain(&self.http_timeouts_total),
            ),
            (
                "chingu_slow_clients_dropped_total",
                "counter",
                "Clients disconnected for not reading their messages.",
                plain(&self.slow_clients_dropped_total),
            ),
            (
                "chingu_write_timeouts_total",
                "counter",
                "Writes to a client that did not complete in time.",
                plain(&self.write_timeouts_total),
            ),
            (
                "chingu_heartbeat_timeouts_total",
                "counter",
                "Clients disconnected after missing heartbeats.",
                plain(&self.heartbeat_timeouts_total),
            ),
            (
                "chingu_queue_displaced_total",
                "counter",
                "Queue entries replaced by a join from another connection of the same device.",
                plain(&self.queue_displaced_total),
            ),
            (
                "chingu_reports_refused_total",
                "counter",
                "Reports refused: repeated for a call, or over a device's daily budget.",
                plain(&self.reports_refused_total),
            ),
            (
                "chingu_friendships",
                "gauge",
                "Friendships held by the server.",
                plain(&self.friendships),
            ),
            (
                "chingu_presence_sent_total",
                "counter",
                "Presence messages sent to friends.",
                plain(&self.presence_sent_total),
            ),
            (
                "chingu_shutdown_aborted_total",
                "counter",
                "Connections closed because they outlived the shutdown grace period.",
                plain(&self.shutdown_aborted_total),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, values) in rows {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in values {
                let _ = writeln!(out, "{name}{labels} {}", value.load(Relaxed));
            }
        }
        out
    }
}
