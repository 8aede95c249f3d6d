//! The outbox relay: publishes committed outbox rows, oldest first, with publisher
//! confirms, and marks them published only after the broker confirmed them. A crash
//! between the two republishes the rows: delivery is at least once, and receivers'
//! inboxes absorb the duplicates. With several nodes on one database every relay may
//! publish a row; the same inboxes make that safe.
//!
//! Pipelined: up to [`RELAY_IN_FLIGHT`] batches are published at once, so the next batch
//! is written while the broker still confirms the previous ones. Each batch in flight
//! spans an id range (lowest to highest id) that the next table read skips, so no row is in two batches of one
//! relay, and a row committed late inside such a range is found once the range is free.
//! The batches are polled by the relay itself in the order they were selected, and the
//! transport writes concurrent batches one after the other (its publish lock is fair), so
//! the broker receives them in the order selected: id order from the table, commit order
//! from the feed (either way one actor's rows in the order it emitted them). A batch's rows are marked once its own confirms
//! arrived. A failed batch marks nothing: the relay lets the other batches finish and
//! mark, then ends with the error so that the supervisor restarts it and the failed rows
//! are selected again (a later batch may then have reached the broker first; the
//! receivers' inboxes absorb the duplicates either way).
//!
//! Fed from commits: a turn's committed outbox rows reach the relay in memory through the
//! store's [`OutboxFeed`], with their ids, so under load the relay publishes without
//! reading the table back. The table stays the durable record: the relay reads it at
//! start, after the feed overflowed and on the chain listener's signal (every pending
//! row), and every 250 ms (rows stamped more than 2 s from this node's clock: those of other processes, a node that
//! died, say; a fresher row is left to its own process's relay), each time until it has
//! caught up. A fed row that such a read already started is skipped, so one relay sends a
//! row once.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{future::BoxFuture, stream::FuturesOrdered, StreamExt};
use merit_mailbox::{Outgoing, Transport};
use merit_storage::{OutboxFeed, OutboxRow, Store};
use tokio::sync::watch;

use crate::error::Result;

/// How many rows one publish batch carries.
pub const RELAY_BATCH: u64 = 500;

/// How many batches one relay keeps published but not yet confirmed.
pub const RELAY_IN_FLIGHT: usize = 3;

/// One batch on its way: the ids it carries and the range they span.
struct Batch {
    ids: Vec<i64>,
    span: (i64, i64),
    by_type: BTreeMap<String, u64>,
    /// A span per traced row, each in its row's trace, closed once the row is marked.
    traces: Vec<tracing::Span>,
}

/// A finished publish: its batch and whether every row was confirmed.
type Published = (Batch, merit_mailbox::Result<()>);

/// The publishes in flight, in the order they were started.
type InFlight = FuturesOrdered<BoxFuture<'static, Published>>;

/// How often the relay reads the table even while the feed keeps it busy: rows other
/// processes committed (a node that died, say) are published within about this long.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// How old a row must be for the periodic table read to take it. A younger row is left to
/// the relay of the process that committed it, which has it in its feed: on a database
/// shared by several nodes, two relays racing for the same fresh rows would publish them
/// twice (harmless, the inboxes absorb it, but each duplicate costs a turn and throws the
/// receiver's cached benefits away). Reads at start, after an overflow and on a signal
/// take every pending row.
///
/// `created_at` is the writing node's clock, so "fresh" is a window around this node's
/// now, not a bound below it: a row stamped ahead by a node whose clock runs fast is taken
/// at once (at worst a duplicate), never held back for as long as that clock is ahead.
const SETTLE_AGE: chrono::TimeDelta = chrono::TimeDelta::seconds(2);

/// How many started row ids the relay remembers, to skip a fed row that a table read
/// already published.
const RECENT_IDS: usize = 50_000;

/// Where the relay takes its next batch from.
struct Source {
    feed: Arc<OutboxFeed>,
    /// Read the table next: at start, after a feed overflow, on a signal or a due poll,
    /// until a read comes back short (caught up).
    poll_due: bool,
    /// The next read takes rows younger than [`SETTLE_AGE`] too (at start, after an
    /// overflow, on a signal).
    poll_fresh: bool,
    last_poll: Instant,
    /// Ids of rows this run started publishing, oldest first, bounded by [`RECENT_IDS`].
    recent: VecDeque<i64>,
    started: HashSet<i64>,
}

