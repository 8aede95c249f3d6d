//! The outbox relay: publishes committed outbox rows, oldest first, with publisher
//! confirms, and marks them published only after the broker confirmed them. A crash
//! between the two republishes the rows: delivery is at least once, and receivers'
//! inboxes absorb the duplicates. With several nodes on one database every relay may
//! publish a row; the same inboxes make that safe.
//!
//! Pipelined: up to [`RELAY_IN_FLIGHT`] batches are published at once, so the next batch
//! is written while the broker still confirms the previous ones. Each batch in flight
//! spans an id range that the next selection skips, so no row is in two batches of one
//! relay, and a row committed late inside such a range is found once the range is free.
//! The batches are polled by the relay itself in the order they were selected, and the
//! transport writes concurrent batches one after the other (its publish lock is fair), so
//! the broker receives them in id order. A batch's rows are marked once its own confirms
//! arrived. A failed batch marks nothing: the relay lets the other batches finish and
//! mark, then ends with the error so that the supervisor restarts it and the failed rows
//! are selected again (a later batch may then have reached the broker first; the
//! receivers' inboxes absorb the duplicates either way). The outbox table stays the
//! durable record; the 250 ms poll still catches rows committed by other processes.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{future::BoxFuture, stream::FuturesOrdered, StreamExt};
use merit_mailbox::{Outgoing, Transport};
use merit_storage::{OutboxRow, Store};
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

/// Relays until shutdown; an error ends the run so the supervisor restarts it.
pub(crate) async fn run_relay(
    store: Store,
    transport: Arc<dyn Transport>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let signal = store.outbox_signal();
    let mut in_flight: InFlight = FuturesOrdered::new();
    // The id ranges of the batches in flight, keyed by their first id.
    let mut spans: BTreeMap<i64, i64> = BTreeMap::new();
    loop {
        if *shutdown.borrow() {
            // Let what was written be confirmed and marked, so it is not sent again.
            return drain(&store, &mut in_flight, &mut spans).await;
        }
        // Fill the free slots; a short selection means the relay caught up.
        while in_flight.len() < RELAY_IN_FLIGHT {
            let skip: Vec<(i64, i64)> = spans.iter().map(|(&a, &b)| (a, b)).collect();
            let rows = match store.pending_outbox_outside(&skip, RELAY_BATCH).await {
                Ok(rows) => rows,
                Err(e) => {
                    drain(&store, &mut in_flight, &mut spans).await?;
                    return Err(e.into());
                }
            };
            let full = rows.len() as u64 == RELAY_BATCH;
            let Some(batch) = start(rows, &transport, &mut in_flight) else {
                break;
            };
            spans.insert(batch.0, batch.1);
            if !full {
                break;
            }
        }
        if in_flight.is_empty() {
            tokio::select! {
                _ = signal.notified() => {}
                // Rows committed by another process sharing the database.
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
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
            _ = signal.notified(), if free => {}
            _ = tokio::time::sleep(Duration::from_millis(250)), if free => {}
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
    let first = rows.first()?.id;
    let last = rows.last()?.id;
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_next_selection_skips_the_ranges_in_flight() {
        let (_dir, store, _ids) = store_with(10).await;
        let all = store.pending_outbox(0, 100).await.expect("pending");
        let id = |i: usize| all[i].id;
        let rest = store
            .pending_outbox_outside(&[(id(0), id(2)), (id(5), id(6))], 100)
            .await
            .expect("pending");
        let rest: Vec<i64> = rest.into_iter().map(|r| r.id).collect();
        assert_eq!(rest, vec![id(3), id(4), id(7), id(8), id(9)]);
    }
}
