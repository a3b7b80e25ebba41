//! The wire decoder under hostile input: property tests (the bounded fuzz run CI does
//! on every `cargo test`) and memory bounds measured with a counting allocator.
//!
//! `PROPTEST_CASES=200000 cargo test -p rstwatch-schema --test wire` runs the fuzz
//! properties longer by hand.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

use proptest::prelude::*;
use rstwatch_schema::frame::{
    self, decode_payload_limited, mark_resent, verify_frame, Codec, Deframer, FrameError, Kind,
    Limits, HEADER_LEN, MAX_RAW_LEN, MAX_WIRE_LEN,
};

/// Counts the largest amount of heap in use at once, so a test can say "decoding this
/// frame never held more than N bytes".
struct PeakAlloc;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Tests that measure run one at a time.
static MEASURE: Mutex<()> = Mutex::new(());

// SAFETY: every method forwards to the system allocator unchanged; the counters
// only observe sizes.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = IN_USE.fetch_add(l.size(), SeqCst) + l.size();
        PEAK.fetch_max(now, SeqCst);
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        IN_USE.fetch_sub(l.size(), SeqCst);
        // SAFETY: `p` came from `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: PeakAlloc = PeakAlloc;

/// Peak heap growth (bytes) while `f` runs.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = IN_USE.load(SeqCst);
    PEAK.store(base, SeqCst);
    let r = f();
    (r, PEAK.load(SeqCst).saturating_sub(base))
}

/// A 36-byte frame that declares `raw_len` decompressed bytes (the issue 9 "hello bomb").
fn bomb(kind: Kind, codec: Codec, raw_len: u32) -> Vec<u8> {
    let mut f = frame::encode(kind, codec, 0, &[0u8; 64]);
    f[12..16].copy_from_slice(&raw_len.to_le_bytes());
    f
}

#[test]
fn a_declared_size_never_sizes_an_allocation() {
    let _g = MEASURE.lock().unwrap();
    for codec in [Codec::Zstd, Codec::Lz4] {
        let f = bomb(Kind::Batch, codec, 256 << 20);
        let mut d = Deframer::new(Limits::new(MAX_WIRE_LEN, MAX_RAW_LEN));
        d.push(&f);
        let fr = d.next_frame().unwrap().unwrap();
        let (r, peak) =
            peak_during(|| decode_payload_limited(&fr.header, &fr.payload, MAX_RAW_LEN));
        assert_eq!(r.unwrap_err().name(), "bad_compression", "{codec:?}");
        assert!(
            peak < 1 << 20,
            "{codec:?}: decoding a 36-byte frame that declares 256 MiB held {peak} bytes"
        );
    }
}

#[test]
fn a_handshake_frame_declaring_more_than_the_handshake_limit_is_refused_at_its_header() {
    let _g = MEASURE.lock().unwrap();
    let f = bomb(Kind::Hello, Codec::Zstd, 256 << 20);
    let mut d = Deframer::new(Limits::HANDSHAKE);
    let (r, peak) = peak_during(|| {
        d.push(&f[..HEADER_LEN]);
        d.next_frame()
    });
    assert_eq!(r.unwrap_err().name(), "too_long");
    assert!(peak < 64 << 10, "{peak}");
}

