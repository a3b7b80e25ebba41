//! A minimal HTTP endpoint serving the Prometheus text format (`--metrics-listen`).
//! One request per connection, any path but `/metrics` and `/` is 404. Runs until the
//! capture drains.

use super::Shared;
use anyhow::Context;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub(super) fn serve(
    addr: &SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .with_context(|| format!("metrics endpoint: cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    log::info!(
        "metrics: serving Prometheus text on http://{}/metrics",
        listener.local_addr()?
    );
    Ok(std::thread::Builder::new()
        .name("rw-metrics".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        if let Err(e) = answer(conn, &shared) {
                            log::debug!("metrics: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(e) => {
                        log::warn!("metrics: accept: {e}");
                        std::thread::sleep(Duration::from_millis(200))
                    }
                }
            }
        })?)
}

fn answer(mut conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 4096];
    let mut n = 0;
    while n < buf.len() {
        let k = conn.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n")
            || buf[..n].windows(2).any(|w| w == b"\n\n")
        {
            break;
        }
    }
    let req = String::from_utf8_lossy(&buf[..n]);
    let path = req.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = if path == "/metrics" || path == "/" {
        ("200 OK", shared.view().prometheus())
    } else {
        ("404 Not Found", "not found: try /metrics\n".to_string())
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}
