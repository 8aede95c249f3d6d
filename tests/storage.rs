//! The storage write path on SQLite and PostgreSQL: migrations, atomic turns, idempotency
//! by event id, optimistic version checks, concurrent writers, the outbox.

mod common;

use std::sync::Arc;

use common::{Backend, TestDb};
use merit_messages::{ActorKind, Address, Envelope, EventId, VoteChoice};
use merit_storage::{
    entities::{self, user},
    no_projection,
    sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait},
    OutboxMessage, Retention, StateWrite, StorageError, Store, Swept, Turn, TurnOutcome, TxFuture,
};
use serde_json::json;

on_both_backends! {
    migrate_creates_every_table_and_twice_is_a_no_op => migrate_twice;
    a_turn_commits_state_inbox_and_outbox_together => turn_commits_all;
    a_failing_projection_leaves_no_state_inbox_or_outbox_row => failing_projection_rolls_back;
    the_same_event_twice_has_one_effect => duplicate_event;
    a_stale_version_is_refused_and_leaves_nothing_behind => stale_version;
    concurrent_writers_finish_without_deadlock => concurrent_writers;
    outbox_rows_are_pending_until_marked_published => outbox_relay_reads;
    group_commit_gives_each_turn_the_outcome_it_would_have_alone => group_commit;
    group_commit_writes_a_batchs_projection_rows_per_entity_and_survives_a_clash => group_commit_rows;
    the_retention_sweep_deletes_only_expired_rows_chunk_by_chunk => retention_sweep;
    dead_letters_record_once_settle_once_and_the_cap_drops_settled_rows_first => dead_letter_table;
    snapshots_loaded_at_the_same_moment_each_reach_their_own_load => snapshots_at_once;
}

fn vote(voter: u8) -> Envelope {
    let mut addr = [0u8; 20];
    addr[19] = voter;
    common::vote_cast("test", "p-1", Address(addr), VoteChoice::For)
}

fn turn(env: &Envelope, expected: i64, state: serde_json::Value) -> Turn {
    Turn {
        consumer: "user".into(),
        event_id: env.id,
        batched: Vec::new(),
        state: Some(StateWrite {
            kind: ActorKind::User,
            key: env.keys.user.expect("vote has a user").to_string(),
            expected_version: expected,
            state,
        }),
        outbox: vec![OutboxMessage::from_envelope(&env.caused(
            "echo",
            "test",
            env.event.clone(),
        ))],
    }
}

fn user_row(address: String) -> user::ActiveModel {
    let now = chrono::Utc::now();
    user::ActiveModel {
        address: Set(address),
        proposals_created: Set(0),
        votes_cast: Set(1),
        counters: Set(json!({})),
        first_seen_at: Set(now),
        last_active_at: Set(now),
    }
}

fn user_upsert() -> merit_storage::sea_orm::sea_query::OnConflict {
    merit_storage::sea_orm::sea_query::OnConflict::column(user::Column::Address)
        .update_column(user::Column::VotesCast)
        .to_owned()
}

fn upsert_user(
    address: String,
) -> impl for<'c> FnOnce(&'c merit_storage::sea_orm::DatabaseTransaction) -> TxFuture<'c, ()> + Send
{
    move |txn| {
        Box::pin(async move {
            user::Entity::insert(user_row(address))
                .on_conflict(user_upsert())
                .exec(txn)
                .await?;
            Ok(())
        })
    }
}

async fn counts(store: &Store) -> (u64, u64, u64, u64) {
    let db = store.db();
    (
        entities::actor::Entity::find()
            .count(db)
            .await
            .expect("actors"),
        entities::inbox::Entity::find()
            .count(db)
            .await
            .expect("inbox"),
        entities::outbox::Entity::find()
            .count(db)
            .await
            .expect("outbox"),
        entities::user::Entity::find()
            .count(db)
            .await
            .expect("users"),
    )
}

