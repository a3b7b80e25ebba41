//! Opening a session with one collector: TCP, TLS, hello, welcome; and the errors that
//! say which side refused what.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rstwatch_schema::frame::{self, Codec, Deframer, FrameError, Hello, Kind, Limits};

/// A byte stream to a collector (plain TCP or TLS over it).
pub(crate) trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

/// Why no session could be opened with a collector.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("collector {addr} unreachable: {why}")]
    Unreachable { addr: String, why: String },
    #[error("collector {addr} turned this sensor away for now ({reason}: {detail})")]
    Busy {
        addr: String,
        reason: String,
        detail: String,
    },
    #[error("collector refused: {reason}: {detail} (collector {addr})")]
    Refused {
        addr: String,
        reason: String,
        detail: String,
    },
    #[error(
        "this sensor does not trust the certificate of collector {addr}: {why} \
         (check --ca-cert and --tls-server-name)"
    )]
    UntrustedCollector { addr: String, why: String },
    #[error(
        "collector {addr} speaks TLS and this sensor runs with --plaintext: drop \
         --plaintext (and give --ca-cert)"
    )]
    CollectorSpeaksTls { addr: String },
    #[error("collector {addr} does not answer in TLS (is it running with --plaintext?): {why}")]
    CollectorNotTls { addr: String, why: String },
    #[error("collector {addr}: {why}")]
    Protocol { addr: String, why: String },
}

/// Hello refusals that name this sensor's configuration: retrying cannot help. Every
/// other refusal (busy, timeout, a frame damaged on the way: the hello's payload is
/// checksummed, so a token or id cannot be damaged into another one) may pass.
const FATAL_REFUSALS: &[&str] = &[
    "bad_token",
    "unknown_sensor",
    "bad_sensor_id",
    "schema_version",
    "bad_hello",
];

impl ConnectError {
    /// Short, stable name: the counter `ship.connect_failed.<name>`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ConnectError::Unreachable { .. } => "unreachable",
            ConnectError::Busy { .. } => "busy",
            ConnectError::Refused { .. } => "refused",
            ConnectError::UntrustedCollector { .. } => "untrusted_collector",
            ConnectError::CollectorSpeaksTls { .. } => "collector_speaks_tls",
            ConnectError::CollectorNotTls { .. } => "collector_not_tls",
            ConnectError::Protocol { .. } => "protocol",
        }
    }

    /// Retrying (here or at another collector) cannot help: stop and say why.
    pub(crate) fn is_fatal(&self) -> bool {
        matches!(
            self,
            ConnectError::Refused { .. }
                | ConnectError::UntrustedCollector { .. }
                | ConnectError::CollectorSpeaksTls { .. }
                | ConnectError::CollectorNotTls { .. }
        )
    }
}

/// Splits a reject frame's payload, `reason: detail`.
pub(crate) fn split_reject(payload: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(payload);
    match text.split_once(": ") {
        Some((r, d)) => (r.to_string(), d.to_string()),
        None => (text.trim().to_string(), String::new()),
    }
}

/// The rustls error inside an I/O error from a TLS stream, if any.
fn rustls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// Classifies an I/O error met while opening a session.
fn io_error(addr: &str, what: &str, e: std::io::Error) -> ConnectError {
    let addr = addr.to_string();
    match rustls_error(&e) {
        Some(rustls::Error::InvalidCertificate(c)) => ConnectError::UntrustedCollector {
            addr,
            why: format!("{c:?}"),
        },
        Some(rustls::Error::InvalidMessage(m)) => ConnectError::CollectorNotTls {
            addr,
            why: format!("{m:?}"),
        },
        _ => ConnectError::Unreachable {
            addr,
            why: format!("{what}: {e}"),
        },
    }
}

