//! Live capture tests: real AF_XDP on veth pairs in network namespaces (root; they
//! skip with a reason elsewhere, and fail in CI). Kept apart from the offline tests.
//!
//! One binary for all of them; the tests of one module run in parallel as they did as
//! separate binaries, but two modules never overlap
//! ([`live_common::one_file_at_a_time`]): throughput and timing tests on two cores
//! must not compete with each other's traffic.

#[path = "../live_common/mod.rs"]
mod live_common;

mod capture;
mod encap;
mod errors;
mod mixed;
mod run;
mod ship;
mod shutdown;
