//! Migrations, atomic turns, idempotency by event id, optimistic version checks,
//! concurrent writers, the outbox, and the database URL.

use std::sync::Arc;

use merit_messages::{ActorKind, Envelope, EventId};
use merit_storage::{no_projection, StorageError, Store, Turn, TurnOutcome};
use serde_json::json;

use crate::{
    common::{Backend, TestDb},
    fixtures::{
        commit_first_vote, counts, every_table_is_readable, turn, upsert_user, user_snapshot, vote,
    },
};

merit_testkit::on_both_backends! {
    migrate_creates_every_table_and_twice_is_a_no_op => migrate_twice;
    a_turn_commits_state_inbox_and_outbox_together => turn_commits_all;
    a_failing_projection_leaves_no_state_inbox_or_outbox_row => failing_projection_rolls_back;
    the_same_event_twice_has_one_effect => duplicate_event;
    a_stale_version_is_refused_and_leaves_nothing_behind => stale_version;
    concurrent_writers_finish_without_deadlock => concurrent_writers;
    outbox_rows_are_pending_until_marked_published => outbox_relay_reads;
}

async fn migrate_twice(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let store = db.connect().await;
    let first = store.migrate().await.expect("first migrate");
    let all = [
        "m20261124_000001_initial",
        "m20261125_000002_sagas",
        "m20261125_000003_governance",
        "m20261130_000004_api",
        "m20261130_000005_retention",
        "m20261204_000006_siwe_nonces",
        "m20261204_000007_deadlines_fired",
        "m20261205_000008_dead_letters",
    ];
    assert_eq!(first, all.map(String::from).to_vec());
    let second = store.migrate().await.expect("second migrate");
    assert!(second.is_empty(), "second run applied {second:?}");
    every_table_is_readable(&store).await;
    store.close().await.expect("close");
    db.cleanup().await;
}

async fn turn_commits_all(backend: Backend) {
    let (db, store) = TestDb::migrated(backend).await;
    let env = vote(1);
    let key = env.keys.user.expect("user").to_string();
    commit_first_vote(&store, &env, "commit").await;
    assert_eq!(counts(&store).await, (1, 1, 1, 1));
    let (version, state) = user_snapshot(&store, &key).await;
    assert_eq!((version, state), (1, json!({"votes": 1})));
    assert!(store.is_processed("user", env.id).await.expect("inbox"));
    assert!(
        !store.is_processed("proposal", env.id).await.expect("inbox"),
        "inbox is per consumer"
    );
    let pending = store.pending_outbox(0, 10).await.expect("pending");
    assert_eq!(pending.len(), 1);
    let decoded =
        Envelope::decode(pending[0].payload.as_bytes()).expect("outbox holds a valid envelope");
    assert_eq!(decoded.causation_id, Some(env.id));
    assert_eq!(pending[0].routing_key, "governance.vote.cast");
    store.close().await.expect("close");
    db.cleanup().await;
}

async fn failing_projection_rolls_back(backend: Backend) {
    let (db, store) = TestDb::migrated(backend).await;
    let env = vote(2);
    let key = env.keys.user.expect("user").to_string();
    let err = store
        .commit_turn(turn(&env, 0, json!({"votes": 1})), move |txn| {
            Box::pin(async move {
                upsert_user(key)(txn).await?;
                Err(StorageError::Corrupt {
                    what: "projection".into(),
                    reason: "injected".into(),
                })
            })
        })
        .await
        .expect_err("projection failed");
    assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    assert_eq!(
        counts(&store).await,
        (0, 0, 0, 0),
        "nothing of the failed turn remains"
    );
    // The event was not consumed: retrying it applies it.
    commit_first_vote(&store, &env, "retry").await;
    store.close().await.expect("close");
    db.cleanup().await;
}

async fn duplicate_event(backend: Backend) {
    let (db, store) = TestDb::migrated(backend).await;
    let env = vote(3);
    let key = env.keys.user.expect("user").to_string();
    commit_first_vote(&store, &env, "first").await;
    // A redelivery: the actor (reloaded) would now try version 1 -> 2; the inbox stops it.
    let second = store
        .commit_turn(turn(&env, 1, json!({"votes": 2})), upsert_user(key.clone()))
        .await
        .expect("second");
    assert_eq!(second, TurnOutcome::Duplicate);
    assert_eq!(counts(&store).await, (1, 1, 1, 1));
    let (version, state) = user_snapshot(&store, &key).await;
    assert_eq!(
        (version, state),
        (1, json!({"votes": 1})),
        "the duplicate changed nothing"
    );
    // A turn without state still records the event once.
    let other = vote(3);
    let stateless = Turn {
        consumer: "user".into(),
        event_id: other.id,
        batched: Vec::new(),
        state: None,
        outbox: vec![],
    };
    assert_eq!(
        store
            .commit_turn(stateless.clone(), no_projection)
            .await
            .expect("stateless"),
        TurnOutcome::Applied { version: None }
    );
    assert_eq!(
        store
            .commit_turn(stateless, no_projection)
            .await
            .expect("again"),
        TurnOutcome::Duplicate
    );
    store.close().await.expect("close");
    db.cleanup().await;
}

