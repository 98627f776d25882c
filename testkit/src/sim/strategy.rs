//! Proptest strategies for schedules (they shrink towards short, simple ones).

use proptest::prelude::*;

use super::Step;

/// One step for `workers` workers.
pub fn step(workers: u8) -> impl Strategy<Value = Step> {
    let w = 0..workers.max(1);
    prop_oneof![
        4 => (1u16..40).prop_map(Step::Send),
        4 => (1u32..5_000).prop_map(Step::Run),
        3 => w.clone().prop_map(Step::Join),
        1 => w.clone().prop_map(Step::Leave),
        2 => w.clone().prop_map(Step::Crash),
        1 => (w.clone(), w).prop_map(|(a, b)| Step::JoinWhileRecovering(a, b)),
        1 => (1u32..20_000).prop_map(Step::JumpClock),
    ]
}

/// A schedule of up to `max_len` steps that starts with worker 0 joining.
pub fn schedule(workers: u8, max_len: usize) -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(step(workers), 0..max_len).prop_map(|mut v| {
        v.insert(0, Step::Join(0));
        v
    })
}
