//! Identifiers the server mints or derives.

use sha2::{Digest, Sha256};

/// One WebSocket connection, numbered by the server. Never sent to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// A device, derived from the secret device id it sends in `hello`: the first 16 bytes of
/// its SHA-256. Blocks, reports and cooldowns are keyed by this, so they outlive a
/// connection and the secret itself is never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity(pub [u8; 16]);

impl Identity {
    pub fn from_device_id(device_id: &str) -> Self {
        let digest = Sha256::digest(device_id.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Identity(bytes)
    }

    /// Lowercase hex, as stored in the database.
    pub fn to_hex(self) -> String {
        hex(&self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Identity(bytes))
    }
}

/// 128 random bits as 32 hex characters, for session and call ids.
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    // getrandom fails only when the OS has no entropy source at all; then no id we could
    // mint would be safe, so stopping is right.
    getrandom::fill(&mut bytes).expect("the OS provides random bytes");
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_hex_round_trips_and_rejects_junk() {
        let id = Identity::from_device_id("device-0123456789abcdef");
        assert_eq!(Identity::from_hex(&id.to_hex()), Some(id));
        assert_eq!(Identity::from_hex("zz"), None);
        assert_eq!(Identity::from_hex(&"g".repeat(32)), None);
        assert_ne!(id, Identity::from_device_id("device-0123456789abcdeF"));
    }

    #[test]
    fn tokens_are_hex_and_distinct() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
