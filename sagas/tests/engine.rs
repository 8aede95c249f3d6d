//! The saga engine's forward and backward paths on SQLite and PostgreSQL: order, retries
//! with backoff, timeouts, permanent failures and compensation, finality-aware steps,
//! stuck compensations and operator retry, bounded concurrency.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::{executor, Backend, TestDb, World};
use merit_sagas::{
    RetryPolicy, SagaDefinition, SagaError, SagaId, SagaState, StepContext, StepDef, StepOutcome,
    StepState,
};
use serde_json::json;

on_both_backends! {
    happy_path_runs_each_action_once_in_order => happy_path;
    a_permanent_failure_compensates_completed_steps_in_reverse => permanent_failure;
    transient_failures_are_retried_with_backoff_then_succeed => transient_failures;
    a_timeout_counts_as_a_transient_failure => timeout_is_transient;
    a_panicking_step_counts_as_a_transient_failure => panicking_step;
    a_step_out_of_attempts_is_compensated_too => exhausted_step;
    a_pending_step_is_repolled_until_final_and_reacts_after_a_reorg => pending_step;
    a_compensation_that_gives_up_leaves_the_saga_stuck_until_an_operator_retries => stuck_then_retry;
    many_sagas_run_at_once_within_the_bound_each_in_order => bounded_concurrency;
}

const WAIT: Duration = Duration::from_secs(20);

/// A step that logs its call and applies one effect keyed by its idempotency key; its
/// compensation does the same with its own key.
fn logged(world: &World, name: &'static str) -> StepDef {
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

fn quick_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::exponential(
        max_attempts,
        Duration::from_millis(20),
        Duration::from_millis(200),
    )
    .without_jitter()
}

