//! Server settings: defaults, overridden by a TOML file, overridden by the command line
//! and environment (see `main.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::hub::HubConfig;
use crate::matchmaker::MatchConfig;

/// Everything the server can be told. Every field has a default; durations are integers
/// in the unit their name ends with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where the SQLite database lives.
    pub data_dir: PathBuf,
    /// The server pings every client this often; three silent intervals disconnect it.
    pub heartbeat_interval_ms: u64,
    /// A client must say hello within this time.
    pub hello_timeout_ms: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Sustained messages per second per connection, and the burst above it. Every
    /// frame counts: text, binary (a protocol error) and pings.
    pub rate_limit_per_s: u32,
    pub rate_limit_burst: u32,
    /// Sustained messages per second shared by all connections of one address, and the
    /// burst: many connections from one address cannot multiply the per-connection rate.
    pub address_rate_limit_per_s: u32,
    pub address_rate_limit_burst: u32,
    /// A connection must finish its HTTP request (headers, and the WebSocket upgrade)
    /// within this time, or it is closed.
    pub request_timeout_ms: u64,
    /// A write to a client that takes longer than this means the client is not reading:
    /// it is disconnected.
    pub write_timeout_ms: u64,
    /// Reports one device may file per day (besides one per call).
    pub reports_per_device_per_day: u32,
    /// Matching: when a shared language alone, then anyone, becomes acceptable.
    pub language_only_after_ms: u64,
    pub anyone_after_ms: u64,
    /// How long two people who just talked are kept apart.
    pub cooldown_s: u64,
    pub online_count_interval_ms: u64,
    /// How long shutdown waits for clients to be told and closed.
    pub shutdown_grace_ms: u64,
    /// `stun:` URLs handed to clients.
    pub stun_urls: Vec<String>,
    /// `turn:`/`turns:` URLs handed to clients with short-lived credentials.
    pub turn_urls: Vec<String>,
    /// coturn's `static-auth-secret`; without it no TURN servers are handed out.
    pub turn_secret: Option<String>,
    /// Lifetime of issued TURN credentials. A relay allocation is refreshed with the
    /// credentials it was made with (every few minutes, for as long as the call lasts),
    /// so they must outlive the longest call: a day by default. Fresh ones are pushed
    /// (`ice_servers`) at half the lifetime.
    pub turn_ttl_s: u64,
    /// Proxies in front of the server (a TLS terminator on the same host, say
    /// `["127.0.0.1"]`). Connections from them must begin with a PROXY protocol v1
    /// header naming the client (nginx `stream`: `proxy_protocol on`), so per-address
    /// limits apply to clients, not to the proxy. Empty: no proxy is trusted.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How long a call outlives a member's lost connection, waiting for `resume_call`
    /// from the same device (0: end it at once).
    pub call_resume_grace_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            data_dir: PathBuf::from("chingu-data"),
            heartbeat_interval_ms: 4_000,
            hello_timeout_ms: 10_000,
            max_connections: 20_000,
            max_connections_per_ip: 32,
            rate_limit_per_s: 30,
            rate_limit_burst: 60,
            address_rate_limit_per_s: 300,
            address_rate_limit_burst: 600,
            request_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            reports_per_device_per_day: 20,
            language_only_after_ms: 3_000,
            anyone_after_ms: 15_000,
            cooldown_s: 120,
            online_count_interval_ms: 2_000,
            shutdown_grace_ms: 3_000,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl_s: 86_400,
            trusted_proxies: Vec::new(),
            call_resume_grace_ms: 15_000,
        }
    }
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Rejects settings that would make the server misbehave rather than fail.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &str| Err(ConfigError::Invalid(what.to_owned()));
        if self.heartbeat_interval_ms == 0 || self.hello_timeout_ms == 0 {
            return bad("heartbeat_interval_ms and hello_timeout_ms must be positive");
        }
        if self.rate_limit_per_s == 0
            || self.rate_limit_burst == 0
            || self.address_rate_limit_per_s == 0
            || self.address_rate_limit_burst == 0
        {
            return bad("rate limits and their bursts must be positive");
        }
        if self.request_timeout_ms == 0 || self.write_timeout_ms == 0 {
            return bad("request_timeout_ms and write_timeout_ms must be positive");
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return bad("max_connections and max_connections_per_ip must be positive");
        }
        if self.online_count_interval_ms == 0 {
            return bad("online_count_interval_ms must be positive");
        }
        if !self.turn_urls.is_empty() && self.turn_secret.is_none() {
            return bad("turn_urls need turn_secret");
        }
        Ok(())
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// A client silent this long is gone: three missed heartbeats.
    pub fn idle_timeout(&self) -> Duration {
        3 * self.heartbeat_interval()
    }

    pub fn hub(&self) -> HubConfig {
        HubConfig {
            matching: MatchConfig {
                language_only_after: Duration::from_millis(self.language_only_after_ms),
                anyone_after: Duration::from_millis(self.anyone_after_ms),
                cooldown: Duration::from_secs(self.cooldown_s),
                ..MatchConfig::default()
            },
            online_count_interval: Duration::from_millis(self.online_count_interval_ms),
            reports_per_device_per_day: self.reports_per_device_per_day,
            resume_grace: Duration::from_millis(self.call_resume_grace_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_detects_a_silent_client_within_15_seconds() {
        let config = Config::default();
        // The reader's deadline is reset by every frame, so silence is noticed exactly
        // idle_timeout after the last one.
        assert!(
            config.idle_timeout() <= Duration::from_secs(15),
            "issue #2 asks for detection within 15 s, default is {:?}",
            config.idle_timeout()
        );
        config.validate().expect("defaults are valid");
    }

    #[test]
    fn a_file_overrides_some_fields_and_rejects_unknown_ones() {
        let config: Config =
            toml::from_str("listen = \"0.0.0.0:9000\"\ncooldown_s = 5\n").expect("valid");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.cooldown_s, 5);
        assert_eq!(config.rate_limit_per_s, Config::default().rate_limit_per_s);
        let err = toml::from_str::<Config>("listne = \"0.0.0.0:9000\"").unwrap_err();
        assert!(
            err.to_string().contains("listne"),
            "names the bad key: {err}"
        );
    }

    #[test]
    fn turn_urls_without_a_secret_are_refused() {
        let config = Config {
            turn_urls: vec!["turn:127.0.0.1:3478".into()],
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }
}
