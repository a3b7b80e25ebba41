//! `Engine::process_batch` gives exactly the records `Engine::process` gives, in the same
//! order, whatever the batch boundaries (flows created, closed and evicted inside a
//! batch included).

use rstwatch_schema::Record;
use rstwatch_sensor::gen::{self, GenOptions, Scenario};
use rstwatch_sensor::{Engine, EngineConfig};

type Outcome = (Vec<Record>, Vec<(&'static str, u64)>);

fn one_by_one(cfg: &EngineConfig, frames: &[(i64, &[u8])]) -> Outcome {
    let mut e = Engine::new(cfg);
    let mut out = vec![];
    for &(ts, f) in frames {
        e.process(ts, gen::LINK_TYPE, f, &mut out);
    }
    e.finish(&mut out);
    (out, e.counters())
}

fn batched(cfg: &EngineConfig, frames: &[(i64, &[u8])], size: usize) -> Outcome {
    let mut e = Engine::new(cfg);
    let mut out = vec![];
    for chunk in frames.chunks(size) {
        e.process_batch(gen::LINK_TYPE, chunk, &mut out);
    }
    e.finish(&mut out);
    (out, e.counters())
}

#[test]
fn batches_equal_single_frames() {
    let g = gen::generate(
        Scenario::Mixed,
        &GenOptions {
            flows: 300,
            ..GenOptions::default()
        },
    );
    let mut frames: Vec<(i64, &[u8])> = g
        .frames
        .iter()
        .map(|f| (f.ts_us, f.data.as_slice()))
        .collect();
    // Some garbage in between: rejections must be counted in order too.
    let junk = [0u8; 7];
    for i in (0..frames.len()).step_by(97).rev() {
        frames.insert(i, (frames[i].0, &junk));
    }
    // A small table, so batches see evictions of flows they looked up.
    for cfg in [
        EngineConfig::default(),
        EngineConfig {
            flow_capacity: 50,
            ..EngineConfig::default()
        },
    ] {
        let (want, want_counters) = one_by_one(&cfg, &frames);
        assert!(want.len() > 300);
        let rejected = want_counters
            .iter()
            .find(|(n, _)| *n == "rejected")
            .unwrap()
            .1;
        assert!(rejected > 0, "the junk frames are counted");
        for size in [1, 2, 16, 64, 1000] {
            let (got, counters) = batched(&cfg, &frames, size);
            assert!(
                got == want,
                "batch size {size}, capacity {}: records differ",
                cfg.flow_capacity
            );
            assert_eq!(
                counters, want_counters,
                "batch size {size}: counters differ"
            );
        }
    }
}