#[test]
fn tls_bytes_are_named_as_tls() {
    // A TLS alert record, as a TLS server answers a plaintext hello, then a close.
    let mut d = Deframer::new(Limits::CONTROL);
    d.push(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32]);
    assert_eq!(d.next_frame(), Err(FrameError::Tls));
    let mut d = Deframer::new(Limits::CONTROL);
    d.push(&[0x16, 0x03]);
    assert_eq!(d.next_frame(), Ok(None));
    assert_eq!(d.at_eof(), Err(FrameError::Tls));
    // A TLS ClientHello sent to a plaintext collector.
    let mut d = Deframer::new(Limits::HANDSHAKE);
    d.push(&[
        0x16, 0x03, 0x01, 0x00, 0xf4, 0x01, 0, 0, 0xf0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    assert_eq!(d.next_frame(), Err(FrameError::Tls));
}

#[test]
fn resent_is_marked_outside_the_checksum() {
    let mut f = frame::encode(Kind::Batch, Codec::Zstd, 0, b"hello batch");
    mark_resent(&mut f).unwrap();
    let (h, raw) = verify_frame(&f, Limits::CONTROL).unwrap();
    assert!(h.is_resent());
    assert_eq!(&raw[..], b"hello batch");
    assert_eq!(mark_resent(&mut [0u8; 5]), Err(FrameError::Truncated));
    assert_eq!(
        mark_resent(&mut [b'X'; HEADER_LEN]).unwrap_err().name(),
        "bad_magic"
    );
}

#[test]
fn verify_frame_refuses_empty_cut_and_padded_files() {
    let f = frame::encode(Kind::Batch, Codec::Lz4, 0, &[9u8; 5000]);
    let err = |b: &[u8]| verify_frame(b, Limits::CONTROL).map(|_| ()).unwrap_err();
    assert_eq!(err(&[]), FrameError::Truncated);
    assert_eq!(err(&f[..f.len() - 1]), FrameError::Truncated);
    let mut g = f.clone();
    g.push(0);
    assert_eq!(err(&g), FrameError::TrailingBytes(1));
}

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::None), Just(Codec::Lz4), Just(Codec::Zstd)]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Hello),
        Just(Kind::Welcome),
        Just(Kind::Batch),
        Just(Kind::Ack),
        Just(Kind::Reject)
    ]
}

/// Feeds `bytes` to a deframer in chunks of the given sizes, decoding every frame.
fn feed(bytes: &[u8], chunks: &[usize], limits: Limits) -> Vec<Result<Vec<u8>, FrameError>> {
    let mut d = Deframer::new(limits);
    let mut out = Vec::new();
    let mut at = 0;
    let mut sizes = chunks.iter().cycle();
    while at < bytes.len() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, bytes.len() - at);
        d.push(&bytes[at..at + n]);
        at += n;
        loop {
            match d.next_frame() {
                Ok(Some(f)) => out.push(
                    decode_payload_limited(&f.header, &f.payload, limits.max_raw)
                        .map(|v| v.to_vec()),
                ),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    if let Err(e) = d.at_eof() {
        out.push(Err(e));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// encode → any chunking → decode gives back every payload, in order.
    #[test]
    fn encode_then_decode_round_trips(
        frames in prop::collection::vec((kind(), codec(), any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..3000)), 1..5),
        chunks in prop::collection::vec(1usize..700, 1..8),
    ) {
        let mut wire = Vec::new();
        for (k, c, resent, raw) in &frames {
            let mut f = frame::encode(*k, *c, 0, raw);
            if *resent { mark_resent(&mut f).unwrap(); }
            wire.extend_from_slice(&f);
        }
        let got = feed(&wire, &chunks, Limits::CONTROL);
        prop_assert_eq!(got.len(), frames.len());
        for (g, (_, _, _, raw)) in got.iter().zip(&frames) {
            prop_assert_eq!(g.as_ref().unwrap(), raw);
        }
    }

    /// The fuzz property: any byte string gives frames or one typed error, never a
    /// panic, and never more memory than the limits allow.
    #[test]
    fn any_bytes_give_frames_or_a_typed_error(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        chunks in prop::collection::vec(1usize..300, 1..6),
    ) {
        for r in feed(&bytes, &chunks, Limits::HANDSHAKE) {
            if let Err(e) = r { prop_assert!(!e.name().is_empty()); }
        }
    }

    /// Valid frames with bytes flipped, cut or inserted (what a damaging proxy does):
    /// every outcome is a frame or a typed error.
    #[test]
    fn damaged_frames_give_frames_or_a_typed_error(
        c in codec(),
        raw in prop::collection::vec(any::<u8>(), 0..2000),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        chunks in prop::collection::vec(1usize..300, 1..6),
    ) {
        let mut f = frame::encode(Kind::Batch, c, 0, &raw);
        for (i, v) in &flips {
            let at = i.index(f.len());
            f[at] ^= v;
        }
        let keep = cut.index(f.len() + 1);
        for p in feed(&f[..keep.max(1)], &chunks, Limits::CONTROL).into_iter().flatten() {
            prop_assert!(p.len() <= Limits::CONTROL.max_raw as usize);
        }
    }
}
