//! The forward path: each action runs once, in order, alone and with many sagas at once
//! within the concurrency bound.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use merit_sagas::{
    SagaDefinition, SagaError, SagaId, SagaState, StepContext, StepDef, StepOutcome, StepState,
};
use serde_json::json;

use crate::{
    common::{self, executor, Backend, TestDb, World},
    harness::{logged, WAIT},
    on_both_backends,
};

on_both_backends! {
    happy_path_runs_each_action_once_in_order => happy_path;
    many_sagas_run_at_once_within_the_bound_each_in_order => bounded_concurrency;
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
