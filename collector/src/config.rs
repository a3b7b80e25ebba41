//! Collector configuration file (TOML) and sensor authentication.
//!
//! ```toml
//! # shared token accepted from any sensor id (optional)
//! token = "..."
//! # per-sensor tokens: a sensor listed here must present its own token
//! [sensors]
//! edge-1 = "token-for-edge-1"
//! edge-2 = "token-for-edge-2"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

/// The collector's configuration file (TOML): tokens, shared or per sensor.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// A token any sensor may present (same as `--token`).
    pub token: Option<String>,
    /// Per-sensor tokens, by sensor id.
    #[serde(default)]
    pub sensors: BTreeMap<String, String>,
    /// Alerts (see `alert::config`): sinks, dedup window, threshold rules.
    #[serde(default)]
    pub alerts: Option<crate::alert::AlertConfig>,
}

impl ConfigFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let c: ConfigFile =
            toml::from_str(&text).with_context(|| format!("config file {}", path.display()))?;
        for (id, tok) in &c.sensors {
            if let Err(e) = rstwatch_schema::sensor_id::check(id) {
                anyhow::bail!("config file {}: [sensors] {id:?}: {e}", path.display());
            }
            if tok.is_empty() {
                anyhow::bail!(
                    "config file {}: empty token for sensor {id:?}",
                    path.display()
                );
            }
        }
        Ok(c)
    }
}

/// Who may send.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `--no-auth`: anyone (loopback tests, lab).
    None,
    /// Sensors must present a token.
    Tokens {
        /// `--token`: accepted from any sensor id without a token of its own.
        shared: Option<String>,
        /// Sensor id → its token (config file `[sensors]`).
        per_sensor: BTreeMap<String, String>,
    },
}

/// Why a sensor was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The id is not in canonical form (see `rstwatch_schema::sensor_id`).
    BadSensorId(rstwatch_schema::sensor_id::SensorIdError),
    /// The sensor id is not configured and no shared token exists.
    UnknownSensor,
    /// Wrong token.
    BadToken,
}

impl AuthError {
    /// Short, stable name (metric label).
    pub fn name(&self) -> &'static str {
        match self {
            AuthError::BadSensorId(_) => "bad_sensor_id",
            AuthError::UnknownSensor => "unknown_sensor",
            AuthError::BadToken => "bad_token",
        }
    }

    /// What an operator reads in the log.
    pub fn detail(&self) -> String {
        match self {
            AuthError::BadSensorId(e) => e.to_string(),
            AuthError::UnknownSensor => "sensor id not configured and no shared token".into(),
            AuthError::BadToken => "wrong token".into(),
        }
    }
}

impl Auth {
    /// Builds the auth policy; refuses a configuration without any token unless
    /// `no_auth` is set.
    pub fn new(
        shared: Option<String>,
        file: Option<ConfigFile>,
        no_auth: bool,
    ) -> anyhow::Result<Auth> {
        let file = file.unwrap_or_default();
        let shared = shared.or(file.token).filter(|t| !t.is_empty());
        if no_auth {
            if shared.is_some() || !file.sensors.is_empty() {
                anyhow::bail!("--no-auth together with tokens: choose one");
            }
            return Ok(Auth::None);
        }
        if shared.is_none() && file.sensors.is_empty() {
            anyhow::bail!(
                "no sensor token configured: give --token TOKEN or a --config file with \
                 [sensors] tokens, or --no-auth to accept any sensor"
            );
        }
        Ok(Auth::Tokens {
            shared,
            per_sensor: file.sensors,
        })
    }

    /// Checks a hello's id and token. The id must be canonical, even with `--no-auth`;
    /// an id with its own token can only be claimed with that token.
    pub fn check(&self, sensor_id: &str, token: &str) -> Result<(), AuthError> {
        rstwatch_schema::sensor_id::check(sensor_id).map_err(AuthError::BadSensorId)?;
        match self {
            Auth::None => Ok(()),
            Auth::Tokens { shared, per_sensor } => {
                if let Some(t) = per_sensor.get(sensor_id) {
                    return if ct_eq(t.as_bytes(), token.as_bytes()) {
                        Ok(())
                    } else {
                        Err(AuthError::BadToken)
                    };
                }
                match shared {
                    Some(t) if ct_eq(t.as_bytes(), token.as_bytes()) => Ok(()),
                    Some(_) => Err(AuthError::BadToken),
                    None => Err(AuthError::UnknownSensor),
                }
            }
        }
    }
}

/// Constant-time comparison (length is not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_without_tokens_unless_no_auth() {
        assert!(Auth::new(None, None, false).is_err());
        assert!(Auth::new(Some(String::new()), None, false).is_err());
        assert!(matches!(Auth::new(None, None, true).unwrap(), Auth::None));
        assert!(Auth::new(Some("x".into()), None, true).is_err());
    }

    #[test]
    fn per_sensor_tokens_win_over_shared() {
        let mut f = ConfigFile::default();
        f.sensors.insert("a".into(), "ta".into());
        let auth = Auth::new(Some("shared".into()), Some(f.clone()), false).unwrap();
        assert_eq!(auth.check("a", "ta"), Ok(()));
        assert_eq!(auth.check("a", "shared"), Err(AuthError::BadToken));
        assert_eq!(auth.check("b", "shared"), Ok(()));
        assert_eq!(auth.check("b", "nope"), Err(AuthError::BadToken));
        let auth = Auth::new(None, Some(f), false).unwrap();
        assert_eq!(auth.check("b", "ta"), Err(AuthError::UnknownSensor));
    }

    #[test]
    fn a_per_sensor_id_cannot_be_claimed_by_a_look_alike_with_the_shared_token() {
        let mut f = ConfigFile::default();
        f.sensors.insert("edge-1".into(), "t1".into());
        let auth = Auth::new(Some("shared".into()), Some(f), false).unwrap();
        assert_eq!(auth.check("edge-1", "shared"), Err(AuthError::BadToken));
        for look_alike in ["EDGE-1", "edge-1 ", " edge-1", ""] {
            let e = auth.check(look_alike, "shared").unwrap_err();
            assert_eq!(e.name(), "bad_sensor_id", "{look_alike:?}");
        }
        // Even without auth, ids are canonical.
        let open = Auth::new(None, None, true).unwrap();
        assert_eq!(open.check("Edge", "").unwrap_err().name(), "bad_sensor_id");
    }

    #[test]
    fn parses_a_config_file() {
        let c: ConfigFile = toml::from_str("token = \"s\"\n[sensors]\nedge-1 = \"t1\"\n").unwrap();
        assert_eq!(c.token.as_deref(), Some("s"));
        assert_eq!(c.sensors["edge-1"], "t1");
        assert!(toml::from_str::<ConfigFile>("bogus = 1").is_err());
    }
}