/// TLS client settings trusting `ca` (or the system bundle).
pub(crate) fn tls_config(ca: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let path = match ca {
        Some(p) => p.to_path_buf(),
        None => {
            let sys = Path::new("/etc/ssl/certs/ca-certificates.crt");
            if !sys.exists() {
                bail!("TLS needs --ca-cert PEM (no system CA bundle found), or --plaintext");
            }
            sys.to_path_buf()
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .with_context(|| format!("reading CA certificates {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing CA certificates {}", path.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        bail!("no usable CA certificate in {}", path.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// How to reach collectors (the same for every address of `--ship`).
pub(crate) struct Dialer {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `--tls-server-name`; else the host part of each address.
    pub server_name: Option<String>,
    pub hello: Hello,
}

/// An open session: the stream, and the decoder that already holds any bytes read
/// past the welcome.
pub(crate) struct Session {
    pub conn: Box<dyn Conn>,
    pub deframer: Deframer,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The host part of `host:port` (brackets of an IPv6 literal removed).
pub(crate) fn host_of(addr: &str) -> anyhow::Result<String> {
    addr.rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_string())
        .with_context(|| format!("--ship {addr}: expected HOST:PORT"))
}

impl Dialer {
    fn tcp(&self, addr: &str) -> Result<TcpStream, ConnectError> {
        let unreachable = |why: String| ConnectError::Unreachable {
            addr: addr.to_string(),
            why,
        };
        let addrs: Vec<_> = addr
            .to_socket_addrs()
            .map_err(|e| unreachable(format!("resolving: {e}")))?
            .collect();
        let mut last = String::from("no address");
        for a in addrs {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    s.set_write_timeout(Some(IO_TIMEOUT)).ok();
                    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                    return Ok(s);
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(unreachable(last))
    }

    fn wrap(&self, addr: &str, sock: TcpStream) -> Result<Box<dyn Conn>, ConnectError> {
        let Some(cfg) = &self.tls else {
            return Ok(Box::new(sock));
        };
        let protocol = |why: String| ConnectError::Protocol {
            addr: addr.to_string(),
            why,
        };
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => host_of(addr).map_err(|e| protocol(e.to_string()))?,
        };
        let name = rustls_pki_types::ServerName::try_from(name.clone())
            .map_err(|e| protocol(format!("bad TLS server name {name:?}: {e}")))?
            .to_owned();
        let c = rustls::ClientConnection::new(cfg.clone(), name)
            .map_err(|e| protocol(format!("TLS setup: {e}")))?;
        Ok(Box::new(rustls::StreamOwned::new(c, sock)))
    }

    /// Opens a session with the collector at `addr`: hello answered by welcome.
    pub(crate) fn open(&self, addr: &str) -> Result<Session, ConnectError> {
        let socket = self.tcp(addr)?;
        let handle = socket
            .try_clone()
            .map_err(|e| io_error(addr, "socket", e))?;
        let mut conn = self.wrap(addr, socket)?;
        let hello = serde_json::to_vec(&self.hello).expect("hello serialises");
        conn.write_all(&frame::encode(Kind::Hello, Codec::None, 0, &hello))
            .and_then(|_| conn.flush())
            .map_err(|e| io_error(addr, "sending hello", e))?;
        let mut deframer = Deframer::new(Limits::CONTROL);
        let f = read_welcome(addr, &mut conn, &mut deframer)?;
        match f.header.kind {
            Kind::Welcome => {
                // From now on reads poll for acks.
                handle
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .ok();
                Ok(Session { conn, deframer })
            }
            Kind::Reject => {
                let (reason, mut detail) = split_reject(&f.payload);
                // A collector of another schema version (older ones do not say what to
                // upgrade): name the side.
                if let Some(advice) = rstwatch_schema::compat::explain_refusal(&detail) {
                    if !detail.contains(&advice) {
                        detail = format!("{detail}: {advice}");
                    }
                }
                let addr = addr.to_string();
                Err(if FATAL_REFUSALS.contains(&reason.as_str()) {
                    ConnectError::Refused {
                        addr,
                        reason,
                        detail,
                    }
                } else {
                    ConnectError::Busy {
                        addr,
                        reason,
                        detail,
                    }
                })
            }
            k => Err(ConnectError::Protocol {
                addr: addr.to_string(),
                why: format!("unexpected {k:?} instead of welcome"),
            }),
        }
    }
}

/// Reads the collector's answer to the hello, keeping the typed TLS error of a failed
/// read (the shared reader only keeps its text).
fn read_welcome(
    addr: &str,
    conn: &mut Box<dyn Conn>,
    d: &mut Deframer,
) -> Result<frame::Frame, ConnectError> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(f) = d.next_frame().map_err(|e| welcome_error(addr, e))? {
            return Ok(f);
        }
        match conn.read(&mut chunk) {
            Ok(0) => {
                d.at_eof().map_err(|e| welcome_error(addr, e))?;
                return Err(welcome_error(addr, FrameError::Truncated));
            }
            Ok(n) => d.push(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(addr, "waiting for welcome", e)),
        }
    }
}

fn welcome_error(addr: &str, e: FrameError) -> ConnectError {
    let addr = addr.to_string();
    match e {
        FrameError::Tls => ConnectError::CollectorSpeaksTls { addr },
        FrameError::Truncated => ConnectError::Unreachable {
            addr,
            why: "closed the connection before welcome (busy, or restarting)".into(),
        },
        e => ConnectError::Protocol {
            addr,
            why: format!("waiting for welcome: {e}"),
        },
    }
}
