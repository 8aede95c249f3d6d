//! Compensation: completed steps are compensated in reverse after a permanent failure or a
//! step out of attempts; a compensation that gives up leaves the saga stuck until an
//! operator retries.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use merit_sagas::{
    SagaDefinition, SagaError, SagaId, SagaState, StepContext, StepDef, StepOutcome, StepState,
};
use serde_json::json;

use crate::{
    common::{executor, Backend, TestDb, World},
    harness::{logged, quick_retry, WAIT},
    on_both_backends,
};

on_both_backends! {
    a_permanent_failure_compensates_completed_steps_in_reverse => permanent_failure;
    a_step_out_of_attempts_is_compensated_too => exhausted_step;
    a_compensation_that_gives_up_leaves_the_saga_stuck_until_an_operator_retries => stuck_then_retry;
}

async fn permanent_failure(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let world = World::default();
    let w = world.clone();
    let def = SagaDefinition::new("fails_at_3")
        .step(logged(&world, "one"))
        .step(logged(&world, "two"))
        .step(
            StepDef::new("three", move |_ctx: StepContext| {
                let w = w.clone();
                async move {
                    w.call("three");
                    StepOutcome::fail("insufficient funds")
                }
            })
            .compensate(|_ctx: StepContext| async { panic!("a failed step is not compensated") }),
        )
        .step(logged(&world, "four"));
    let exec = executor(db.store().await, "n1", vec![def]);
    let id = SagaId::random();
    exec.start("fails_at_3", id, &json!({}))
        .await
        .expect("start");
    let view = exec.wait(id, WAIT).await.expect("settles");

    assert_eq!(view.saga.state, SagaState::Compensated);
    assert_eq!(
        world.calls(),
        vec!["one", "two", "three", "undo two", "undo one"]
    );
    let states: Vec<StepState> = view.steps.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        vec![
            StepState::Compensated,
            StepState::Compensated,
            StepState::Failed,
            StepState::Pending
        ]
    );
    assert_eq!(
        view.steps[2].attempts, 1,
        "a permanent failure is not retried"
    );
    assert_eq!(
        view.steps[2].last_error.as_deref(),
        Some("insufficient funds")
    );
    let reason = view.saga.last_error.expect("reason kept");
    assert!(
        reason.contains("three") && reason.contains("insufficient funds"),
        "{reason}"
    );
    db.cleanup().await;
}

async fn exhausted_step(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let world = World::default();
    let (w, wc) = (world.clone(), world.clone());
    let def = SagaDefinition::new("down").step(logged(&world, "a")).step(
        StepDef::new("b", move |_ctx: StepContext| {
            let w = w.clone();
            async move {
                w.call("b");
                StepOutcome::retry("connection refused")
            }
        })
        .retry(quick_retry(3))
        .compensate(move |_ctx: StepContext| {
            let w = wc.clone();
            async move {
                w.call("undo b");
                StepOutcome::done_empty()
            }
        }),
    );
    let exec = executor(db.store().await, "n1", vec![def]);
    let id = SagaId::random();
    exec.start("down", id, &json!({})).await.expect("start");
    let view = exec.wait(id, WAIT).await.expect("settles");

    assert_eq!(view.saga.state, SagaState::Compensated);
    assert_eq!(world.calls(), vec!["a", "b", "b", "b", "undo b", "undo a"]);
    assert_eq!(view.steps[1].attempts, 3);
    assert_eq!(view.steps[1].state, StepState::Compensated);
    let reason = view.saga.last_error.expect("reason");
    assert!(reason.contains("gave up after 3 attempts"), "{reason}");
    db.cleanup().await;
}

async fn stuck_then_retry(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let world = World::default();
    let fixed = Arc::new(AtomicBool::new(false));
    let (w, f) = (world.clone(), fixed.clone());
    let def = SagaDefinition::new("stuck")
        .step(
            StepDef::new("reserve", |_ctx: StepContext| async {
                StepOutcome::done_empty()
            })
            .compensate(move |ctx: StepContext| {
                let (w, f) = (w.clone(), f.clone());
                async move {
                    w.call(format!("undo {}", ctx.attempt));
                    if f.load(Ordering::SeqCst) {
                        StepOutcome::done_empty()
                    } else {
                        StepOutcome::retry("ledger unavailable")
                    }
                }
            })
            .compensation_retry(quick_retry(2)),
        )
        .step(StepDef::new("mint", |_ctx: StepContext| async {
            StepOutcome::fail("rejected")
        }));
    let exec = executor(db.store().await, "n1", vec![def]);
    let id = SagaId::random();
    exec.start("stuck", id, &json!({})).await.expect("start");
    let view = exec.wait(id, WAIT).await.expect("settles");

    assert_eq!(view.saga.state, SagaState::Stuck);
    let reason = view.saga.last_error.clone().expect("reason");
    assert!(
        reason.contains("reserve") && reason.contains("ledger unavailable"),
        "{reason}"
    );
    assert_eq!(view.steps[0].compensation_attempts, 2);
    assert_eq!(view.steps[0].state, StepState::Compensating);
    assert_eq!(world.calls(), vec!["undo 1", "undo 2"]);
    assert_eq!(
        exec.counts(None).await.expect("counts")[&SagaState::Stuck],
        1
    );
    // Nothing moves by itself.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(world.calls().len(), 2);

    fixed.store(true, Ordering::SeqCst);
    exec.retry(id).await.expect("operator retry");
    let view = exec.wait(id, WAIT).await.expect("settles");
    assert_eq!(view.saga.state, SagaState::Compensated);
    assert_eq!(view.steps[0].state, StepState::Compensated);
    assert_eq!(
        world.calls(),
        vec!["undo 1", "undo 2", "undo 1"],
        "fresh attempt budget"
    );
    let again = exec.retry(id).await;
    assert!(
        matches!(again, Err(SagaError::InvalidState { .. })),
        "{again:?}"
    );
    db.cleanup().await;
}
