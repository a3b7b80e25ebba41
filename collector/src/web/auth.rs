//! Who may read the view: a token, given as `Authorization: Bearer TOKEN` (scripts) or
//! as the password of HTTP basic auth with any user name (browsers ask for it
//! themselves). No token configured means no check, which `main` only allows when the
//! operator said `--http-no-auth`.

use base64::Engine as _;

/// How the view checks its readers.
#[derive(Debug, Clone)]
pub enum WebAuth {
    /// No check (`--http-no-auth`).
    None,
    /// Bearer token, or basic auth with the token as password.
    Token(String),
}

impl WebAuth {
    /// Whether a request with this `Authorization` header value may read.
    pub fn allows(&self, header: Option<&str>) -> bool {
        let WebAuth::Token(token) = self else {
            return true;
        };
        let Some(h) = header else {
            return false;
        };
        if let Some(t) = h.strip_prefix("Bearer ") {
            return same(t.trim().as_bytes(), token.as_bytes());
        }
        if let Some(b) = h.strip_prefix("Basic ") {
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else {
                return false;
            };
            let password = match raw.iter().position(|c| *c == b':') {
                Some(i) => &raw[i + 1..],
                None => return false,
            };
            return same(password, token.as_bytes());
        }
        false
    }
}

/// Equal without an early exit, so response time says nothing about a guessed prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_carry_the_token_anything_else_is_refused() {
        let a = WebAuth::Token("s3cret".into());
        assert!(a.allows(Some("Bearer s3cret")));
        // "soc:s3cret"
        assert!(a.allows(Some("Basic c29jOnMzY3JldA==")));
        // "soc:wrong"
        assert!(!a.allows(Some("Basic c29jOndyb25n")));
        assert!(!a.allows(Some("Bearer s3cre")));
        assert!(!a.allows(Some("Basic !!!")));
        assert!(!a.allows(None));
        assert!(WebAuth::None.allows(None));
    }
}
