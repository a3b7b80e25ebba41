//! The form a receive batch of live frames takes on its way to a
//! [`Processor`](super::Processor) in per-queue mode (fan-out hands on
//! [`ParsedBatch`](crate::parse::ParsedBatch)es).

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