impl Source {
    fn new(feed: Arc<OutboxFeed>) -> Self {
        Self {
            feed,
            poll_due: true,
            poll_fresh: true,
            last_poll: Instant::now(),
            recent: VecDeque::new(),
            started: HashSet::new(),
        }
    }

    /// Reads every pending row next, however fresh (a signal: rows that no feed carries).
    fn read_all(&mut self) {
        self.poll_due = true;
        self.poll_fresh = true;
    }

    /// The next rows to publish, or none when there is nothing to do now.
    async fn next(&mut self, store: &Store, skip: &[(i64, i64)]) -> Result<Vec<OutboxRow>> {
        if self.last_poll.elapsed() >= POLL_EVERY {
            self.poll_due = true;
        }
        loop {
            if self.poll_due {
                self.last_poll = Instant::now();
                let now = chrono::Utc::now();
                let fresh = (!self.poll_fresh).then(|| (now - SETTLE_AGE, now + SETTLE_AGE));
                let rows = store
                    .pending_outbox_outside(skip, RELAY_BATCH, fresh)
                    .await?;
                if (rows.len() as u64) < RELAY_BATCH {
                    self.poll_due = false;
                    self.poll_fresh = false;
                }
                return Ok(self.start(rows));
            }
            let fed = self.feed.take(RELAY_BATCH as usize);
            if fed.overflowed {
                tracing::warn!(
                    capacity = merit_storage::OUTBOX_FEED_CAPACITY,
                    "the outbox feed overflowed (the relay fell behind); reading the table"
                );
                self.read_all();
                continue;
            }
            if fed.rows.is_empty() {
                return Ok(Vec::new());
            }
            let rows: Vec<OutboxRow> = fed
                .rows
                .into_iter()
                .filter(|row| !self.started.contains(&row.id))
                .collect();
            if !rows.is_empty() {
                return Ok(self.start(rows));
            }
        }
    }

    /// Remembers `rows` as started and returns them.
    fn start(&mut self, rows: Vec<OutboxRow>) -> Vec<OutboxRow> {
        for row in &rows {
            if self.started.insert(row.id) {
                self.recent.push_back(row.id);
            }
        }
        while self.recent.len() > RECENT_IDS {
            if let Some(old) = self.recent.pop_front() {
                self.started.remove(&old);
            }
        }
        rows
    }
}

/// Relays until shutdown; an error ends the run so the supervisor restarts it.
pub(crate) async fn run_relay(
    store: Store,
    transport: Arc<dyn Transport>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let signal = store.outbox_signal();
    let mut source = Source::new(store.outbox_feed());
    let feed = store.outbox_feed();
    let mut in_flight: InFlight = FuturesOrdered::new();
    // The id ranges of the batches in flight, keyed by their first id.
    let mut spans: BTreeMap<i64, i64> = BTreeMap::new();
    loop {
        if *shutdown.borrow() {
            // Let what was written be confirmed and marked, so it is not sent again.
            return drain(&store, &mut in_flight, &mut spans).await;
        }
        // Fill the free slots; no rows means the relay caught up.
        while in_flight.len() < RELAY_IN_FLIGHT {
            let skip: Vec<(i64, i64)> = spans.iter().map(|(&a, &b)| (a, b)).collect();
            let rows = match source.next(&store, &skip).await {
                Ok(rows) => rows,
                Err(e) => {
                    drain(&store, &mut in_flight, &mut spans).await?;
                    return Err(e);
                }
            };
            let Some(batch) = start(rows, &transport, &mut in_flight) else {
                break;
            };
            spans.insert(batch.0, batch.1);
        }
        if in_flight.is_empty() {
            tokio::select! {
                _ = feed.notified() => {}
                _ = signal.notified() => source.read_all(),
                // Rows committed by another process sharing the database.
                _ = tokio::time::sleep(POLL_EVERY) => source.poll_due = true,
                _ = shutdown.changed() => return Ok(()),
            }
            continue;
        }
        let free = in_flight.len() < RELAY_IN_FLIGHT;
        tokio::select! {
            done = in_flight.next() => {
                if let Some(done) = done {
                    if let Err(e) = finish(&store, done, &mut spans).await {
                        drain(&store, &mut in_flight, &mut spans).await?;
                        return Err(e);
                    }
                }
            }
            // New rows while a slot is free: publish them now, beside the batches in flight.
            _ = feed.notified(), if free => {}
            _ = signal.notified(), if free => source.read_all(),
            _ = tokio::time::sleep(POLL_EVERY), if free => source.poll_due = true,
            _ = shutdown.changed() => return drain(&store, &mut in_flight, &mut spans).await,
        }
    }
}