/// Every entity's table exists and has the columns its model reads.
async fn every_table_is_readable(store: &Store) {
    let conn = store.db();
    entities::actor::Entity::find()
        .all(conn)
        .await
        .expect("actors");
    entities::user::Entity::find()
        .all(conn)
        .await
        .expect("users");
    entities::achievement::Entity::find()
        .all(conn)
        .await
        .expect("achievements");
    entities::proposal::Entity::find()
        .all(conn)
        .await
        .expect("proposals");
    entities::vote::Entity::find()
        .all(conn)
        .await
        .expect("votes");
    entities::nft::Entity::find().all(conn).await.expect("nfts");
    entities::siwe_nonce::Entity::find()
        .all(conn)
        .await
        .expect("siwe_nonces");
    entities::notification::Entity::find()
        .all(conn)
        .await
        .expect("notifications");
    entities::node::Entity::find()
        .all(conn)
        .await
        .expect("nodes");
    entities::benefit::Entity::find()
        .all(conn)
        .await
        .expect("benefits");
    entities::inbox::Entity::find()
        .all(conn)
        .await
        .expect("inbox");
    entities::outbox::Entity::find()
        .all(conn)
        .await
        .expect("outbox");
    entities::saga::Entity::find()
        .all(conn)
        .await
        .expect("sagas");
    entities::saga_step::Entity::find()
        .all(conn)
        .await
        .expect("saga_steps");
    entities::config_version::Entity::find()
        .all(conn)
        .await
        .expect("config_versions");
    entities::chain_checkpoint::Entity::find()
        .all(conn)
        .await
        .expect("chain_checkpoints");
}

/// Commits `env` as the first turn of its voter's actor (state `{"votes": 1}`, the user
/// row projected): it applies as version 1.
async fn commit_first_vote(store: &Store, env: &Envelope, what: &str) {
    let key = env.keys.user.expect("user").to_string();
    let outcome = store
        .commit_turn(turn(env, 0, json!({"votes": 1})), upsert_user(key))
        .await
        .expect(what);
    assert_eq!(outcome, TurnOutcome::Applied { version: Some(1) });
}

/// The stored snapshot of user actor `key`: (version, state).
async fn user_snapshot(store: &Store, key: &str) -> (i64, serde_json::Value) {
    store
        .load_actor(ActorKind::User, key)
        .await
        .expect("load")
        .expect("stored")
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

/// Inbox: 5 rows applied at `old`, 3 at `recent`. Outbox: 4 published at `old`, 2
/// created then but never published, 2 published at `recent`. One user's log: seqs 1-3
/// from `old`, 4-5 from `recent`.
async fn seed_retention_rows(
    store: &Store,
    old: chrono::DateTime<chrono::Utc>,
    recent: chrono::DateTime<chrono::Utc>,
) {
    use entities::{inbox, notification, outbox};
    let conn = store.db();
    inbox::Entity::insert_many((0..8).map(|i| inbox::ActiveModel {
        consumer: Set("user".into()),
        event_id: Set(format!("e-{i}")),
        processed_at: Set(if i < 5 { old } else { recent }),
    }))
    .exec(conn)
    .await
    .expect("inbox rows");
    outbox::Entity::insert_many((0..8).map(|i| outbox::ActiveModel {
        event_id: Set(format!("o-{i}")),
        routing_key: Set("governance.vote.recorded".into()),
        payload: Set("{}".into()),
        headers: Set(json!({})),
        created_at: Set(if i < 6 { old } else { recent }),
        published_at: Set(match i {
            0..=3 => Some(old),
            4 | 5 => None,
            _ => Some(recent),
        }),
        ..Default::default()
    }))
    .exec(conn)
    .await
    .expect("outbox rows");
    notification::Entity::insert_many((1..=5).map(|seq| notification::ActiveModel {
        user: Set("0x00000000000000000000000000000000000000aa".into()),
        seq: Set(seq),
        event_id: Set(format!("n-{seq}")),
        kind: Set("governance.vote.recorded".into()),
        payload: Set(json!({})),
        created_at: Set(if seq <= 3 { old } else { recent }),
    }))
    .exec(conn)
    .await
    .expect("notifications");
}

/// After the sweep: the recent inbox rows, the unpublished and recent outbox rows, and
/// the recent notifications are left.
async fn assert_only_unexpired_rows_left(store: &Store) {
    use entities::{inbox, notification, outbox};
    use merit_storage::sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
    let conn = store.db();
    let inbox_left: Vec<String> = inbox::Entity::find()
        .order_by_asc(inbox::Column::EventId)
        .all(conn)
        .await
        .expect("inbox")
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    assert_eq!(inbox_left, ["e-5", "e-6", "e-7"]);
    let outbox_left: Vec<String> = outbox::Entity::find()
        .order_by_asc(outbox::Column::Id)
        .all(conn)
        .await
        .expect("outbox")
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    assert_eq!(
        outbox_left,
        ["o-4", "o-5", "o-6", "o-7"],
        "unpublished rows stay however old"
    );
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 2);
    let seqs: Vec<i64> = notification::Entity::find()
        .filter(notification::Column::Seq.gt(0))
        .order_by_asc(notification::Column::Seq)
        .all(conn)
        .await
        .expect("notifications")
        .into_iter()
        .map(|n| n.seq)
        .collect();
    assert_eq!(seqs, [4, 5]);
}

