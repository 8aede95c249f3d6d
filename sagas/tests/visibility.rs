//! What operators see and idempotent starts, on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::{executor, Backend, TestDb, World};
use merit_sagas::{
    SagaDefinition, SagaExecutor, SagaFilter, SagaId, SagaState, StepContext, StepDef, StepOutcome,
    StepState,
};
use serde_json::json;

on_both_backends! {
    starting_the_same_saga_id_twice_creates_one_saga => start_twice;
    counts_tally_every_state_overall_and_per_kind => counts;
    list_pages_and_filters_sagas_by_state_and_kind => list;
    get_shows_a_sagas_data_and_its_step_timeline => get;
}

const WAIT: Duration = Duration::from_secs(20);

fn counted(world: &World, name: &'static str) -> StepDef {
    let w = world.clone();
    StepDef::new(name, move |ctx: StepContext| {
        let w = w.clone();
        async move {
            w.call(format!("{} {name}", ctx.saga_id));
            StepOutcome::done_empty()
        }
    })
}

async fn start_twice(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let world = World::default();
    let def = SagaDefinition::new("once")
        .step(counted(&world, "a"))
        .step(counted(&world, "b"));
    let a = executor(db.store().await, "node-a", vec![def.clone()]);
    let b = executor(db.store().await, "node-b", vec![def]);
    let id = SagaId::derived("once", "achievement-42");

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let exec = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { exec.start("once", id, &json!({"n": i})).await });
    }
    let mut created = 0;
    while let Some(r) = tasks.join_next().await {
        let started = r.expect("task").expect("start");
        assert_eq!(started.id, id);
        assert_eq!(started.kind, "once");
        created += usize::from(started.created);
    }
    assert_eq!(created, 1, "exactly one start created the saga");
    let view = a.wait(id, WAIT).await.expect("settles");
    assert_eq!(view.saga.state, SagaState::Completed);
    let again = b
        .start("once", id, &json!({"n": 99}))
        .await
        .expect("start again");
    assert!(!again.created);
    assert_eq!(again.state, SagaState::Completed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(world.count(&format!("{id} a")), 1);
    assert_eq!(world.count(&format!("{id} b")), 1);
    let page = a.list(&SagaFilter::default(), 0, 50).await.expect("list");
    assert_eq!(page.total, 1);
    assert_ne!(view.data, json!({"n": 99}), "the first data stays");
    db.cleanup().await;
}

/// Three completed sagas of kind `ok` and two of kind `bad` (its step `b` refuses, so `a`
/// is compensated), all settled.
struct Settled {
    db: TestDb,
    exec: SagaExecutor,
    oks: Vec<SagaId>,
    bads: Vec<SagaId>,
}

async fn settled(backend: Backend) -> Settled {
    let db = TestDb::empty(backend).await;
    let world = World::default();
    let ok = SagaDefinition::new("ok")
        .step(counted(&world, "a"))
        .step(counted(&world, "b"));
    let bad = SagaDefinition::new("bad")
        .step(
            counted(&world, "a")
                .compensate(|_ctx: StepContext| async { StepOutcome::done_empty() }),
        )
        .step(StepDef::new("b", |_ctx: StepContext| async {
            StepOutcome::fail("quota exceeded")
        }));
    let exec = executor(db.store().await, "n1", vec![ok, bad]);

    let oks: Vec<SagaId> = (0..3).map(|_| SagaId::random()).collect();
    let bads: Vec<SagaId> = (0..2).map(|_| SagaId::random()).collect();
    for id in &oks {
        exec.start("ok", *id, &json!({})).await.expect("start");
    }
    for id in &bads {
        exec.start("bad", *id, &json!({"user": "u"}))
            .await
            .expect("start");
    }
    for id in oks.iter().chain(&bads) {
        exec.wait(*id, WAIT).await.expect("settles");
    }
    Settled {
        db,
        exec,
        oks,
        bads,
    }
}

async fn counts(backend: Backend) {
    let Settled { db, exec, .. } = settled(backend).await;
    let all = exec.counts(None).await.expect("counts");
    assert_eq!(all[&SagaState::Completed], 3);
    assert_eq!(all[&SagaState::Compensated], 2);
    assert_eq!(all[&SagaState::Running], 0);
    assert_eq!(all.len(), SagaState::ALL.len(), "every state is present");
    let of_bad = exec.counts(Some("bad")).await.expect("counts");
    assert_eq!(of_bad[&SagaState::Compensated], 2);
    assert_eq!(of_bad[&SagaState::Completed], 0);
    db.cleanup().await;
}

async fn list(backend: Backend) {
    let Settled { db, exec, oks, .. } = settled(backend).await;
    let completed = SagaFilter {
        state: Some(SagaState::Completed),
        kind: None,
        correlation_id: None,
    };
    let p0 = exec.list(&completed, 0, 2).await.expect("page 0");
    let p1 = exec.list(&completed, 1, 2).await.expect("page 1");
    assert_eq!((p0.total, p0.items.len(), p1.items.len()), (3, 2, 1));
    let mut listed: Vec<SagaId> = p0.items.iter().chain(&p1.items).map(|s| s.id).collect();
    listed.sort();
    let mut expected = oks.clone();
    expected.sort();
    assert_eq!(listed, expected, "pages cover every completed saga once");
    assert!(p0.items.iter().all(|s| s.kind == "ok"));
    let by_kind = SagaFilter {
        state: None,
        kind: Some("bad".into()),
        correlation_id: None,
    };
    let page = exec.list(&by_kind, 0, 10).await.expect("list");
    assert_eq!(page.total, 2);
    assert!(page.items.iter().all(|s| s.state == SagaState::Compensated));
    let none = SagaFilter {
        state: Some(SagaState::Stuck),
        kind: None,
        correlation_id: None,
    };
    assert_eq!(exec.list(&none, 0, 10).await.expect("list").total, 0);
    db.cleanup().await;
}

async fn get(backend: Backend) {
    let Settled { db, exec, bads, .. } = settled(backend).await;
    let view = exec.get(bads[0]).await.expect("get").expect("exists");
    assert_eq!(view.saga.kind, "bad");
    assert_eq!(view.data, json!({"user": "u"}));
    assert_eq!(view.steps.len(), 2);
    let (a, b) = (&view.steps[0], &view.steps[1]);
    assert_eq!(
        (a.index, a.name.as_str(), a.state),
        (0, "a", StepState::Compensated)
    );
    assert_eq!((a.attempts, a.compensation_attempts), (1, 1));
    assert!(a.started_at.is_some() && a.updated_at >= a.started_at.expect("started"));
    assert_eq!(
        (b.state, b.last_error.as_deref()),
        (StepState::Failed, Some("quota exceeded"))
    );
    let json = serde_json::to_value(&view).expect("serialisable for the API");
    assert_eq!(json["state"], "compensated");
    assert_eq!(json["steps"][1]["state"], "failed");
    assert!(exec.get(SagaId::random()).await.expect("get").is_none());
    db.cleanup().await;
}