/// Starts publishing `rows` (if any) and returns the id range they span.
fn start(
    rows: Vec<OutboxRow>,
    transport: &Arc<dyn Transport>,
    in_flight: &mut InFlight,
) -> Option<(i64, i64)> {
    // Fed rows come in commit order, which is not always id order (two committers
    // interleave): the batch spans its lowest to its highest id.
    let first = rows.iter().map(|r| r.id).min()?;
    let last = rows.iter().map(|r| r.id).max()?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    for row in &rows {
        *by_type.entry(row.routing_key.clone()).or_default() += 1;
    }
    let batch = Batch {
        ids,
        span: (first, last),
        by_type,
        traces: rows.iter().filter_map(row_span).collect(),
    };
    let messages = rows.into_iter().map(outgoing).collect();
    let transport = transport.clone();
    in_flight.push_back(Box::pin(async move {
        let result = transport.publish(messages).await;
        (batch, result)
    }));
    Some((first, last))
}

/// Marks a confirmed batch published; a failed one frees its range and returns the error.
async fn finish(
    store: &Store,
    (batch, result): Published,
    spans: &mut BTreeMap<i64, i64>,
) -> Result<()> {
    spans.remove(&batch.span.0);
    result?;
    for (event_type, n) in batch.by_type {
        metrics::counter!("merit_events_out_total", "type" => event_type).increment(n);
    }
    store.mark_published(&batch.ids).await?;
    // The rows' relay spans end here: published, confirmed and marked.
    drop(batch.traces);
    tracing::debug!(published = batch.ids.len(), "outbox relayed");
    Ok(())
}

/// Waits for every batch in flight and marks the confirmed ones; returns the first error.
async fn drain(
    store: &Store,
    in_flight: &mut InFlight,
    spans: &mut BTreeMap<i64, i64>,
) -> Result<()> {
    let mut first_error = None;
    while let Some(done) = in_flight.next().await {
        if let Err(e) = finish(store, done, spans).await {
            tracing::debug!(error = %e, "an outbox batch in flight failed; its rows stay pending");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The relay's span for `row` (DEBUG: made only when traced), a child of the turn that
/// wrote the row.
fn row_span(row: &OutboxRow) -> Option<tracing::Span> {
    let span = tracing::debug_span!(
        "outbox.relay",
        event_id = %row.event_id,
        routing_key = %row.routing_key,
    );
    if span.is_disabled() {
        return None;
    }
    merit_messages::trace::follow(&span, &string_headers(&row.headers));
    Some(span)
}

/// A row's headers: a JSON object of strings.
fn string_headers(headers: &serde_json::Value) -> BTreeMap<String, String> {
    headers
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn outgoing(row: OutboxRow) -> Outgoing {
    let mut headers = string_headers(&row.headers);
    // The envelope's correlation id travels as the AMQP property (as producers send it), so
    // a dead letter of merit's own event keeps it too.
    let correlation_id = headers.remove(merit_storage::OUTBOX_CORRELATION);
    Outgoing {
        routing_key: row.routing_key,
        body: Bytes::from(row.payload.into_bytes()),
        message_id: row.event_id,
        correlation_id,
        headers,
        // Everything in the outbox is merit's: it goes through merit's own door.
        origin: merit_messages::Origin::Merit,
    }
}

#[cfg(test)]
mod tests {
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
}
