//! The forms a batch of live frames takes on its way to a [`Processor`](super::Processor).

/// A batch of frames copied out of the UMEM for one fan-out worker.
pub(super) struct Batch {
    data: Vec<u8>,
    /// (timestamp µs, end offset in `data`)
    frames: Vec<(i64, u32)>,
}

impl Batch {
    pub(super) fn new(cap: usize) -> Batch {
        Batch {
            data: Vec::with_capacity(cap * 256),
            frames: Vec::with_capacity(cap),
        }
    }

    pub(super) fn push(&mut self, ts: i64, f: &[u8]) {
        self.data.extend_from_slice(f);
        self.frames.push((ts, self.data.len() as u32));
    }

    pub(super) fn len(&self) -> usize {
        self.frames.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.data.clear();
        self.frames.clear();
    }

    /// The frames in order, as `(timestamp µs, bytes)`.
    pub(super) fn iter(&self) -> impl Iterator<Item = (i64, &[u8])> {
        let mut start = 0usize;
        self.frames.iter().map(move |&(ts, end)| {
            let f = &self.data[start..end as usize];
            start = end as usize;
            (ts, f)
        })
    }
}

/// Reused room for one batch's `(timestamp µs, frame)` pairs, the form
/// [`Processor::batch`](super::Processor::batch) and `Engine::process_batch` take, so
/// lending a batch allocates nothing once warm.
#[derive(Default)]
pub(super) struct Pairs(Vec<(i64, &'static [u8])>);

impl Pairs {
    /// Collects `frames` and lends them to `f` as one slice.
    pub(super) fn lend<'a, R>(
        &mut self,
        frames: impl IntoIterator<Item = (i64, &'a [u8])>,
        f: impl FnOnce(&[(i64, &'a [u8])]) -> R,
    ) -> R {
        let mut v: Vec<(i64, &'a [u8])> = std::mem::take(&mut self.0);
        v.extend(frames);
        let r = f(&v);
        v.clear();
        // Same layout: the standard library's in-place collect keeps the buffer.
        self.0 = v.into_iter().map(|_| unreachable!("emptied")).collect();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_back_its_frames_in_order() {
        let mut b = Batch::new(4);
        b.push(10, b"ab");
        b.push(11, b"");
        b.push(12, b"cde");
        let got: Vec<(i64, Vec<u8>)> = b.iter().map(|(t, f)| (t, f.to_vec())).collect();
        assert_eq!(
            got,
            vec![(10, b"ab".to_vec()), (11, vec![]), (12, b"cde".to_vec())]
        );
        assert_eq!(b.len(), 3);
        b.clear();
        assert!(b.is_empty() && b.iter().next().is_none());
    }

    #[test]
    fn pairs_lend_a_slice_and_keep_their_allocation() {
        let mut pairs = Pairs::default();
        let data = [b"x".to_vec(), b"yz".to_vec()];
        let n = pairs.lend(
            data.iter().enumerate().map(|(i, d)| (i as i64, &d[..])),
            |s| {
                assert_eq!(s, &[(0, &b"x"[..]), (1, &b"yz"[..])]);
                s.len()
            },
        );
        assert_eq!(n, 2);
        let cap = pairs.0.capacity();
        assert!(cap >= 2 && pairs.0.is_empty());
        pairs.lend(data.iter().map(|d| (0, &d[..])), |s| assert_eq!(s.len(), 2));
        assert_eq!(pairs.0.capacity(), cap);
    }
}
