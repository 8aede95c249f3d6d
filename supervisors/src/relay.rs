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
mod tests;
