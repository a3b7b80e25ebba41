//! Test and benchmark harness: a real `clickhouse-server` process from a generated
//! config in a temp dir on free loopback ports, and a collector process. Both are killed
//! when their guard is dropped (also on panic).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// CPU seconds (user + system) a process has used so far, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at ") ".
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// A free loopback TCP port (bound then released), drawn below the kernel's ephemeral
/// range as `scripts/free_ports.py` does: a port from `bind(0)` lies in that range, where
/// the tests' many outgoing connections may take it before its server binds it (CI on
/// 2026-12-04: a ClickHouse server found its port in use). Two callers can still draw
/// the same port; `ClickHouse::start` then tries again on others.
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOW: u16 = 10000;
    if ephemeral_low > LOW + 1000 {
        for _ in 0..1000 {
            let port = fastrand::u16(LOW..ephemeral_low);
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// The `clickhouse-server` binary, when installed.
pub fn clickhouse_binary() -> Option<PathBuf> {
    for p in ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"] {
        if Path::new(p).exists() {
            return Some(p.into());
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("clickhouse-server"))
        .find(|p| p.exists())
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new directory under the system temp dir, named after `prefix`.
    pub fn new(prefix: &str) -> std::io::Result<TempDir> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "{prefix}-{}-{n}-{}",
            std::process::id(),
            crate::log::now_us()
        ));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A ClickHouse server process.
pub struct ClickHouse {
    child: Option<Child>,
    dir: TempDir,
    /// HTTP interface port.
    pub http_port: u16,
    /// Native protocol port.
    pub tcp_port: u16,
    bin: PathBuf,
}

impl ClickHouse {
    /// Starts a server, or `Ok(None)` when no clickhouse-server binary is installed
    /// (the caller prints why it skips).
    pub fn start() -> anyhow::Result<Option<ClickHouse>> {
        let Some(bin) = clickhouse_binary() else {
            return Ok(None);
        };
        let dir = TempDir::new("rstwatch-ch")?;
        let mut ch = ClickHouse {
            child: None,
            dir,
            http_port: 0,
            tcp_port: 0,
            bin,
        };
        ch.launch_until_bound(true)?;
        Ok(Some(ch))
    }

    /// Launches the server, again when it could not bind a port: another test's server
    /// or an outgoing connection may have taken a port `free_port` found and released.
    /// With `new_ports` each try takes other ports; otherwise (a restart, whose clients
    /// know its ports) it waits a second for the holder to let go.
    fn launch_until_bound(&mut self, new_ports: bool) -> anyhow::Result<()> {
        let mut attempt = 1;
        loop {
            if new_ports {
                self.http_port = free_port();
                self.tcp_port = free_port();
            }
            self.write_config()?;
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 5 && self.lost_a_port() => {
                    eprintln!("clickhouse-server could not bind its ports (try {attempt}): {e:#}");
                    if !new_ports {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the server's error log says one of its ports was already taken.
    fn lost_a_port(&self) -> bool {
        std::fs::read_to_string(self.dir.path().join("err.log"))
            .is_ok_and(|log| log.contains("Address already in use"))
    }

    /// Writes the server's config for its directory and ports; the error log is
    /// emptied so that `lost_a_port` reads only this start's.
    fn write_config(&self) -> anyhow::Result<()> {
        let dir = &self.dir;
        let (http_port, tcp_port) = (self.http_port, self.tcp_port);
        let _ = std::fs::remove_file(dir.path().join("err.log"));
        let d = dir.path().display().to_string();
        std::fs::write(
            dir.path().join("config.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/err.log</errorlog><console>0</console></logger>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mlock_executable>false</mlock_executable>
</yandex>
"#
            ),
        )?;
        std::fs::write(
            dir.path().join("users.xml"),
            r#"<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#,
        )?;
        Ok(())
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.path().join("stdout.log"))?;
        let child = Command::new(&self.bin)
            .arg(format!(
                "--config-file={}",
                self.dir.path().join("config.xml").display()
            ))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = self.query("SELECT 1") {
                if r.trim() == "1" {
                    return Ok(());
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    bail!(
                        "clickhouse-server exited ({st}); log: {}",
                        std::fs::read_to_string(self.dir.path().join("err.log"))
                            .unwrap_or_default()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("clickhouse-server did not answer within 60 s")
    }

    /// A server with the schema migrated into `db` by the `collector` binary, for the
    /// test named `test`; `None`, with a SKIP line, where clickhouse-server is not
    /// installed (`scripts/setup.sh` installs it, and CI runs it).
    pub fn start_migrated(collector: &Path, db: &str, test: &str) -> Option<ClickHouse> {
        match ClickHouse::start().expect("starting clickhouse-server") {
            Some(ch) => {
                ch.migrate(collector, db)
                    .expect("migrating the test database");
                Some(ch)
            }
            None => {
                println!("SKIP {test}: clickhouse-server is not installed (scripts/setup.sh)");
                None
            }
        }
    }

    /// Runs `collector migrate` against this server for database `db`.
    pub fn migrate(&self, collector: &Path, db: &str) -> anyhow::Result<()> {
        let out = Command::new(collector)
            .args(["migrate", "--clickhouse-url", &self.url(), "--database", db])
            .output()
            .with_context(|| format!("running {}", collector.display()))?;
        if !out.status.success() {
            bail!("migrate: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// The server's HTTP URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Stops the server with SIGKILL (the harshest case; committed parts survive).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Wait for the port to be free again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && TcpStream::connect(("127.0.0.1", self.http_port)).is_ok()
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again on the same data and ports.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch_until_bound(false)
    }

    /// Runs a query over HTTP and returns the body (TabSeparated); errors on non-200.
    pub fn query(&self, sql: &str) -> anyhow::Result<String> {
        http_post(self.http_port, "/", sql.as_bytes())
    }

    /// Runs a query with `db` as the default database.
    pub fn query_db(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        http_post(self.http_port, &format!("/?database={db}"), sql.as_bytes())
    }

    /// [`ClickHouse::query_db`] returning the body's bytes as they are: for binary
    /// formats (RowBinary), which the text of `query_db` would mangle.
    pub fn query_db_bytes(&self, db: &str, sql: &str) -> anyhow::Result<Vec<u8>> {
        let path = format!("/?database={db}");
        http_request_bytes(self.http_port, "POST", &path, sql.as_bytes())
    }

    /// The server's data and config directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A minimal HTTP/1.1 POST to 127.0.0.1 (tests only: no extra client dependency).
pub fn http_post(port: u16, path: &str, body: &[u8]) -> anyhow::Result<String> {
    http_request(port, "POST", path, body)
}

/// A minimal HTTP/1.1 GET to 127.0.0.1.
pub fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    http_request(port, "GET", path, b"")
}

fn http_request(port: u16, method: &str, path: &str, body: &[u8]) -> anyhow::Result<String> {
    let body = http_request_bytes(port, method, path, body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// [`http_request`]'s body as bytes (errors on non-200, with the body as text).
fn http_request_bytes(port: u16, method: &str, path: &str, body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    // Headers and chunks are found in the bytes, and only the body is decoded: a chunk
    // may end inside a multi-byte character (ClickHouse cuts its output at 4 KiB, not
    // at characters), which decoding the whole response first would mangle.
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&resp[..split]);
    let rest = &resp[split + 4..];
    let status = head.split_whitespace().nth(1).unwrap_or("");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    if status != "200" {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim());
    }
    Ok(body)
}

/// The data of a chunked HTTP body (up to the last chunk, or to the first malformed
/// chunk header or short chunk).
fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let (len, rest) = (&s[..eol], &s[eol + 2..]);
        let n = std::str::from_utf8(len)
            .ok()
            .and_then(|l| usize::from_str_radix(l.trim(), 16).ok());
        let Some(n) = n.filter(|&n| n > 0 && rest.len() >= n) else {
            break;
        };
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// A collector process (`rstwatch-collector serve`), killed on drop.
pub struct Collector {
    child: Option<Child>,
    bin: PathBuf,
    args: Vec<String>,
    /// Port sensors connect to.
    pub port: u16,
    /// Port of `/metrics` and `/healthz`.
    pub metrics_port: u16,
    log: PathBuf,
}

impl Collector {
    /// Starts `serve` with `extra` arguments on free ports, and waits until it listens.
    pub fn start(
        bin: &Path,
        ch_url: &str,
        db: &str,
        extra: &[&str],
        log: &Path,
    ) -> anyhow::Result<Collector> {
        let port = free_port();
        let metrics_port = free_port();
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--metrics-listen".into(),
            format!("127.0.0.1:{metrics_port}"),
            "--clickhouse-url".into(),
            ch_url.into(),
            "--database".into(),
            db.into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut c = Collector {
            child: None,
            bin: bin.to_path_buf(),
            args,
            port,
            metrics_port,
            log: log.to_path_buf(),
        };
        c.launch()?;
        Ok(c)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get(self.metrics_port, "/metrics").is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    bail!("collector exited ({st}): {}", self.log_text());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("collector did not come up: {}", self.log_text())
    }

    /// `127.0.0.1:port`, for `--ship`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The collector's process id (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL, like a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again with the same arguments and ports.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.launch()
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> anyhow::Result<String> {
        http_get(self.metrics_port, "/metrics")
    }

    /// A metric's value (first sample whose name and labels start with `prefix`).
    pub fn metric(&self, prefix: &str) -> u64 {
        self.metrics()
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with(prefix) && !l.starts_with('#'))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .map(|v| v as u64)
            .unwrap_or(0)
    }

    /// Everything the collector logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[cfg(test)]
mod dechunk_tests {
    use super::dechunk;

    /// A chunk that ends inside a character: the character comes out whole.
    #[test]
    fn a_character_split_across_chunks_comes_out_whole() {
        let body = "93 \u{b5}s later".as_bytes();
        let cut = body.iter().position(|&b| b == 0xc2).unwrap() + 1;
        let (a, b) = body.split_at(cut);
        let mut wire = format!("{:x}\r\n", a.len()).into_bytes();
        wire.extend_from_slice(a);
        wire.extend_from_slice(format!("\r\n{:x}\r\n", b.len()).as_bytes());
        wire.extend_from_slice(b);
        wire.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(
            String::from_utf8(dechunk(&wire)).unwrap(),
            "93 \u{b5}s later"
        );
    }
}

#[cfg(test)]
mod launch_tests {
    use super::ClickHouse;
    use std::net::TcpListener;
    use std::time::Duration;

    /// A restart whose native port another process holds for a moment waits for it and
    /// comes up on the same ports, which its clients know. (`stop` waits for the HTTP
    /// port alone to close, so holding that one would not reach the retry.)
    #[test]
    fn a_restart_waits_for_a_port_held_by_another_process() {
        let Some(mut ch) = ClickHouse::start().expect("starting clickhouse-server") else {
            println!("SKIP: clickhouse-server is not installed (scripts/setup.sh)");
            return;
        };
        let port = ch.tcp_port;
        ch.stop();
        let holder = TcpListener::bind(("127.0.0.1", port)).expect("holding the port");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            drop(holder);
        });
        ch.restart().expect("restart once the port is free");
        release.join().unwrap();
        assert_eq!(ch.tcp_port, port);
        assert_eq!(ch.query("SELECT 1").unwrap().trim(), "1");
        assert!(
            !ch.lost_a_port(),
            "the last start's error log is the one read"
        );
    }
}