async fn happy_path(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let world = World::default();
    let w = world.clone();
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let def = SagaDefinition::new("happy")
        .step(logged(&world, "reserve"))
        .step(StepDef::new("mint", move |ctx: StepContext| {
            let (w, seen) = (w.clone(), seen2.clone());
            async move {
                w.call("mint");
                let reserved: String = match ctx.output("reserve") {
                    Ok(r) => r,
                    Err(e) => return e.into(),
                };
                let user = ctx.data_json()["user"].clone();
                *seen.lock().expect("lock") = Some((reserved, user, ctx.attempt));
                StepOutcome::done(json!({"token": 7}))
            }
        }))
        .step(logged(&world, "notify"));
    let exec = executor(db.store().await, "n1", vec![def]);

    let unknown = exec.start("nope", SagaId::random(), &json!({})).await;
    assert!(
        matches!(unknown, Err(SagaError::UnknownKind { .. })),
        "{unknown:?}"
    );

    let id = SagaId::derived("happy", "1");
    let started = exec
        .start("happy", id, &json!({"user": "0xabc"}))
        .await
        .expect("start");
    assert!(started.created);
    let view = exec.wait(id, WAIT).await.expect("settles");

    assert_eq!(view.saga.state, SagaState::Completed);
    assert_eq!(world.calls(), vec!["reserve", "mint", "notify"]);
    assert_eq!(
        *seen.lock().expect("lock"),
        Some(("reserve-out".to_string(), json!("0xabc"), 1)),
        "mint sees the earlier output, the data and its attempt"
    );
    assert_eq!(view.steps.len(), 3);
    for s in &view.steps {
        assert_eq!(s.state, StepState::Done, "{s:?}");
        assert_eq!(s.attempts, 1, "{s:?}");
        assert_eq!(s.compensation_attempts, 0, "{s:?}");
        assert!(s.started_at.is_some());
    }
    assert_eq!(view.steps[1].output, Some(json!({"token": 7})));
    assert_eq!(
        view.saga.lease_owner, None,
        "the lease is released when done"
    );
    db.cleanup().await;
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

/// A fake chain: submitting with a key returns that key's transaction; each poll adds a
/// confirmation; the first transaction is dropped by a reorg at its second poll.
#[derive(Default)]
struct Chain {
    submissions: Vec<String>,
    confirmations: u32,
    reorged: bool,
    rpc_failed: bool,
    polls: u32,
}

async fn pending_step(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let chain = Arc::new(Mutex::new(Chain::default()));
    let c = chain.clone();
    let def = SagaDefinition::new("mint").step(
        StepDef::new("mint", move |ctx: StepContext| {
            let c = c.clone();
            async move {
                let previous: Option<String> = match ctx.previous() {
                    Ok(p) => p,
                    Err(e) => return e.into(),
                };
                let mut chain = c.lock().expect("chain");
                if let Some(tx) = previous {
                    chain.polls += 1;
                    if chain.polls == 4 && !chain.rpc_failed {
                        chain.rpc_failed = true; // a failed check spends an attempt, keeps the tx
                        return StepOutcome::retry("rpc timeout");
                    }
                    if chain.polls == 2 && !chain.reorged {
                        chain.reorged = true; // the tx vanished: act again, same key
                        chain.confirmations = 0;
                    } else {
                        chain.confirmations += 1;
                        if chain.confirmations >= 3 {
                            return StepOutcome::done(tx);
                        }
                        return StepOutcome::pending(tx, Duration::from_millis(30));
                    }
                }
                let tx = format!("tx:{}:{}", ctx.idempotency_key, chain.submissions.len());
                chain.submissions.push(ctx.idempotency_key.to_string());
                StepOutcome::pending(tx, Duration::from_millis(30))
            }
        })
        .retry(quick_retry(3)),
    );
    let exec = executor(db.store().await, "n1", vec![def]);
    let id = SagaId::random();
    exec.start("mint", id, &json!({})).await.expect("start");
    let view = exec.wait(id, WAIT).await.expect("settles");

    assert_eq!(
        view.saga.state,
        SagaState::Completed,
        "{:?}",
        view.saga.last_error
    );
    let chain = std::mem::take(&mut *chain.lock().expect("chain"));
    assert_eq!(
        chain.submissions.len(),
        2,
        "acted again after the reorg, once"
    );
    assert_eq!(
        chain.submissions[0], chain.submissions[1],
        "with the same idempotency key"
    );
    assert_eq!(chain.submissions[0], format!("{id}:0"));
    assert_eq!(
        chain.polls, 6,
        "1 poll + reorg + 1 failed check + 3 confirmations"
    );
    assert_eq!(
        view.steps[0].attempts, 2,
        "re-polls spend no attempts; the failed check spent one"
    );
    assert_eq!(view.steps[0].last_error.as_deref(), Some("rpc timeout"));
    assert_eq!(view.steps[0].output, Some(json!(format!("tx:{id}:0:1"))));
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

async fn bounded_concurrency(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let world = World::default();
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let step = |name: &'static str| {
        let (w, now, max) = (world.clone(), now.clone(), max.clone());
        StepDef::new(name, move |ctx: StepContext| {
            let (w, now, max) = (w.clone(), now.clone(), max.clone());
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(15)).await;
                w.call(format!("{} {name}", ctx.saga_id));
                now.fetch_sub(1, Ordering::SeqCst);
                StepOutcome::done_empty()
            }
        })
    };
    let def = SagaDefinition::new("wide")
        .step(step("a"))
        .step(step("b"))
        .step(step("c"));
    let mut registry = merit_sagas::SagaRegistry::new();
    registry.register(def).expect("valid");
    let options = merit_sagas::ExecutorOptions {
        max_concurrent: 4,
        ..common::options("n1")
    };
    let exec = merit_sagas::SagaExecutor::new(db.store().await, registry, options);
    let ids: Vec<SagaId> = (0..24).map(|_| SagaId::random()).collect();
    for id in &ids {
        exec.start("wide", *id, &json!({})).await.expect("start");
    }
    for id in &ids {
        let v = exec.wait(*id, WAIT).await.expect("settles");
        assert_eq!(v.saga.state, SagaState::Completed);
    }
    let max = max.load(Ordering::SeqCst);
    assert!(max <= 4, "at most 4 sagas at once, saw {max}");
    assert!(max >= 2, "sagas ran concurrently, saw {max}");
    let calls = world.calls();
    assert_eq!(calls.len(), 72);
    for id in &ids {
        let mine: Vec<&str> = calls
            .iter()
            .filter_map(|c| c.strip_prefix(&format!("{id} ")))
            .collect();
        assert_eq!(mine, vec!["a", "b", "c"], "saga {id} in order");
    }
    db.cleanup().await;
}
