//! The retention sweep and the dead-letter table.

use merit_storage::{
    entities,
    sea_orm::{ActiveValue::Set, EntityTrait},
    Retention, Store, Swept,
};
use serde_json::json;

use crate::common::{Backend, TestDb};

merit_testkit::on_both_backends! {
    the_retention_sweep_deletes_only_expired_rows_chunk_by_chunk => retention_sweep;
    dead_letters_record_once_settle_once_and_the_cap_drops_settled_rows_first => dead_letter_table;
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
    let inbox_left =
        left::<inbox::Entity, _>(store, inbox::Column::EventId, "inbox", |r| r.event_id).await;
    assert_eq!(inbox_left, ["e-5", "e-6", "e-7"]);
    let outbox_left =
        left::<outbox::Entity, _>(store, outbox::Column::Id, "outbox", |r| r.event_id).await;
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

/// A field of every row of entity `E`'s table, in the order of `order` (`what` names the
/// table in a failure).
async fn left<E: EntityTrait, T>(
    store: &Store,
    order: E::Column,
    what: &str,
    field: impl Fn(E::Model) -> T,
) -> Vec<T> {
    use merit_storage::sea_orm::QueryOrder;
    E::find()
        .order_by_asc(order)
        .all(store.db())
        .await
        .expect(what)
        .into_iter()
        .map(field)
        .collect()
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
