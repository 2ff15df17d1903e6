//! ICE servers for a session, with TURN REST credentials (the scheme coturn checks with
//! `use-auth-secret`): username `expiry:session`, password base64(HMAC-SHA1(secret, username)).

use base64::Engine;
use chingu_proto::IceServer;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::config::Config;

pub fn ice_servers(config: &Config, session: &str, now_unix: u64) -> Vec<IceServer> {
    let mut servers = Vec::new();
    if !config.stun_urls.is_empty() {
        servers.push(IceServer {
            urls: config.stun_urls.clone(),
            username: None,
            credential: None,
        });
    }
    if let (false, Some(secret)) = (config.turn_urls.is_empty(), &config.turn_secret) {
        let username = format!("{}:{session}", now_unix + config.turn_ttl_s);
        servers.push(IceServer {
            urls: config.turn_urls.clone(),
            credential: Some(turn_password(secret, &username)),
            username: Some(username),
        });
    }
    servers
}

/// How often fresh credentials are pushed (`ice_servers`): at half their lifetime, at
/// most once a second. `None` without TURN.
pub fn refresh_interval(config: &Config) -> Option<std::time::Duration> {
    (!config.turn_urls.is_empty() && config.turn_secret.is_some())
        .then(|| std::time::Duration::from_secs((config.turn_ttl_s / 2).max(1)))
}

pub fn turn_password(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_matches_an_independent_hmac_sha1() {
        // Computed with: printf '1700000600:alice' | openssl dgst -sha1 -hmac s3cret -binary | base64
        assert_eq!(
            turn_password("s3cret", "1700000600:alice"),
            "bUIJIVaC05oyFgKsQvKAparqg1Q="
        );
    }

    #[test]
    fn turn_is_offered_only_with_a_secret() {
        let mut config = Config {
            stun_urls: vec!["stun:127.0.0.1:3478".into()],
            ..Config::default()
        };
        assert_eq!(ice_servers(&config, "s", 0).len(), 1);
        assert_eq!(
            refresh_interval(&config),
            None,
            "nothing to refresh without TURN"
        );
        config.turn_ttl_s = 600;
        config.turn_urls = vec!["turn:127.0.0.1:3478".into()];
        config.turn_secret = Some("k".into());
        let servers = ice_servers(&config, "s", 1000);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].username.as_deref(), Some("1600:s"));
        assert_eq!(
            refresh_interval(&config),
            Some(std::time::Duration::from_secs(300))
        );
        config.turn_ttl_s = 1;
        assert_eq!(
            refresh_interval(&config),
            Some(std::time::Duration::from_secs(1))
        );
    }
}
