//! The install's identity as a person can carry it: a recovery phrase for the secret
//! device id, which is all a friend knows this install by (the server keeps only its
//! hash). Entered on another machine, it brings the friends (and blocks) along; without
//! it a new install is a stranger to everyone.

use crate::error::{CommandError, CommandErrorCode};

/// The app's own ids: `app-` and 32 hex digits (128 random bits).
const PREFIX: &str = "app-";
const HEX_DIGITS: usize = 32;

/// The phrase for `device_id`: the app's ids as eight groups of four hex digits
/// (`3f2a-9c1e-…`); any other id (made by an older version) as it is.
pub fn phrase(device_id: &str) -> String {
    match device_id.strip_prefix(PREFIX) {
        Some(hex) if hex.len() == HEX_DIGITS && hex.bytes().all(|b| b.is_ascii_hexdigit()) => hex
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("-"),
        _ => device_id.to_owned(),
    }
}

/// The device id a phrase stands for. Spaces, dashes and case do not matter in the
/// grouped form (people copy it by hand); anything else is a clear error.
pub fn device_id(phrase: &str) -> Result<String, CommandError> {
    let phrase = phrase.trim();
    let hex: String = phrase
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() == HEX_DIGITS && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(format!("{PREFIX}{hex}"));
    }
    // An id of another shape, exported as it is. Something made only of hex digits,
    // dashes and spaces is a phrase with a digit missing or extra, never such an id:
    // taking it would silently make a new identity with no friends.
    let phrase_like = phrase
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'-' || b.is_ascii_whitespace());
    let ok = !phrase_like
        && chingu_proto::limits::DEVICE_ID_BYTES.contains(&phrase.len())
        && phrase
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        return Ok(phrase.to_owned());
    }
    Err(CommandError::new(
        CommandErrorCode::BadRecoveryPhrase,
        "a recovery phrase is eight groups of four letters and digits, such as 3f2a-9c1e-…",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phrase_brings_back_the_same_id() {
        let id = chingu_engine::ids::new_device_id("app");
        let words = phrase(&id);
        assert_eq!(words.len(), 39, "{words}");
        assert_eq!(device_id(&words).unwrap(), id);
        // Typed by hand: spaces, capitals, no dashes.
        let typed = words.to_uppercase().replace('-', " ");
        assert_eq!(device_id(&format!("  {typed}\n")).unwrap(), id);
        // An id of another shape travels as it is.
        assert_eq!(phrase("legacy-device-0001"), "legacy-device-0001");
        assert_eq!(
            device_id("legacy-device-0001").unwrap(),
            "legacy-device-0001"
        );
    }

    #[test]
    fn anything_else_is_refused_with_a_code() {
        let id = chingu_engine::ids::new_device_id("app");
        let words = phrase(&id);
        let short = &words[..words.len() - 1];
        let long = format!("{words}0");
        for bad in [
            "",
            "1234",
            "3f2a-9c1e",
            "not a phrase at all!",
            &"x".repeat(200),
            short,
            &long,
        ] {
            let err = device_id(bad).expect_err(bad);
            assert_eq!(err.code, CommandErrorCode::BadRecoveryPhrase, "{bad:?}");
        }
    }
}
