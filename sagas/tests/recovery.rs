//! Crashes, restarts and two nodes, on SQLite and PostgreSQL: a saga interrupted mid-step
//! resumes with every effect applied once (by idempotency key); a lease keeps a second
//! executor off a saga until the first one's lease expires; a saga whose kind is gone after
//! a restart fails with the reason and an operator can retry it once the kind is back.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::{eventually, executor, options, Backend, TestDb, World};
use merit_sagas::{
    lease, SagaDefinition, SagaExecutor, SagaId, SagaRegistry, SagaState, StepContext, StepDef,
    StepOutcome, StepState,
};
use serde_json::json;

on_both_backends! {
    a_saga_interrupted_mid_step_resumes_with_each_effect_applied_once => crash_resume;
    a_second_executor_leaves_a_saga_alone_while_its_lease_is_renewed => lease_held;
    a_saga_whose_node_died_is_taken_over_once_its_lease_expires => lease_expired;
    a_graceful_shutdown_releases_the_lease_for_an_immediate_takeover => lease_released;
    concurrent_claims_of_one_saga_have_one_winner => claim_race;
    an_unknown_kind_after_restart_fails_with_the_reason_and_is_retryable => unknown_kind;
}

const WAIT: Duration = Duration::from_secs(20);

/// Logs `name`, applies one effect keyed by the idempotency key, then — if `block` says so
/// for this call — never answers (until its task is aborted).
fn effect(world: &World, name: &'static str, block: Arc<AtomicBool>) -> StepDef {
    let w = world.clone();
    StepDef::new(name, move |ctx: StepContext| {
        let (w, block) = (w.clone(), block.clone());
        async move {
            w.call(name);
            w.apply(&ctx.idempotency_key.to_string());
            if block.swap(false, Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            StepOutcome::done(name)
        }
    })
}

fn no_block() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

async fn crash_resume(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let world = World::default();
    let def = SagaDefinition::new("crashy")
        .step(effect(&world, "a", no_block()))
        .step(effect(&world, "b", Arc::new(AtomicBool::new(true))))
        .step(effect(&world, "c", no_block()));

    let first = executor(db.store().await, "n1", vec![def.clone()]);
    let id = SagaId::random();
    first.start("crashy", id, &json!({})).await.expect("start");
    eventually(10, "step b to act", || world.count("b") == 1).await;
    first.abort_all(); // the process dies while b's call is in flight

    let view = first.get(id).await.expect("get").expect("exists");
    assert_eq!(view.saga.state, SagaState::Running);
    assert_eq!(view.saga.current_step, 1);
    assert_eq!(
        view.steps[1].state,
        StepState::Running,
        "b was recorded before it was called"
    );
    assert_eq!(view.steps[1].attempts, 1);
    assert_eq!(view.steps[2].state, StepState::Pending);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(world.count("c"), 0, "nothing moved after the crash");

    // The node restarts: a new pool and executor on the same database.
    let second = executor(db.store().await, "n1", vec![def]);
    assert_eq!(second.resume_all().await.expect("resume"), 1);
    let view = second.wait(id, WAIT).await.expect("settles");

    assert_eq!(view.saga.state, SagaState::Completed);
    assert_eq!(
        world.calls(),
        vec!["a", "b", "b", "c"],
        "only b, in flight, ran again"
    );
    assert_eq!(
        world.distinct_effects(),
        3,
        "each side effect applied exactly once"
    );
    assert_eq!(
        world.requests(&format!("{id}:1")),
        2,
        "b's retry reused its key"
    );
    assert_eq!(world.requests(&format!("{id}:0")), 1);
    assert_eq!(world.requests(&format!("{id}:2")), 1);
    assert_eq!(view.steps[1].attempts, 2);
    db.cleanup().await;
}

fn short_lease(node: &str) -> merit_sagas::ExecutorOptions {
    merit_sagas::ExecutorOptions {
        lease_ttl: Duration::from_millis(600),
        ..options(node)
    }
}

fn with(def: SagaDefinition, node: &str, store: merit_storage::Store) -> SagaExecutor {
    let mut registry = SagaRegistry::new();
    registry.register(def).expect("valid");
    SagaExecutor::new(store, registry, short_lease(node))
}

/// Two executors, `node-a` and `node-b`, with short leases on one database, both knowing
/// saga kind `held`: its one step records when it is called, then — by the saga's `mode` —
/// waits for a `gate` permit ("gate"), never answers its first attempt ("hang"), or finishes.
struct TwoNodes {
    db: TestDb,
    world: World,
    gate: Arc<tokio::sync::Semaphore>,
    called_at: Arc<Mutex<Vec<(String, Instant)>>>,
    a: SagaExecutor,
    b: SagaExecutor,
}

impl TwoNodes {
    async fn new(backend: Backend) -> Self {
        let db = TestDb::empty(backend).await;
        let world = World::default();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let called_at = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
        let (w, g, c) = (world.clone(), gate.clone(), called_at.clone());
        let def =
            SagaDefinition::new("held").step(StepDef::new("work", move |ctx: StepContext| {
                let (w, g, c) = (w.clone(), g.clone(), c.clone());
                async move {
                    w.call(format!("work {}", ctx.saga_id));
                    w.apply(&ctx.idempotency_key.to_string());
                    c.lock()
                        .expect("lock")
                        .push((ctx.saga_id.to_string(), Instant::now()));
                    let mode = ctx.data_json()["mode"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    match (mode.as_str(), ctx.attempt) {
                        ("gate", _) => g.acquire().await.expect("gate open").forget(),
                        ("hang", 1) => std::future::pending::<()>().await,
                        _ => {}
                    }
                    StepOutcome::done_empty()
                }
            }));
        let a = with(def.clone(), "node-a", db.store().await);
        let b = with(def, "node-b", db.store().await);
        Self {
            db,
            world,
            gate,
            called_at,
            a,
            b,
        }
    }

    /// Starts a `held` saga in `mode` on `node` and waits until its step is called.
    async fn start_on(&self, node: &SagaExecutor, mode: &str) -> SagaId {
        let id = SagaId::random();
        node.start("held", id, &json!({ "mode": mode }))
            .await
            .expect("start");
        eventually(10, "the step to be called", || self.work_calls(id) == 1).await;
        id
    }

    /// How many times saga `id`'s step was called.
    fn work_calls(&self, id: SagaId) -> usize {
        self.world.count(&format!("work {id}"))
    }

    /// When saga `id`'s step was called, in order.
    fn called_at(&self, id: SagaId) -> Vec<Instant> {
        self.called_at
            .lock()
            .expect("lock")
            .iter()
            .filter(|(saga, _)| *saga == id.to_string())
            .map(|(_, t)| *t)
            .collect()
    }
}

async fn lease_held(backend: Backend) {
    let nodes = TwoNodes::new(backend).await;
    let (a, b) = (&nodes.a, &nodes.b);
    let held = nodes.start_on(a, "gate").await;
    // While A works (and renews), B finds the saga leased and leaves it alone.
    for _ in 0..10 {
        b.resume_all().await.expect("resume all");
        b.resume_due().await.expect("resume due");
        tokio::time::sleep(Duration::from_millis(150)).await; // 1.5 s in all: 2.5 TTLs
    }
    assert_eq!(nodes.work_calls(held), 1, "B never ran it");
    let view = b.get(held).await.expect("get").expect("exists");
    assert_eq!(view.saga.lease_owner.as_deref(), Some("node-a"));
    assert!(
        view.saga.lease_until.expect("lease") > chrono::Utc::now(),
        "A renewed"
    );
    nodes.gate.add_permits(1);
    let view = a.wait(held, WAIT).await.expect("settles");
    assert_eq!(view.saga.state, SagaState::Completed);
    assert_eq!(view.saga.lease_owner, None, "released when done");
    assert_eq!(nodes.work_calls(held), 1);
    nodes.db.cleanup().await;
}

async fn lease_expired(backend: Backend) {
    let nodes = TwoNodes::new(backend).await;
    let (a, b) = (&nodes.a, &nodes.b);
    let orphan = nodes.start_on(a, "hang").await;
    a.abort_all(); // A dies mid-step
    let died = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let poller = {
        let b = b.clone();
        tokio::spawn(async move {
            b.run(async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let view = b.wait(orphan, WAIT).await.expect("taken over");
    let _ = stop.send(());
    poller.await.expect("poller task").expect("poller");
    assert_eq!(view.saga.state, SagaState::Completed);
    let calls = nodes.called_at(orphan);
    assert_eq!(calls.len(), 2);
    let waited = calls[1] - died;
    assert!(
        waited >= Duration::from_millis(350),
        "B waited for the lease to expire: {waited:?}"
    );
    assert_eq!(
        nodes.world.requests(&format!("{orphan}:0")),
        2,
        "re-run under the same key"
    );
    assert_eq!(view.steps[0].attempts, 2);
    nodes.db.cleanup().await;
}

async fn lease_released(backend: Backend) {
    let nodes = TwoNodes::new(backend).await;
    let (a, b) = (&nodes.a, &nodes.b);
    let handed = nodes.start_on(b, "hang").await;
    // B shuts down gracefully mid-step: its lease goes at once.
    assert_eq!(
        b.shutdown().await.expect("shutdown"),
        1,
        "one lease released"
    );
    let view = a.get(handed).await.expect("get").expect("exists");
    assert_eq!(
        (view.saga.lease_owner, view.steps[0].state),
        (None, StepState::Running)
    );
    let handed_over = Instant::now();
    assert_eq!(a.resume_all().await.expect("resume"), 1);
    let view = a.wait(handed, WAIT).await.expect("settles");
    assert_eq!(view.saga.state, SagaState::Completed);
    let took = handed_over.elapsed();
    assert!(took < Duration::from_millis(550), "no TTL wait: {took:?}");
    nodes.db.cleanup().await;
}

async fn claim_race(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let world = World::default();
    let def =
        SagaDefinition::new("idle").step(effect(&world, "a", Arc::new(AtomicBool::new(true))));
    let store = db.store().await;
    let exec = executor(store.clone(), "n0", vec![def]);
    let id = SagaId::random();
    exec.start("idle", id, &json!({})).await.expect("start");
    eventually(10, "the step to start", || world.count("a") == 1).await;
    exec.abort_all();
    assert!(lease::release(&store, id, "n0").await.expect("release"));
    assert!(
        !lease::release(&store, id, "n0").await.expect("release"),
        "already free"
    );

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let store = db.store().await;
        tasks.spawn(async move {
            lease::try_claim(&store, id, &format!("x{i}"), Duration::from_secs(30)).await
        });
    }
    let mut winners = 0;
    while let Some(r) = tasks.join_next().await {
        winners += usize::from(r.expect("task").expect("claim"));
    }
    assert_eq!(winners, 1, "exactly one claim wins");
    let owner = exec
        .get(id)
        .await
        .expect("get")
        .expect("exists")
        .saga
        .lease_owner;
    let owner = owner.expect("someone holds it");
    assert!(lease::renew(&store, id, &owner, Duration::from_secs(30))
        .await
        .expect("renew"));
    assert!(!lease::renew(&store, id, "n0", Duration::from_secs(30))
        .await
        .expect("renew"));
    assert!(!lease::try_claim(&store, id, "n0", Duration::from_secs(1))
        .await
        .expect("claim"));
    db.cleanup().await;
}

async fn unknown_kind(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let world = World::default();
    let legacy = |block: bool| {
        SagaDefinition::new("legacy")
            .step(effect(&world, "a", no_block()))
            .step(effect(&world, "b", Arc::new(AtomicBool::new(block))))
    };
    let first = executor(db.store().await, "n1", vec![legacy(true)]);
    let id = SagaId::random();
    first.start("legacy", id, &json!({})).await.expect("start");
    eventually(10, "step b to act", || world.count("b") == 1).await;
    first.abort_all();

    // Restarted without the kind (renamed, removed): the saga fails, loudly.
    let other = SagaDefinition::new("other").step(effect(&world, "x", no_block()));
    let second = executor(db.store().await, "n1", vec![other.clone()]);
    second.resume_all().await.expect("resume");
    let view = second.wait(id, WAIT).await.expect("settles");
    assert_eq!(view.saga.state, SagaState::Failed);
    let reason = view.saga.last_error.clone().expect("reason");
    assert!(reason.contains("unknown saga kind \"legacy\""), "{reason}");
    assert_eq!(world.count("b"), 1, "nothing ran");
    assert_eq!(
        second.counts(None).await.expect("counts")[&SagaState::Failed],
        1
    );
    let refused = second.retry(id).await;
    assert!(
        matches!(refused, Err(merit_sagas::SagaError::UnknownKind { .. })),
        "{refused:?}"
    );

    // The kind is back: an operator retry finishes the saga where it stopped.
    let third = executor(db.store().await, "n1", vec![legacy(false), other]);
    let retried = third.retry(id).await.expect("retry");
    assert!(retried.saga.state.is_active());
    let view = third.wait(id, WAIT).await.expect("settles");
    assert_eq!(view.saga.state, SagaState::Completed);
    assert_eq!(world.calls(), vec!["a", "b", "b"]);
    assert_eq!(world.distinct_effects(), 2);
    db.cleanup().await;
}
