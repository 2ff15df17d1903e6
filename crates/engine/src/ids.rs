//! Random identifiers: SSRCs, device ids and tokens. The one place that asks the OS for
//! random bytes on the client side.

/// `N` random bytes from the OS. `getrandom` fails only on exotic platforms; there the
/// clock stands in, which keeps ids unique enough for a call (not for secrets: a device
/// id made there is guessable, so it is logged).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Err(e) = getrandom::fill(&mut bytes) {
        tracing::warn!("no random bytes from the OS ({e}); using the clock");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_le_bytes();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = now[i % now.len()] ^ (i as u8).wrapping_mul(151);
        }
    }
    bytes
}

pub fn random_u32() -> u32 {
    u32::from_le_bytes(random_bytes())
}

/// Lowercase hex of `N` random bytes.
pub fn random_hex<const N: usize>() -> String {
    random_bytes::<N>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Lowercase hex of `N` random bytes for a secret (a token): fails rather than fall
/// back to anything guessable.
pub fn secret_hex<const N: usize>() -> std::io::Result<String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A new secret device id (see docs/protocol.md, `hello`): `prefix`, a dash and 128
/// random bits in hex.
pub fn new_device_id(prefix: &str) -> String {
    format!("{prefix}-{}", random_hex::<16>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_unique_and_valid_protocol_tokens() {
        let a = new_device_id("app");
        let b = new_device_id("app");
        assert_ne!(a, b);
        assert!(a.starts_with("app-") && a.len() == 4 + 32, "{a}");
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "hello accepts only A-Z, a-z, 0-9, '-' and '_': {a}"
        );
    }
}
