//! Harness: the settle timeout, a logged step with its compensation, and a quick retry
//! policy.

use std::time::Duration;

use merit_sagas::{RetryPolicy, StepContext, StepDef, StepOutcome};

use crate::common::World;

/// How long a test waits for a saga to settle.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A step that logs its call and applies one effect keyed by its idempotency key; its
/// compensation does the same with its own key.
pub(crate) fn logged(world: &World, name: &'static str) -> StepDef {
    let (w, wc) = (world.clone(), world.clone());
    StepDef::new(name, move |ctx: StepContext| {
        let w = w.clone();
        async move {
            w.call(name);
            w.apply(&ctx.idempotency_key.to_string());
            StepOutcome::done(format!("{name}-out"))
        }
    })
    .compensate(move |ctx: StepContext| {
        let w = wc.clone();
        async move {
            w.call(format!("undo {name}"));
            w.apply(&ctx.idempotency_key.to_string());
            StepOutcome::done_empty()
        }
    })
}

/// A retry policy of `max_attempts` with short backoff (20 ms doubling to 200 ms), no jitter.
pub(crate) fn quick_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::exponential(
        max_attempts,
        Duration::from_millis(20),
        Duration::from_millis(200),
    )
    .without_jitter()
}
