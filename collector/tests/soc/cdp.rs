//! A headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: commands in on fd 3, answers out on fd 4, each a JSON
//! message ended by NUL) — no websocket, no driver binary, no unsafe fd juggling: the
//! shell maps the child's stdin and stdout to fds 3 and 4.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use serde_json::{json, Value};

/// The browser binary, when installed.
pub(crate) fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

pub(crate) struct Browser {
    child: Child,
    input: ChildStdin,
    answers: Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: rstwatch_collector::testing::TempDir,
}

impl Browser {
    /// Starts the browser with one page of `width`×`height` CSS pixels.
    pub(crate) fn start(bin: &Path, width: u32, height: u32) -> anyhow::Result<Browser> {
        let profile = rstwatch_collector::testing::TempDir::new("rstwatch-chromium")?;
        let cmd = format!(
            "exec '{}' --headless --no-sandbox --disable-gpu --no-first-run \
             --hide-scrollbars --disable-extensions --disable-background-networking --disable-sync \
             --remote-debugging-pipe --user-data-dir='{}' 3<&0 4>&1 0</dev/null 1>&2",
            bin.display(),
            profile.path().display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &cmd])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromium")?;
        let input = child.stdin.take().context("stdin")?;
        let output = child.stdout.take().context("stdout")?;
        let (tx, answers) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(output);
            let mut buf = Vec::new();
            while matches!(r.read_until(0, &mut buf), Ok(n) if n > 0) {
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
                buf.clear();
            }
        });
        let mut b = Browser {
            child,
            input,
            answers,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}))?;
        let tid = target["targetId"].as_str().context("targetId")?.to_string();
        let att = b.call(
            "Target.attachToTarget",
            json!({"targetId": tid, "flatten": true}),
        )?;
        b.session = att["sessionId"].as_str().context("sessionId")?.to_string();
        b.call("Page.enable", json!({}))?;
        b.call("Page.setBypassCSP", json!({"enabled": true}))?;
        b.resize(width, height)?;
        Ok(b)
    }

    /// One command; waits for its answer (events in between are skipped).
    pub(crate) fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg)?;
        bytes.push(0);
        self.input.write_all(&bytes)?;
        self.input.flush()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .answers
                .recv_timeout(left)
                .with_context(|| format!("no answer to {method}"))?;
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    bail!("{method}: {e}");
                }
                return Ok(v["result"].clone());
            }
        }
    }

    pub(crate) fn resize(&mut self, width: u32, height: u32) -> anyhow::Result<()> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )?;
        Ok(())
    }

    /// Every request of the page carries these headers (the view's token).
    pub(crate) fn headers(&mut self, headers: Value) -> anyhow::Result<()> {
        self.call("Network.enable", json!({}))?;
        self.call("Network.setExtraHTTPHeaders", json!({ "headers": headers }))?;
        Ok(())
    }

    /// A JavaScript expression's value (JSON-serialisable).
    pub(crate) fn eval(&mut self, expr: &str) -> anyhow::Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!("{expr}: {e}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Navigates and waits until the page has loaded.
    pub(crate) fn goto(&mut self, url: &str) -> anyhow::Result<()> {
        self.call("Page.navigate", json!({ "url": url }))?;
        self.wait_loaded(url.split('#').next().unwrap_or(url))
    }

    /// Waits until the document at a URL starting with `prefix` is complete.
    pub(crate) fn wait_loaded(&mut self, prefix: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let check = format!(
            "document.readyState === 'complete' && location.href.startsWith({})",
            json!(prefix)
        );
        while Instant::now() < deadline {
            if self.eval(&check)? == json!(true) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("page {prefix} did not load")
    }

    /// A PNG of the whole page (not just the viewport).
    pub(crate) fn screenshot(&mut self) -> anyhow::Result<Vec<u8>> {
        let m = self.call("Page.getLayoutMetrics", json!({}))?;
        let w = m["cssContentSize"]["width"].as_f64().unwrap_or(1400.0);
        let h = m["cssContentSize"]["height"].as_f64().unwrap_or(900.0);
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true,
                   "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}}),
        )?;
        let data = r["data"].as_str().context("screenshot data")?;
        Ok(base64::engine::general_purpose::STANDARD.decode(data)?)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask first, so the browser takes its helper processes with it.
        self.session.clear();
        let _ = self
            .input
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\"}\0");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
