//! `rstwatch-collector`: see `rstwatch-collector --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rstwatch_collector::ch::{ChConfig, Store};
use rstwatch_collector::config::{Auth, ConfigFile};
use rstwatch_collector::insight::{filter, Filter, Insight};
use rstwatch_collector::limits::ConnLimits;
use rstwatch_collector::metrics::{self, Metrics};
use rstwatch_collector::report;
use rstwatch_collector::server::{self, ServeConfig, Server};
use rstwatch_collector::web::{self, WebAuth};
use rstwatch_collector::{info, warn};
use rstwatch_schema::cookbook;
use rstwatch_schema::sql::{self, Dialect};

/// rstwatch collector: receives sensor batches and writes them into ClickHouse.
#[derive(Debug, Parser)]
#[command(name = "rstwatch-collector", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or upgrade the ClickHouse schema (safe to run twice).
    Migrate(MigrateArgs),
    /// Receive sensor batches and write them into ClickHouse.
    Serve(Box<ServeArgs>),
    /// Print the schema DDL and the canonical queries rendered for a server version.
    PrintSchema(PrintArgs),
    /// Write a self-contained report (HTML with inline SVG charts, or Markdown).
    Report(ReportArgs),
}

#[derive(Debug, Args)]
struct ChArgs {
    /// ClickHouse HTTP interface, e.g. http://127.0.0.1:8123
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
    #[arg(long, default_value = "rstwatch")]
    database: String,
    #[arg(long, env = "RSTWATCH_CLICKHOUSE_USER")]
    clickhouse_user: Option<String>,
    #[arg(long, env = "RSTWATCH_CLICKHOUSE_PASSWORD", hide_env_values = true)]
    clickhouse_password: Option<String>,
    /// Keep data this many days (0: forever). TTL on servers that have it; elsewhere
    /// `serve` drops day partitions past it.
    #[arg(long, default_value_t = 0)]
    retention_days: u32,
    /// Row schema validation by the clickhouse crate: auto (on for servers >= 24.1).
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    validation: String,
}