async fn stale_version(backend: Backend) {
    let (db, store) = TestDb::migrated(backend).await;
    let a = vote(4);
    let key = a.keys.user.expect("user").to_string();
    store
        .commit_turn(turn(&a, 0, json!({"n": 1})), no_projection)
        .await
        .expect("v1");

    // A second writer that also loaded version 0 (never stored) is refused.
    let b = vote(4);
    let err = store
        .commit_turn(turn(&b, 0, json!({"n": 99})), no_projection)
        .await
        .expect_err("stale insert");
    match err {
        StorageError::VersionConflict {
            kind,
            key: k,
            expected,
            found,
        } => {
            assert_eq!(
                (kind, k.as_str(), expected, found),
                (ActorKind::User, key.as_str(), 0, Some(1))
            );
        }
        other => panic!("expected a version conflict, got {other}"),
    }
    assert!(
        !store.is_processed("user", b.id).await.expect("inbox"),
        "a refused turn leaves no inbox row"
    );

    store
        .commit_turn(turn(&b, 1, json!({"n": 2})), no_projection)
        .await
        .expect("v2 after reload");
    let c = vote(4);
    let err = store
        .commit_turn(turn(&c, 1, json!({"n": 99})), no_projection)
        .await
        .expect_err("stale update");
    assert!(
        matches!(
            err,
            StorageError::VersionConflict {
                expected: 1,
                found: Some(2),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("expected version 1, found Some(2)"),
        "{err}"
    );
    let (version, state) = user_snapshot(&store, &key).await;
    assert_eq!((version, state), (2, json!({"n": 2})));
    assert_eq!(
        store.pending_outbox(0, 10).await.expect("outbox").len(),
        2,
        "only the applied turns emitted"
    );
    store.close().await.expect("close");
    db.cleanup().await;
}

async fn concurrent_writers(backend: Backend) {
    let (db, store) = TestDb::migrated(backend).await;
    // A second pool on the same database, as a second node would have.
    let other = Arc::new(db.connect().await);
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..40u8 {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            // Actors 0..10, four writers each, all starting from version 0: exactly one wins.
            let env = vote(i % 10);
            let key = env.keys.user.expect("user").to_string();
            s.commit_turn(turn(&env, 0, json!({"writer": i})), upsert_user(key))
                .await
        }));
    }
    let results = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        futures::future::join_all(tasks),
    )
    .await
    .expect("no deadlock: all writers finish");
    let mut applied = 0;
    let mut conflicts = 0;
    for r in results {
        match r.expect("task") {
            Ok(TurnOutcome::Applied { .. }) => applied += 1,
            Err(StorageError::VersionConflict { .. }) => conflicts += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((applied, conflicts), (10, 30));
    assert_eq!(counts(&store).await, (10, 10, 10, 10));
    Arc::try_unwrap(other)
        .expect("sole owner")
        .close()
        .await
        .expect("close");
    Arc::try_unwrap(store)
        .expect("sole owner")
        .close()
        .await
        .expect("close");
    db.cleanup().await;
}

async fn outbox_relay_reads(backend: Backend) {
    let (db, store) = TestDb::migrated(backend).await;
    for i in 0..5u8 {
        let env = vote(i);
        store
            .commit_turn(turn(&env, 0, json!({})), no_projection)
            .await
            .expect("commit");
    }
    let pending = store.pending_outbox(0, 100).await.expect("pending");
    assert_eq!(pending.len(), 5);
    assert!(
        pending.windows(2).all(|w| w[0].id < w[1].id),
        "commit order"
    );
    let first_two: Vec<i64> = pending[..2].iter().map(|r| r.id).collect();
    assert_eq!(store.mark_published(&first_two).await.expect("mark"), 2);
    assert_eq!(
        store.mark_published(&first_two).await.expect("mark again"),
        0,
        "marking is idempotent"
    );
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 3);
    let rest = store.pending_outbox(0, 100).await.expect("pending");
    assert_eq!(
        rest.iter().map(|r| r.id).collect::<Vec<_>>(),
        pending[2..].iter().map(|r| r.id).collect::<Vec<_>>()
    );
    assert_eq!(
        store
            .pending_outbox(pending[3].id, 100)
            .await
            .expect("after")
            .len(),
        1
    );
    store.close().await.expect("close");
    db.cleanup().await;
}

#[tokio::test]
async fn an_unsupported_database_url_is_refused_by_scheme() {
    let err = Store::connect("mysql://root@localhost/x", &Default::default())
        .await
        .expect_err("mysql");
    assert!(err.to_string().contains("\"mysql\""), "{err}");
    let _ = EventId::new_random();
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode() {
    use merit_storage::sea_orm::{ConnectionTrait, Statement};
    let (db, store) = TestDb::migrated(Backend::Sqlite).await;
    let row = store
        .db()
        .query_one(Statement::from_string(
            store.backend(),
            "PRAGMA journal_mode",
        ))
        .await
        .expect("pragma")
        .expect("one row");
    let mode: String = row.try_get_by_index(0).expect("text");
    assert_eq!(mode.to_lowercase(), "wal");
    store.close().await.expect("close");
    db.cleanup().await;
}
