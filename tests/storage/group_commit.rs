//! Group commit (many turns in one transaction) and snapshots loaded at once.

use merit_messages::ActorKind;
use merit_storage::{no_projection, StorageError, TurnOutcome};
use serde_json::json;

use crate::{
    common::{Backend, TestDb},
    fixtures::{counts, turn, user_row, user_upsert, vote},
};

merit_testkit::on_both_backends! {
    group_commit_gives_each_turn_the_outcome_it_would_have_alone => group_commit;
    group_commit_writes_a_batchs_projection_rows_per_entity_and_survives_a_clash => group_commit_rows;
    snapshots_loaded_at_the_same_moment_each_reach_their_own_load => snapshots_at_once;
}

async fn group_commit(backend: Backend) {
    use merit_storage::{GroupCommitter, Rows};
    let (db, store) = TestDb::migrated(backend).await;
    // An actor at version 1 and an event already applied.
    let done = vote(200);
    store
        .commit_turn(turn(&done, 0, json!({"n": 1})), no_projection)
        .await
        .expect("setup");
    let committer = GroupCommitter::start(store.clone(), 1, 64);
    let project = |address: String| {
        let mut rows = Rows::new();
        rows.insert(user_row(address), Some(user_upsert()));
        rows
    };
    let mut pending = Vec::new();
    for i in 0..20u8 {
        let env = vote(i);
        let key = env.keys.user.expect("user").to_string();
        let c = committer.clone();
        let p = project(key);
        pending.push(tokio::spawn(async move {
            c.commit(turn(&env, 0, json!({"i": i})), p).await
        }));
    }
    let (c, p) = (
        committer.clone(),
        project(done.keys.user.expect("user").to_string()),
    );
    let dup = done.clone();
    pending.push(tokio::spawn(async move {
        c.commit(turn(&dup, 1, json!({"n": 2})), p).await
    }));
    let stale = vote(200);
    let (c, p) = (
        committer.clone(),
        project(stale.keys.user.expect("user").to_string()),
    );
    pending.push(tokio::spawn(async move {
        c.commit(turn(&stale, 0, json!({"n": 9})), p).await
    }));
    let mut applied = 0;
    let mut duplicates = 0;
    let mut conflicts = 0;
    for r in futures::future::join_all(pending).await {
        match r.expect("task") {
            Ok(TurnOutcome::Applied { version: Some(1) }) => applied += 1,
            Ok(TurnOutcome::Duplicate) => duplicates += 1,
            Err(StorageError::VersionConflict {
                expected: 0,
                found: Some(1),
                ..
            }) => conflicts += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((applied, duplicates, conflicts), (20, 1, 1));
    // 21 actors, 21 inbox rows (setup + 20), 21 outbox rows, 20 users projected.
    assert_eq!(counts(&store).await, (21, 21, 21, 20));
    // The relay's feed got exactly the committed outbox rows, with their table ids.
    let mut fed: Vec<(i64, String)> = store
        .outbox_feed()
        .take(1_000)
        .rows
        .into_iter()
        .map(|r| (r.id, r.event_id))
        .collect();
    let mut table: Vec<(i64, String)> = store
        .pending_outbox(0, 1_000)
        .await
        .expect("pending")
        .into_iter()
        .map(|r| (r.id, r.event_id))
        .collect();
    fed.sort();
    table.sort();
    assert_eq!(fed, table);
    store.close().await.expect("close");
    db.cleanup().await;
}

/// A batch's projection rows are written merged, one statement per entity. Two turns that
/// (against the actors' rule) upsert the same row make PostgreSQL refuse the merged
/// statement; the batch then falls back to one commit per turn, and each turn still
/// gets its own outcome with its rows written.
async fn group_commit_rows(backend: Backend) {
    use merit_storage::{GroupCommitter, Rows};
    let (db, store) = TestDb::migrated(backend).await;
    // One worker, and the jobs queued before it runs: they form one batch.
    let committer = GroupCommitter::start(store.clone(), 1, 64);
    let rows_for = |address: &str| {
        let mut rows = Rows::new();
        rows.insert(user_row(address.to_string()), Some(user_upsert()));
        rows
    };
    let mut pending = Vec::new();
    for i in 0..10u8 {
        let env = vote(100 + i);
        // Turns 0 and 1 both project the same user row.
        let address = match i {
            0 | 1 => "0xclash".to_string(),
            _ => env.keys.user.expect("user").to_string(),
        };
        let (c, rows) = (committer.clone(), rows_for(&address));
        pending.push(tokio::spawn(async move {
            c.commit(turn(&env, 0, json!({"i": i})), rows).await
        }));
    }
    for r in futures::future::join_all(pending).await {
        assert!(
            matches!(
                r.expect("task"),
                Ok(TurnOutcome::Applied { version: Some(1) })
            ),
            "every turn applied"
        );
    }
    // 10 actors, inbox and outbox rows; 9 distinct users projected.
    assert_eq!(counts(&store).await, (10, 10, 10, 9));
    store.close().await.expect("close");
    db.cleanup().await;
}

/// Many actors activated at once share one snapshot read; each load still gets its own
/// actor's snapshot (or none), by kind and key.
async fn snapshots_at_once(backend: Backend) {
    let (db, store) = TestDb::migrated(backend).await;
    for i in 0..30u8 {
        let env = vote(i);
        store
            .commit_turn(turn(&env, 0, json!({"i": i})), no_projection)
            .await
            .expect("stored");
    }
    let mut loads = Vec::new();
    for i in 0..40u8 {
        let key = vote(i).keys.user.expect("user").to_string();
        for kind in [ActorKind::User, ActorKind::Proposal] {
            let (store, key) = (store.clone(), key.clone());
            loads.push(tokio::spawn(async move {
                (kind, i, store.load_actor(kind, &key).await.expect("load"))
            }));
        }
    }
    for load in futures::future::join_all(loads).await {
        let (kind, i, snapshot) = load.expect("task");
        let expected = (kind == ActorKind::User && i < 30).then(|| (1, json!({"i": i})));
        assert_eq!(snapshot, expected, "{kind:?} {i}");
    }
    store.close().await.expect("close");
    db.cleanup().await;
}