impl ChArgs {
    fn config(&self) -> ChConfig {
        ChConfig {
            url: self.clickhouse_url.clone(),
            database: self.database.clone(),
            user: self.clickhouse_user.clone(),
            password: self.clickhouse_password.clone(),
            validation: match self.validation.as_str() {
                "on" => Some(true),
                "off" => Some(false),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Args)]
struct MigrateArgs {
    #[command(flatten)]
    ch: ChArgs,
    /// Stop at this schema version (default: the newest this build knows).
    #[arg(long)]
    to_version: Option<u32>,
    /// Create the schema on this ClickHouse cluster (a name in the servers'
    /// `remote_servers`): replicated tables, Distributed tables in front, DDL ON CLUSTER.
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on for sensors.
    #[arg(long, default_value = "0.0.0.0:7400")]
    listen: SocketAddr,
    #[command(flatten)]
    ch: ChArgs,
    /// Shared token accepted from any sensor.
    #[arg(long, env = "RSTWATCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Config file (TOML): per-sensor tokens (`[sensors]` `name = "token"`) and alerts
    /// (`[alerts]`, see the README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Accept sensors without a token.
    #[arg(long)]
    no_auth: bool,
    /// Plain TCP instead of TLS (loopback tests). Refused on a non-loopback address
    /// unless `--plaintext-anywhere` is given too.
    #[arg(long)]
    plaintext: bool,
    /// Allow `--plaintext` on a non-loopback address: tokens and data cross the
    /// network unencrypted.
    #[arg(long, requires = "plaintext")]
    plaintext_anywhere: bool,
    /// TLS certificate chain (PEM).
    #[arg(long, required_unless_present = "plaintext")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, required_unless_present = "plaintext")]
    tls_key: Option<PathBuf>,
    /// Prometheus `/metrics` and `/healthz` endpoint.
    #[arg(long, default_value = "127.0.0.1:9464")]
    metrics_listen: SocketAddr,
    /// Largest frame payload accepted, in bytes.
    #[arg(long, default_value_t = 32 << 20)]
    max_frame_bytes: u32,
    /// Largest batch accepted after decompression, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_raw_bytes: u32,
    /// Connections held at most (authenticated or not); more are closed at once.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Connections from one address that have not authenticated yet, at most.
    #[arg(long, default_value_t = 16)]
    max_unauth_per_ip: usize,
    /// Seconds a new connection has for its TLS handshake and hello.
    #[arg(long, default_value_t = 10)]
    handshake_timeout_secs: u64,
    /// Close an authenticated sensor connection idle this many seconds.
    #[arg(long, default_value_t = 120)]
    idle_timeout_secs: u64,
    /// `/healthz` fails and `clickhouse_up` is 0 while an insert runs longer than this.
    #[arg(long, default_value_t = 10)]
    insert_stall_secs: u64,
    /// Batches of one sensor connection written to ClickHouse at once (acks stay in
    /// order).
    #[arg(long, default_value_t = 2)]
    store_concurrency: usize,
    /// Run `migrate` first when the database has no schema yet.
    #[arg(long)]
    migrate: bool,
    #[command(flatten)]
    http: HttpArgs,
}

/// The built-in SOC view (read-only web app).
#[derive(Debug, Args)]
struct HttpArgs {
    /// Serve the SOC view on this address (`--http` alone: 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    http: Option<SocketAddr>,
    /// Token for the SOC view: `Authorization: Bearer TOKEN`, or basic auth with any
    /// user name and the token as password.
    #[arg(long, env = "RSTWATCH_HTTP_TOKEN", hide_env_values = true)]
    http_token: Option<String>,
    /// Serve the SOC view without a token.
    #[arg(long)]
    http_no_auth: bool,
}

impl HttpArgs {
    /// The view's access rule; refuses to run open unless told `--http-no-auth`.
    fn auth(&self) -> anyhow::Result<WebAuth> {
        match (&self.http_token, self.http_no_auth) {
            (Some(t), _) if !t.is_empty() => Ok(WebAuth::Token(t.clone())),
            (_, true) => Ok(WebAuth::None),
            _ => anyhow::bail!(
                "--http needs --http-token (or RSTWATCH_HTTP_TOKEN), or --http-no-auth to \
                 serve the view to anyone who can reach it"
            ),
        }
    }
}

#[derive(Debug, Args)]
struct ReportArgs {
    #[command(flatten)]
    ch: ChArgs,
    /// The report covers this much time up to now (e.g. 1h, 24h, 7d).
    #[arg(long, default_value = "24h")]
    since: String,
    /// Only this sensor.
    #[arg(long)]
    sensor: Option<String>,
    /// Only this service port.
    #[arg(long)]
    port: Option<u16>,
    #[arg(long, default_value = "html", value_parser = ["html", "markdown"])]
    format: String,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct PrintArgs {
    /// Server version to render for, e.g. 18.16 or 26.9.
    #[arg(long)]
    server_version: String,
    #[arg(long, default_value = "rstwatch")]
    database: String,
    #[arg(long, default_value_t = 0)]
    retention_days: u32,
    /// Print the canonical queries (the SQL cookbook) instead of the DDL.
    #[arg(long)]
    queries: bool,
    /// With --queries: only this one (file name without .sql), without its header.
    #[arg(long, value_name = "NAME", requires = "queries")]
    query: Option<String>,
    /// With --queries: bind the parameters as literals for servers without query
    /// parameters (18.16): the range [FROM, TO) in Unix seconds, UTC.
    #[arg(long, value_name = "SECS", requires_all = ["queries", "to"])]
    from: Option<u32>,
    #[arg(long, value_name = "SECS", requires = "from")]
    to: Option<u32>,
    /// With --from: one sensor ('' = all).
    #[arg(long, default_value = "")]
    sensor: String,
    /// With --from: one server port (0 = all).
    #[arg(long, default_value_t = 0)]
    service_port: u16,
    /// With --from: the rate queries' bucket in seconds: 60, 3600 or 86400 (default:
    /// chosen from the range).
    #[arg(long, value_name = "SECS")]
    step: Option<u32>,
}

/// The cookbook parameters of `print-schema --queries --from ...`, if given.
fn cookbook_params(a: &PrintArgs) -> anyhow::Result<Option<cookbook::Params>> {
    let (Some(from_s), Some(to_s)) = (a.from, a.to) else {
        return Ok(None);
    };
    let mut p = cookbook::Params::range(from_s, to_s);
    p.sensor = a.sensor.clone();
    p.service_port = a.service_port;
    if let Some(s) = a.step {
        p.step = match s {
            60 => cookbook::Step::Minute,
            3_600 => cookbook::Step::Hour,
            86_400 => cookbook::Step::Day,
            _ => anyhow::bail!("--step {s}: one of 60, 3600, 86400"),
        };
    }
    Ok(Some(p))
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let r = rt.block_on(async move {
        match cli.command {
            Command::Migrate(a) => migrate(a).await,
            Command::Serve(a) => serve(*a).await,
            Command::PrintSchema(a) => print_schema(a),
            Command::Report(a) => report(a).await,
        }
    });
    if let Err(e) = r {
        eprintln!("rstwatch-collector: {e:#}");
        std::process::exit(1);
    }
}

async fn migrate(a: MigrateArgs) -> anyhow::Result<()> {
    if let Some(cluster) = &a.cluster {
        let applied =
            rstwatch_collector::cluster::migrate(&a.ch.config(), cluster, a.ch.retention_days)
                .await?;
        println!(
            "database {} on cluster {cluster}: applied schema versions {applied:?}",
            a.ch.database
        );
        return Ok(());
    }
    let store = Store::connect(&a.ch.config(), a.ch.retention_days).await?;
    let target = a.to_version.unwrap_or_else(sql::latest_version);
    let applied = store.migrate_to(target).await?;
    if applied.is_empty() {
        println!(
            "database {} is at schema version {} (ClickHouse {}), nothing to do",
            store.db,
            store.schema_version().await?,
            store.version
        );
    } else {
        println!(
            "database {}: applied schema versions {applied:?} (ClickHouse {}, {} dialect)",
            store.db,
            store.version,
            if store.dialect.modern() {
                "modern"
            } else {
                "18.x"
            }
        );
    }
    Ok(())
}

/// Plain TCP only on loopback, unless the operator says otherwise in so many words.
fn check_plaintext(a: &ServeArgs) -> anyhow::Result<()> {
    if a.plaintext && !a.listen.ip().is_loopback() {
        if !a.plaintext_anywhere {
            anyhow::bail!(
                "--plaintext on {} (not loopback) would send tokens and data unencrypted: \
                 use TLS, listen on 127.0.0.1, or add --plaintext-anywhere",
                a.listen
            );
        }
        warn!(
            "PLAINTEXT on {}: sensor tokens and data cross the network unencrypted \
             (--plaintext-anywhere)",
            a.listen
        );
    }
    Ok(())
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    check_plaintext(&a)?;
    let web_auth = a.http.http.map(|_| a.http.auth()).transpose()?;
    let mut file = a.config.as_deref().map(ConfigFile::load).transpose()?;
    let alerts = file
        .as_mut()
        .and_then(|f| f.alerts.take())
        .map(|c| c.settings())
        .transpose()?;
    let auth = Auth::new(a.token.clone(), file, a.no_auth)?;
    let tls = if a.plaintext {
        None
    } else {
        let (Some(cert), Some(key)) = (&a.tls_cert, &a.tls_key) else {
            anyhow::bail!("TLS needs --tls-cert and --tls-key (or --plaintext)");
        };
        Some(server::load_tls(cert, key)?)
    };
    let metrics = Metrics::new();
    metrics.stall_after_us.store(
        a.insert_stall_secs.max(1) * 1_000_000,
        std::sync::atomic::Ordering::Relaxed,
    );
    let cfg = a.ch.config();
    // ClickHouse may not be up yet: wait for it with backoff, saying so.
    let store = rstwatch_collector::ch::with_backoff(
        |_| Store::connect(&cfg, a.ch.retention_days),
        |e, n| {
            if n % 10 == 0 {
                warn!("ClickHouse not reachable yet, retrying: {e:#}");
            }
        },
        None,
    )
    .await?;
    if a.migrate {
        store.migrate().await?;
    }
    store.check_schema().await?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    let mlistener = tokio::net::TcpListener::bind(a.metrics_listen)
        .await
        .with_context(|| format!("listening on {} (metrics)", a.metrics_listen))?;
    info!(
        "listening on {} ({}, {}), metrics on http://{}/metrics, ClickHouse {} database {}",
        listener.local_addr()?,
        if a.plaintext { "plain TCP" } else { "TLS" },
        match &auth {
            Auth::None => "no auth",
            Auth::Tokens { .. } => "token auth",
        },
        mlistener.local_addr()?,
        store.version,
        store.db
    );
    tokio::spawn(metrics::serve_http(mlistener, metrics.clone()));
    if let (Some(addr), Some(auth)) = (a.http.http, web_auth) {
        spawn_web(addr, auth, &a.ch.config()).await?;
    }
    spawn_retention(&store, a.ch.retention_days);
    spawn_health_probe(&store, metrics.clone());
    if let Some(alerts) = alerts {
        rstwatch_collector::alert::spawn(alerts, cfg.clone(), metrics.clone())?;
    }
    let server = Server::new(serve_config(&a, auth, tls), store, metrics);
    let run = server.run(listener);
    tokio::select! {
        _ = run => Ok(()),
        _ = shutdown_signal() => {
            info!("shutting down (unacknowledged batches will be resent by the sensors)");
            Ok(())
        }
    }
}

fn serve_config(a: &ServeArgs, auth: Auth, tls: Option<Arc<rustls::ServerConfig>>) -> ServeConfig {
    ServeConfig {
        auth,
        tls,
        max_frame: a.max_frame_bytes,
        max_raw: a.max_raw_bytes,
        conn: ConnLimits {
            max_connections: a.max_connections.max(1),
            max_unauth_per_ip: a.max_unauth_per_ip.max(1),
            handshake_timeout: Duration::from_secs(a.handshake_timeout_secs.max(1)),
            idle_timeout: Duration::from_secs(a.idle_timeout_secs.max(1)),
        },
        store_concurrency: a.store_concurrency,
    }
}

/// The SOC view on `addr`. Warns when it is open to more than this host.
async fn spawn_web(addr: SocketAddr, auth: WebAuth, cfg: &ChConfig) -> anyhow::Result<()> {
    let insight = Insight::connect(cfg).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} (SOC view)"))?;
    if !addr.ip().is_loopback() {
        match auth {
            WebAuth::None => warn!(
                "SOC view on {addr} WITHOUT a token (--http-no-auth): anyone who reaches it reads it"
            ),
            WebAuth::Token(_) => warn!(
                "SOC view on {addr} is plain HTTP: the token crosses the network in clear; \
                 put a TLS reverse proxy in front or keep it on loopback"
            ),
        }
    }
    info!("SOC view on http://{}/", listener.local_addr()?);
    let app = std::sync::Arc::new(web::App { insight, auth });
    tokio::spawn(web::serve(listener, app));
    Ok(())
}

async fn report(a: ReportArgs) -> anyhow::Result<()> {
    let secs = filter::parse_duration(&a.since)?;
    let mut f = Filter::last(secs, rstwatch_collector::log::now_us() / 1_000_000);
    f.sensor = a.sensor;
    f.service_port = a.port;
    let format = match a.format.as_str() {
        "markdown" => report::Format::Markdown,
        _ => report::Format::Html,
    };
    let insight = Insight::connect(&a.ch.config()).await?;
    let text = report::render(&insight, &f, format).await?;
    match &a.out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// Retention on servers without TTL: drops expired day partitions every hour.
fn spawn_retention(store: &Store, days: u32) {
    if days == 0 || store.dialect.has_ttl() {
        return;
    }
    let st = store.clone();
    tokio::spawn(async move {
        loop {
            match st.drop_expired_partitions(days).await {
                Ok(0) => {}
                Ok(n) => info!("retention: dropped {n} day partitions older than {days} days"),
                Err(e) => warn!("retention: {e:#}"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}

/// Health probe: keeps `clickhouse_up` honest when no batches flow. A frozen server
/// answers nothing: a probe that gets no answer in 5 s is a failure.
fn spawn_health_probe(store: &Store, m: Arc<Metrics>) {
    let st = store.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let ping = tokio::time::timeout(Duration::from_secs(5), st.ping()).await;
            let up = matches!(ping, Ok(Ok(())));
            m.clickhouse_up
                .store(up as u64, std::sync::atomic::Ordering::Relaxed);
        }
    });
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn print_schema(a: PrintArgs) -> anyhow::Result<()> {
    let d = Dialect::from_version(&a.server_version, a.retention_days)
        .with_context(|| format!("bad server version {:?}", a.server_version))?;
    if a.queries {
        let p = cookbook_params(&a)?;
        let mut found = false;
        for (name, q) in sql::QUERIES {
            if a.query.as_deref().is_some_and(|only| only != *name) {
                continue;
            }
            found = true;
            let q = match &p {
                Some(p) => cookbook::bind(q, p).with_context(|| format!("query {name}"))?,
                None => q.to_string(),
            };
            let body = q.trim().trim_end_matches(';');
            match a.query {
                Some(_) => println!("{body}"),
                None => println!("-- query: {name}\n{body};\n"),
            }
        }
        if !found {
            anyhow::bail!("no cookbook query named {:?}", a.query.unwrap_or_default());
        }
    } else {
        for m in sql::MIGRATIONS {
            println!("-- migration {} ({})", m.version, m.name);
            for st in sql::statements(&d.render(m.sql, &format!("`{}`", a.database))) {
                println!("{st};\n");
            }
        }
        println!("-- cause_remedies, refilled by every migrate");
        for st in sql::cause_remedies_refresh(&format!("`{}`", a.database)) {
            println!("{st};\n");
        }
    }
    Ok(())
}
