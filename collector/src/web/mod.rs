//! The built-in SOC view (`serve --http ADDR`): a small read-only web app over the
//! rstwatch tables for sites without Grafana. Server-side HTML and SVG only: no
//! script, no external asset, so it works offline and behind strict proxies.
//!
//! Routes: `/` the overview (range picker, auto-refresh), `/rows` the rows behind a
//! number, `/healthz`. Every route but `/healthz` needs the token (see [`auth`]).

mod auth;
pub(crate) mod html;
pub(crate) mod page;
mod rows;
mod sections;
mod svg;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use auth::WebAuth;

use crate::insight::{Filter, Insight, Overview};
use page::Mode;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;

/// What the HTTP handlers share.
pub struct App {
    /// Runs the queries.
    pub insight: Insight,
    /// Who may read the view.
    pub auth: WebAuth,
}

/// Serves the view on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, app: Arc<App>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                crate::warn!("web: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            drop(permit);
        });
    }
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    let set = |h: &mut hyper::HeaderMap, k: &'static str, v: &str| {
        if let Ok(v) = v.parse() {
            h.insert(k, v);
        }
    };
    set(h, "content-type", content_type);
    set(h, "cache-control", "no-store");
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    // Nothing but the page itself: no script at all, styles inline, forms to itself.
    set(
        h,
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'",
    );
    r
}

fn error_page(status: StatusCode, msg: &str) -> Resp {
    respond(
        status,
        "text/html; charset=utf-8",
        format!(
            "{}<main><section class=\"wide\"><h2>{}</h2><p>{}</p><p><a href=\"/\">overview</a></p></section></main></body></html>",
            page::head("error", &Mode::Report { generated: String::new() }),
            status,
            html::esc(msg)
        ),
    )
}

impl App {
    async fn handle(&self, req: Request<Incoming>) -> Resp {
        let path = req.uri().path().to_string();
        if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
            return error_page(StatusCode::METHOD_NOT_ALLOWED, "read-only: GET only");
        }
        if path == "/healthz" {
            return respond(StatusCode::OK, "text/plain", "ok\n".into());
        }
        let authz = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if !self.auth.allows(authz) {
            let mut r = error_page(StatusCode::UNAUTHORIZED, "token required");
            if let Ok(v) = "Basic realm=\"rstwatch\", charset=\"UTF-8\"".parse() {
                r.headers_mut().insert("www-authenticate", v);
            }
            return r;
        }
        let query = req.uri().query().unwrap_or("").to_string();
        let now = crate::log::now_us() / 1_000_000;
        let filter = match Filter::from_query(&query, now) {
            Ok(f) => f,
            Err(e) => return error_page(StatusCode::BAD_REQUEST, &format!("{e:#}")),
        };
        let page = match path.as_str() {
            "/" => self.overview(&filter, &query).await,
            "/rows" => {
                rows::page(
                    &self.insight,
                    &filter,
                    has_pair(&query, "what", "anomalies"),
                )
                .await
            }
            _ => return error_page(StatusCode::NOT_FOUND, "no such page"),
        };
        match page {
            Ok(html) => respond(StatusCode::OK, "text/html; charset=utf-8", html),
            Err(e) => error_page(StatusCode::BAD_GATEWAY, &format!("ClickHouse: {e:#}")),
        }
    }

    async fn overview(&self, f: &Filter, query: &str) -> anyhow::Result<String> {
        let ov = Overview::load(&self.insight, f).await?;
        let mut range = None;
        let mut refresh = None;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "range" if !v.is_empty() && !has_key(query, "from") => range = Some(v.into_owned()),
                "refresh" => refresh = v.parse::<u32>().ok().filter(|n| *n > 0).map(|n| n.max(10)),
                _ => {}
            }
        }
        if !has_key(query, "from") && range.is_none() {
            range = Some("1h".into());
        }
        Ok(page::overview(&ov, &Mode::Live { range, refresh }))
    }
}

fn has_key(query: &str, key: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == key && !v.is_empty())
}

fn has_pair(query: &str, key: &str, value: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == key && v == value)
}
