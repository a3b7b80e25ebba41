//! Sensor ids: one canonical form, checked by the sensor before it connects and by the
//! collector before it looks at a token.
//!
//! A sensor id is 1 to 63 bytes of lowercase ASCII letters, digits, `-`, `_` and `.`,
//! starting with a letter or a digit (a DNS label's alphabet, lowercase, plus `_`/`.`).
//! Anything else is refused, never folded: `EDGE-1`, `edge-1 ` and the empty id are not
//! `edge-1`, so a per-sensor identity cannot be claimed by a look-alike.

use std::fmt;

/// Longest sensor id, in bytes.
pub const MAX_LEN: usize = 63;

/// Why a string is not a sensor id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorIdError {
    /// No characters.
    Empty,
    /// Longer than allowed (the length given).
    TooLong(usize),
    /// A byte outside the alphabet, at this offset.
    BadChar {
        /// Character position.
        at: usize,
        /// The character.
        ch: char,
    },
    /// Must start with a letter or a digit.
    BadStart(char),
}

impl fmt::Display for SensorIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SensorIdError::Empty => write!(f, "sensor id is empty"),
            SensorIdError::TooLong(n) => {
                write!(f, "sensor id is {n} bytes, at most {MAX_LEN}")
            }
            SensorIdError::BadChar { at, ch } => write!(
                f,
                "sensor id has {ch:?} at byte {at}: use lowercase letters, digits, '-', '_', '.'"
            ),
            SensorIdError::BadStart(c) => {
                write!(
                    f,
                    "sensor id starts with {c:?}: start with a letter or digit"
                )
            }
        }
    }
}

impl std::error::Error for SensorIdError {}

/// Checks that `id` is in canonical form.
pub fn check(id: &str) -> Result<(), SensorIdError> {
    if id.is_empty() {
        return Err(SensorIdError::Empty);
    }
    if id.len() > MAX_LEN {
        return Err(SensorIdError::TooLong(id.len()));
    }
    for (at, ch) in id.char_indices() {
        let ok = ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '-' | '_' | '.');
        if !ok {
            return Err(SensorIdError::BadChar { at, ch });
        }
    }
    let first = id.chars().next().unwrap_or(' ');
    if !first.is_ascii_alphanumeric() {
        return Err(SensorIdError::BadStart(first));
    }
    Ok(())
}

/// The canonical id derived from a host name: lowercased, other characters replaced
/// by `-`, cut to [`MAX_LEN`]; `None` when nothing usable is left.
pub fn from_hostname(host: &str) -> Option<String> {
    let mut s: String = host
        .trim()
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '_' | '.') => c,
            _ => '-',
        })
        .collect();
    s.truncate(MAX_LEN);
    let s = s.trim_start_matches(['-', '_', '.']).to_string();
    check(&s).ok().map(|()| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_form_is_an_id() {
        assert_eq!(check("edge-1"), Ok(()));
        assert_eq!(check("a.b_c-9"), Ok(()));
        assert_eq!(check(""), Err(SensorIdError::Empty));
        assert!(matches!(
            check("EDGE-1"),
            Err(SensorIdError::BadChar { at: 0, .. })
        ));
        assert!(matches!(
            check("edge-1 "),
            Err(SensorIdError::BadChar { at: 6, .. })
        ));
        assert!(matches!(check("-edge"), Err(SensorIdError::BadStart('-'))));
        assert!(matches!(
            check(&"a".repeat(64)),
            Err(SensorIdError::TooLong(64))
        ));
        assert!(matches!(check("édge"), Err(SensorIdError::BadChar { .. })));
    }

    #[test]
    fn host_names_fold_into_ids() {
        assert_eq!(
            from_hostname("Edge-1.Example\n").as_deref(),
            Some("edge-1.example")
        );
        assert_eq!(from_hostname("--"), None);
    }
}
