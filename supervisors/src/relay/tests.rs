//! Unit tests of the outbox relay: properties on the wire, batch order, restarts, and each
//! row published once.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Mutex,
};

use async_trait::async_trait;
use merit_mailbox::{DeadLetter, Delivery, ShardId};
use merit_messages::EventId;
use merit_storage::{insert_outbox, OutboxMessage, StoreOptions};
use tokio::sync::mpsc;

use super::*;

/// A transport whose publishes take a while (the confirms) and may fail on demand.
#[derive(Default)]
struct SlowBroker {
    /// The message ids of each publish, in the order the publishes started.
    started: Mutex<Vec<Vec<String>>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// The publish (counted from 0) that fails, if any.
    fail: Mutex<Option<usize>>,
}

#[async_trait]
impl Transport for SlowBroker {
    async fn declare(&self) -> merit_mailbox::Result<()> {
        Ok(())
    }

    async fn publish(&self, batch: Vec<Outgoing>) -> merit_mailbox::Result<()> {
        let call = {
            let mut started = self.started.lock().expect("lock");
            started.push(batch.iter().map(|m| m.message_id.clone()).collect());
            started.len() - 1
        };
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if *self.fail.lock().expect("lock") == Some(call) {
            return Err(merit_mailbox::Error::Closed);
        }
        Ok(())
    }

    async fn consume(
        &self,
        _shard: ShardId,
        _prefetch: u16,
    ) -> merit_mailbox::Result<mpsc::Receiver<Delivery>> {
        Err(merit_mailbox::Error::Closed)
    }

    async fn queue_depths(&self) -> merit_mailbox::Result<Vec<(String, u64)>> {
        Ok(Vec::new())
    }

    async fn dead_letters(&self, _limit: usize) -> merit_mailbox::Result<Vec<DeadLetter>> {
        Ok(Vec::new())
    }

    async fn consume_dead_letters(
        &self,
        _prefetch: u16,
    ) -> merit_mailbox::Result<mpsc::Receiver<merit_mailbox::DeadLetterDelivery>> {
        Err(merit_mailbox::Error::Closed)
    }

    async fn is_connected(&self) -> bool {
        true
    }
}

#[test]
fn a_relayed_event_carries_its_correlation_id_as_the_amqp_property() {
    let row = OutboxRow {
        id: 1,
        event_id: "e-1".into(),
        routing_key: "governance.vote.recorded".into(),
        payload: "{}".into(),
        headers: serde_json::json!({
            "merit-user": "0xabc",
            merit_storage::OUTBOX_CORRELATION: "c-1",
        }),
        created_at: chrono::Utc::now(),
        published_at: None,
    };
    let out = outgoing(row);
    assert_eq!(out.correlation_id.as_deref(), Some("c-1"));
    assert!(!out.headers.contains_key(merit_storage::OUTBOX_CORRELATION));
    assert_eq!(
        out.headers.get("merit-user").map(String::as_str),
        Some("0xabc")
    );
}

async fn store_with(rows: usize) -> (tempfile::TempDir, Store, Vec<String>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("relay.sqlite").display()
    );
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .expect("store");
    store.migrate().await.expect("migrated");
    let messages: Vec<OutboxMessage> = (0..rows)
        .map(|i| OutboxMessage {
            event_id: EventId(uuid::Uuid::new_v4()),
            routing_key: "achievement.unlocked".into(),
            payload: format!("{{\"n\":{i}}}"),
            headers: serde_json::json!({}),
        })
        .collect();
    let ids = messages.iter().map(|m| m.event_id.0.to_string()).collect();
    store
        .write(move |txn| {
            Box::pin(async move { insert_outbox(txn, &messages, chrono::Utc::now()).await })
        })
        .await
        .expect("outbox rows");
    (dir, store, ids)
}

