//! Retries: transient failures, timeouts and panicking steps are retried with backoff.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use merit_sagas::{
    RetryPolicy, SagaDefinition, SagaId, SagaState, StepContext, StepDef, StepOutcome,
};
use serde_json::json;

use crate::{
    common::{executor, Backend, TestDb, World},
    harness::{quick_retry, WAIT},
    on_both_backends,
};

on_both_backends! {
    transient_failures_are_retried_with_backoff_then_succeed => transient_failures;
    a_timeout_counts_as_a_transient_failure => timeout_is_transient;
    a_panicking_step_counts_as_a_transient_failure => panicking_step;
}

async fn transient_failures(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let world = World::default();
    let times = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let (w, t) = (world.clone(), times.clone());
    let policy = RetryPolicy::exponential(5, Duration::from_millis(150), Duration::from_secs(5))
        .without_jitter();
    let def = SagaDefinition::new("flaky").step(
        StepDef::new("call", move |ctx: StepContext| {
            let (w, t) = (w.clone(), t.clone());
            async move {
                t.lock().expect("lock").push(Instant::now());
                w.call(format!("call {}", ctx.attempt));
                if ctx.attempt < 3 {
                    StepOutcome::retry(format!("503 on attempt {}", ctx.attempt))
                } else {
                    StepOutcome::done_empty()
                }
            }
        })
        .retry(policy),
    );
    let exec = executor(db.store().await, "n1", vec![def]);
    let id = SagaId::random();
    exec.start("flaky", id, &json!({})).await.expect("start");
    let view = exec.wait(id, WAIT).await.expect("settles");

    assert_eq!(view.saga.state, SagaState::Completed);
    assert_eq!(world.calls(), vec!["call 1", "call 2", "call 3"]);
    assert_eq!(view.steps[0].attempts, 3);
    assert_eq!(
        view.steps[0].last_error.as_deref(),
        Some("503 on attempt 2")
    );
    let t = times.lock().expect("lock").clone();
    let (first, second) = (t[1] - t[0], t[2] - t[1]);
    assert!(
        first >= Duration::from_millis(150),
        "first backoff {first:?}"
    );
    assert!(
        second >= Duration::from_millis(300),
        "second backoff doubles: {second:?}"
    );
    db.cleanup().await;
}

async fn panicking_step(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let world = World::default();
    let w = world.clone();
    let def = SagaDefinition::new("panicky").step(
        StepDef::new("call", move |ctx: StepContext| {
            let w = w.clone();
            async move {
                w.call(format!("call {}", ctx.attempt));
                if ctx.attempt == 1 {
                    panic!("the step's code blew up");
                }
                StepOutcome::done_empty()
            }
        })
        .retry(quick_retry(3)),
    );
    let exec = executor(db.store().await, "n1", vec![def]);
    let id = SagaId::random();
    exec.start("panicky", id, &json!({})).await.expect("start");
    let view = exec.wait(id, WAIT).await.expect("settles");

    assert_eq!(
        view.saga.state,
        SagaState::Completed,
        "the executor survived"
    );
    assert_eq!(world.calls(), vec!["call 1", "call 2"]);
    assert_eq!(
        view.steps[0].last_error.as_deref(),
        Some("panicked: the step's code blew up")
    );
    db.cleanup().await;
}

async fn timeout_is_transient(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let world = World::default();
    let w = world.clone();
    let def = SagaDefinition::new("slow").step(
        StepDef::new("rpc", move |ctx: StepContext| {
            let w = w.clone();
            async move {
                w.call(format!("rpc {}", ctx.attempt));
                if ctx.attempt == 1 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                StepOutcome::done_empty()
            }
        })
        .timeout(Duration::from_millis(200))
        .retry(quick_retry(3)),
    );
    let exec = executor(db.store().await, "n1", vec![def]);
    let id = SagaId::random();
    let t0 = Instant::now();
    exec.start("slow", id, &json!({})).await.expect("start");
    let view = exec.wait(id, WAIT).await.expect("settles");

    assert_eq!(view.saga.state, SagaState::Completed);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "the slow call was abandoned"
    );
    assert_eq!(world.calls(), vec!["rpc 1", "rpc 2"]);
    assert_eq!(view.steps[0].attempts, 2);
    let err = view.steps[0].last_error.clone().expect("timeout recorded");
    assert!(err.contains("timed out after 200 ms"), "{err}");
    db.cleanup().await;
}
