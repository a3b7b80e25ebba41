//! The workers' shared output: each worker collects its JSON lines into large chunks
//! and writes a chunk itself, under a lock. No writer thread: it was no faster (the
//! output is a few hundred chunks) and is one more thread to schedule on few cores
//! (RESULTS.md, "replay --workers N").

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes of JSON a worker collects before it writes them.
const CHUNK: usize = 1 << 16;

/// The output and the first error writing to it.
pub(super) struct Shared<W> {
    inner: Mutex<(W, Option<std::io::Error>)>,
}

impl<W: Write> Shared<W> {
    pub(super) fn new(out: W) -> Arc<Shared<W>> {
        Arc::new(Shared {
            inner: Mutex::new((out, None)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, (W, Option<std::io::Error>)> {
        // A worker that panicked holding the lock left whole chunks behind: go on.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `bytes` (whole lines) unless a write has failed; a failure is kept for
    /// [`Shared::finish`] and its kind returned, so the worker stops formatting.
    fn write_chunk(&self, bytes: &[u8], flush: bool) -> std::io::Result<()> {
        let mut g = self.lock();
        let (out, error) = &mut *g;
        if let Some(e) = error {
            return Err(e.kind().into());
        }
        let r = out
            .write_all(bytes)
            .and_then(|_| if flush { out.flush() } else { Ok(()) });
        r.map_err(|e| {
            let kind = e.kind();
            *error = Some(e);
            kind.into()
        })
    }

    /// Flushes the output; the first write error, if any.
    pub(super) fn finish(&self) -> std::io::Result<()> {
        let mut g = self.lock();
        let (out, error) = &mut *g;
        match error.take() {
            Some(e) => Err(e),
            None => out.flush(),
        }
    }
}

/// One worker's side: lines collect here and go out in chunks of about [`CHUNK`],
/// always ending at a line's end (so workers' lines never mix).
pub(super) struct Chunks<W> {
    buf: Vec<u8>,
    out: Arc<Shared<W>>,
}

impl<W: Write> Chunks<W> {
    pub(super) fn new(out: Arc<Shared<W>>) -> Chunks<W> {
        Chunks {
            buf: Vec::with_capacity(CHUNK + 4096),
            out,
        }
    }

    fn send(&mut self, flush: bool) -> std::io::Result<()> {
        let r = self.out.write_chunk(&self.buf, flush);
        self.buf.clear();
        r
    }
}

impl<W: Write> Write for Chunks<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        // A record may come in several writes (serde's); its last ends the line. JSON
        // escapes a newline inside a string, so a raw one only ends a record.
        if self.buf.len() >= CHUNK && b.last() == Some(&b'\n') {
            self.send(false)?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that fails after `ok` bytes.
    struct Failing {
        ok: usize,
        got: Vec<u8>,
    }

    impl Write for Failing {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.got.len() + b.len() > self.ok {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.got.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Two writers' lines, written piecewise, come out whole: each chunk ends a line.
    #[test]
    fn chunks_end_at_line_ends() {
        let shared = Shared::new(Vec::new());
        let mut a = Chunks::new(shared.clone());
        let mut b = Chunks::new(shared.clone());
        for i in 0..20_000 {
            // Serde writes a record in pieces, then the newline.
            write!(a, "{{\"a\":{i}").unwrap();
            a.write_all(b"}\n").unwrap();
            write!(b, "{{\"b\":{i}").unwrap();
            b.write_all(b"}").unwrap();
            b.write_all(b"\n").unwrap();
        }
        a.flush().unwrap();
        b.flush().unwrap();
        drop((a, b));
        let out = Arc::try_unwrap(shared)
            .ok()
            .unwrap()
            .inner
            .into_inner()
            .unwrap();
        let text = String::from_utf8(out.0).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 40_000);
        for l in &lines {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert!(v.get("a").or(v.get("b")).is_some());
        }
        // Chunks did interleave (else the test shows nothing).
        let first_b = lines.iter().position(|l| l.contains("\"b\"")).unwrap();
        assert!(lines[first_b..].iter().any(|l| l.contains("\"a\"")));
    }

    /// The first write error stops every worker's writing and is the one reported.
    #[test]
    fn first_write_error_is_kept_and_stops_all() {
        let shared = Shared::new(Failing {
            ok: 100_000,
            got: Vec::new(),
        });
        let mut a = Chunks::new(shared.clone());
        let mut b = Chunks::new(shared.clone());
        let line = [b'x'; 99];
        let mut a_err = None;
        for _ in 0..2000 {
            if let Err(e) = a.write_all(&line).and_then(|_| a.write_all(b"\n")) {
                a_err = Some(e.kind());
                break;
            }
        }
        assert_eq!(a_err, Some(std::io::ErrorKind::BrokenPipe));
        let b_err = b.write_all(&[b'y'; CHUNK]).and_then(|_| b.write_all(b"\n"));
        assert_eq!(b_err.unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
        assert_eq!(
            shared.finish().unwrap_err().kind(),
            std::io::ErrorKind::BrokenPipe
        );
        let written = shared.lock().0.got.len();
        assert!(
            written <= 100_000 && written.is_multiple_of(100),
            "{written}"
        );
    }
}