/// Nothing more is due after a sweep; a retention of "for ever" sweeps nothing even at a
/// late `now`; a retention longer than timestamps reach keeps everything (and does not
/// overflow).
async fn assert_nothing_more_is_swept(
    store: &Store,
    retention: Retention,
    now: chrono::DateTime<chrono::Utc>,
) {
    assert_eq!(
        store.sweep(&retention, now).await.expect("again"),
        Swept::default()
    );
    let forever = Retention {
        inbox: None,
        outbox: None,
        notifications: None,
        chunk: 2,
    };
    assert_eq!(
        store
            .sweep(&forever, now + chrono::Duration::days(3_650))
            .await
            .expect("forever"),
        Swept::default()
    );
    let beyond = Retention {
        inbox: Some(std::time::Duration::MAX),
        ..retention
    };
    assert_eq!(store.sweep(&beyond, now).await.expect("beyond").inbox, 0);
}

async fn retention_sweep(backend: Backend) {
    use chrono::{Duration as Days, Utc};

    let (db, store) = TestDb::migrated(backend).await;
    let now = Utc::now();
    seed_retention_rows(&store, now - Days::days(40), now - Days::days(1)).await;

    let days = |n: u64| Some(std::time::Duration::from_secs(n * 86_400));
    let retention = Retention {
        inbox: days(30),
        outbox: days(7),
        notifications: days(30),
        chunk: 2,
    };
    let swept = store.sweep(&retention, now).await.expect("sweep");
    assert_eq!(
        swept,
        Swept {
            inbox: 5,
            outbox: 4,
            notifications: 3
        }
    );
    assert_only_unexpired_rows_left(&store).await;
    assert_nothing_more_is_swept(&store, retention, now).await;
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

fn dead_letter_row(id: &str) -> merit_storage::NewDeadLetter {
    let now = chrono::Utc::now();
    merit_storage::NewDeadLetter {
        seq: merit_storage::sea_orm::ActiveValue::NotSet,
        id: Set(id.to_string()),
        routing_key: Set("governance.vote.cast".into()),
        reason_class: Set("malformed".into()),
        reason: Set("not JSON".into()),
        attempts: Set(1),
        body: Set(b"{oops".to_vec()),
        truncated_from: Set(None),
        origin: Set("producer".into()),
        source_queue: Set("merit.proposal.0".into()),
        message_id: Set(None),
        correlation_id: Set(None),
        headers: Set(json!({})),
        dead_lettered_at: Set(now),
        recorded_at: Set(now),
        state: Set("waiting".into()),
        settled_at: Set(None),
    }
}

async fn dead_letter_table(backend: Backend) {
    use merit_storage::{DeadLetterFilter, DeadLetterState};
    let (db, store) = TestDb::migrated(backend).await;
    let ids: Vec<String> = (1..=10).map(|i| format!("dl-{i:02}")).collect();
    let new = store
        .record_dead_letters(ids.iter().map(|id| dead_letter_row(id)).collect())
        .await
        .expect("record");
    assert_eq!(new, 10);
    let again = store
        .record_dead_letters(vec![dead_letter_row("dl-03"), dead_letter_row("dl-11")])
        .await
        .expect("record again");
    assert_eq!(again, 1, "a dead letter recorded twice is one row");

    let settled = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let replayed = store
        .settle_dead_letters(
            settled(&["dl-02", "dl-04", "dl-06"]),
            DeadLetterState::Replayed,
        )
        .await
        .expect("settle");
    assert_eq!(replayed, 3);
    let twice = store
        .settle_dead_letters(settled(&["dl-02"]), DeadLetterState::Discarded)
        .await
        .expect("settle again");
    assert_eq!(twice, 0, "a settled dead letter is not settled again");

    // 11 rows, keep 7: the 3 settled go first, then the oldest waiting one.
    let dropped = store.trim_dead_letters(7).await.expect("trim");
    assert_eq!(dropped, 1, "one waiting dead letter dropped");
    let left: Vec<String> = store
        .dead_letters(&DeadLetterFilter::default(), 0, 100)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        left,
        ["dl-03", "dl-05", "dl-07", "dl-08", "dl-09", "dl-10", "dl-11"].map(String::from)
    );
    assert_eq!(store.trim_dead_letters(7).await.expect("trim again"), 0);
    db.cleanup().await;
}