/// Runs the relay until the outbox is empty (or it fails); returns its result.
async fn relay_until_empty(store: &Store, broker: Arc<SlowBroker>) -> Result<()> {
    let (stop, stopped) = watch::channel(false);
    let relay = tokio::spawn(run_relay(store.clone(), broker, stopped));
    for _ in 0..500 {
        if relay.is_finished() || store.outbox_backlog().await.expect("backlog") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    relay.await.expect("relay task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_overlap_are_written_in_id_order_and_each_row_goes_once() {
    let (_dir, store, ids) = store_with(1_700).await;
    let broker = Arc::new(SlowBroker::default());
    relay_until_empty(&store, broker.clone())
        .await
        .expect("relayed");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
    let started = broker.started.lock().expect("lock").clone();
    assert_eq!(
        started.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![500, 500, 500, 200],
        "full batches while behind"
    );
    assert_eq!(
        started.concat(),
        ids,
        "every row once, the batches started in id order"
    );
    assert!(
        broker.most_in_flight.load(Ordering::SeqCst) >= 2,
        "the next batch is published while the previous one awaits its confirms"
    );
    assert!(broker.most_in_flight.load(Ordering::SeqCst) <= RELAY_IN_FLIGHT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_marks_nothing_and_is_published_again_after_a_restart() {
    let (_dir, store, ids) = store_with(1_500).await;
    let broker = Arc::new(SlowBroker::default());
    *broker.fail.lock().expect("lock") = Some(1);
    let failed = relay_until_empty(&store, broker.clone()).await;
    assert!(failed.is_err(), "the failure ends the run: {failed:?}");
    // The batches beside it were confirmed and marked; the failed one was not.
    let pending = store.pending_outbox(0, 10_000).await.expect("pending");
    let pending: Vec<String> = pending.into_iter().map(|r| r.event_id).collect();
    assert_eq!(pending, ids[500..1_000].to_vec());

    // The supervisor restarts the relay: exactly the failed rows go again.
    *broker.fail.lock().expect("lock") = None;
    broker.started.lock().expect("lock").clear();
    relay_until_empty(&store, broker.clone())
        .await
        .expect("relayed");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
    assert_eq!(
        broker.started.lock().expect("lock").concat(),
        ids[500..1_000].to_vec()
    );
}

/// A turn whose one outbox row carries `n`, with that row's event id.
fn outbox_turn(n: usize) -> (String, merit_storage::Turn) {
    let event_id = EventId(uuid::Uuid::new_v4());
    let turn = merit_storage::Turn {
        consumer: "test".into(),
        event_id,
        batched: Vec::new(),
        state: None,
        outbox: vec![OutboxMessage {
            event_id,
            routing_key: "achievement.unlocked".into(),
            payload: format!("{{\"n\":{n}}}"),
            headers: serde_json::json!({}),
        }],
    };
    (event_id.0.to_string(), turn)
}

/// What a relay run sent, in order, and the rows it had to send.
struct Relayed {
    sent: Vec<String>,
    expected: Vec<String>,
    /// Each writer's rows, in commit order.
    per_writer: Vec<Vec<String>>,
}

/// Commits `before` turns, starts the relay, and while it runs commits 150 turns from
/// each of `writers` concurrent writers (they feed it) and writes `table_only` rows to
/// the table alone (as another process's would be, which only its table reads find);
/// stops the relay once the outbox is empty.
async fn relay_mix(before: usize, writers: usize, table_only: usize) -> Relayed {
    let (_dir, store, mut expected) = store_with(0).await;
    for n in 0..before {
        let (id, turn) = outbox_turn(n);
        store
            .commit_turn(turn, merit_storage::no_projection)
            .await
            .expect("turn");
        expected.push(id);
    }
    let broker = Arc::new(SlowBroker::default());
    let (stop, stopped) = watch::channel(false);
    let relay = tokio::spawn(run_relay(store.clone(), broker.clone(), stopped));
    let writers: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..150 {
                    let (id, turn) = outbox_turn(1_000 * (w + 1) + n);
                    store
                        .commit_turn(turn, merit_storage::no_projection)
                        .await
                        .expect("turn");
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let table_only: Vec<OutboxMessage> = (0..table_only)
        .map(|i| OutboxMessage {
            event_id: EventId(uuid::Uuid::new_v4()),
            routing_key: "achievement.unlocked".into(),
            payload: format!("{{\"table\":{i}}}"),
            headers: serde_json::json!({}),
        })
        .collect();
    expected.extend(table_only.iter().map(|m| m.event_id.0.to_string()));
    store
        .write(move |txn| {
            Box::pin(async move { insert_outbox(txn, &table_only, chrono::Utc::now()).await })
        })
        .await
        .expect("rows in the table only");
    let mut per_writer = Vec::new();
    for writer in writers {
        let ids = writer.await.expect("writer");
        expected.extend(ids.iter().cloned());
        per_writer.push(ids);
    }
    for _ in 0..500 {
        if store.outbox_backlog().await.expect("backlog") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    relay.await.expect("relay task").expect("relayed");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
    let sent = broker.started.lock().expect("lock").concat();
    Relayed {
        sent,
        expected,
        per_writer,
    }
}

impl Relayed {
    fn assert_each_row_once(&self) {
        assert_eq!(
            self.sent.len(),
            self.expected.len(),
            "no row sent twice, none left out"
        );
        let (mut sent, mut expected) = (self.sent.clone(), self.expected.clone());
        sent.sort();
        expected.sort();
        assert_eq!(sent, expected);
    }

    fn assert_each_writer_in_commit_order(&self) {
        for ids in &self.per_writer {
            let order: Vec<&String> = self.sent.iter().filter(|id| ids.contains(id)).collect();
            assert_eq!(
                order,
                ids.iter().collect::<Vec<_>>(),
                "one writer's rows in commit order"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_committed_before_the_relay_starts_go_once() {
    // They are both fed and in the table: its first table read sends them, and the
    // feed's copies are skipped.
    let run = relay_mix(100, 0, 0).await;
    assert_eq!(run.expected.len(), 100);
    run.assert_each_row_once();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_fed_while_the_relay_runs_go_once_in_each_writers_commit_order() {
    let run = relay_mix(0, 4, 0).await;
    assert_eq!(run.expected.len(), 600);
    run.assert_each_row_once();
    run.assert_each_writer_in_commit_order();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fed_rows_and_rows_only_in_the_table_each_go_once() {
    let run = relay_mix(100, 4, 200).await;
    assert_eq!(run.expected.len(), 900);
    run.assert_each_row_once();
    run.assert_each_writer_in_commit_order();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_row_only_in_the_table_is_left_to_its_own_relay_until_it_settles() {
    let (_dir, store, _) = store_with(0).await;
    let broker = Arc::new(SlowBroker::default());
    let (stop, stopped) = watch::channel(false);
    let relay = tokio::spawn(run_relay(store.clone(), broker.clone(), stopped));
    let sent = |broker: &SlowBroker| broker.started.lock().expect("lock").concat();
    let write = |n: usize, stamped: chrono::DateTime<chrono::Utc>| {
        let store = store.clone();
        async move {
            let row = OutboxMessage {
                event_id: EventId(uuid::Uuid::new_v4()),
                routing_key: "achievement.unlocked".into(),
                payload: format!("{{\"n\":{n}}}"),
                headers: serde_json::json!({}),
            };
            let id = row.event_id.0.to_string();
            store
                .write(move |txn| {
                    Box::pin(async move { insert_outbox(txn, [&row], stamped).await })
                })
                .await
                .expect("a row in the table only");
            id
        }
    };
    // The relay's first read found nothing; a row another process committed now is
    // not taken by the periodic read while it is fresh…
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = write(1, chrono::Utc::now()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!sent(&broker).contains(&other), "taken while fresh");
    // …but once it has settled.
    for _ in 0..250 {
        if sent(&broker).contains(&other) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sent(&broker).contains(&other), "taken once settled");
    // A signal (the chain listener's rows) reads every pending row at once.
    // A row stamped an hour ahead (its node's clock runs fast) is not held back for
    // that hour: the periodic read takes it at once.
    let ahead = write(3, chrono::Utc::now() + chrono::TimeDelta::hours(1)).await;
    for _ in 0..100 {
        if sent(&broker).contains(&ahead) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        sent(&broker).contains(&ahead),
        "a row stamped ahead is not held back"
    );
    let signalled = write(2, chrono::Utc::now()).await;
    store.outbox_signal().notify_one();
    for _ in 0..50 {
        if sent(&broker).contains(&signalled) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        sent(&broker).contains(&signalled),
        "a signal reads fresh rows"
    );
    let _ = stop.send(true);
    relay.await.expect("relay task").expect("relayed");
    assert_eq!(sent(&broker).len(), 3, "each row once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_selection_skips_the_ranges_in_flight() {
    let (_dir, store, _ids) = store_with(10).await;
    let all = store.pending_outbox(0, 100).await.expect("pending");
    let id = |i: usize| all[i].id;
    let rest = store
        .pending_outbox_outside(&[(id(0), id(2)), (id(5), id(6))], 100, None)
        .await
        .expect("pending");
    let rest: Vec<i64> = rest.into_iter().map(|r| r.id).collect();
    assert_eq!(rest, vec![id(3), id(4), id(7), id(8), id(9)]);
}
