//! The outbox feed: outbox rows handed to this process's relay by the commits that wrote
//! them, so the relay publishes them without reading them back from the table.
//!
//! The table stays the durable record; the feed is only a shortcut. A row is put in the
//! feed after its transaction committed (never before: a rolled-back row must not be
//! published), with the id the insert returned, in commit order. The feed is bounded
//! ([`OUTBOX_FEED_CAPACITY`] rows): past it the feed drops what it holds and says so
//! ([`Fed::overflowed`]), and the relay then reads the table in id order until it has
//! caught up, which is what it does at start and for rows written by other processes or
//! by paths that do not feed (the chain listener signals instead).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use tokio::sync::Notify;

use crate::outbox::OutboxRow;

/// How many committed rows the feed holds before it drops them and lets the relay read
/// the table instead (about 1 KiB each).
pub const OUTBOX_FEED_CAPACITY: usize = 20_000;

/// Committed outbox rows waiting for this process's relay. Cheap to share.
#[derive(Debug, Default)]
pub struct OutboxFeed {
    state: Mutex<FeedState>,
    signal: Notify,
}

#[derive(Debug, Default)]
struct FeedState {
    rows: VecDeque<OutboxRow>,
    overflowed: bool,
}

/// What [`OutboxFeed::take`] returns.
#[derive(Debug, Default)]
pub struct Fed {
    /// Committed rows, oldest commit first.
    pub rows: Vec<OutboxRow>,
    /// Rows were dropped since the last take: the relay must read the table to find them.
    pub overflowed: bool,
}

impl OutboxFeed {
    /// A new, empty feed.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds rows whose transaction committed, and wakes the relay.
    pub(crate) fn push(&self, rows: Vec<OutboxRow>) {
        if rows.is_empty() {
            return;
        }
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.rows.len() + rows.len() > OUTBOX_FEED_CAPACITY {
                // Keep nothing rather than a gap: the table has every row, in order.
                state.rows.clear();
                state.overflowed = true;
            } else {
                state.rows.extend(rows);
            }
        }
        self.signal.notify_one();
    }

    /// Takes up to `max` rows, oldest first.
    pub fn take(&self, max: usize) -> Fed {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let n = max.min(state.rows.len());
        Fed {
            rows: state.rows.drain(..n).collect(),
            overflowed: std::mem::take(&mut state.overflowed),
        }
    }

    /// Completes when rows were pushed since the last wait (or before the first).
    pub async fn notified(&self) {
        self.signal.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64) -> OutboxRow {
        OutboxRow {
            id,
            event_id: format!("e-{id}"),
            routing_key: "k".into(),
            payload: "{}".into(),
            headers: serde_json::json!({}),
            created_at: chrono::Utc::now(),
            published_at: None,
        }
    }

    #[test]
    fn rows_come_out_in_commit_order_and_an_overflow_keeps_no_gap() {
        let feed = OutboxFeed::new();
        feed.push(vec![row(2), row(1)]);
        feed.push(vec![row(3)]);
        let fed = feed.take(2);
        assert_eq!(fed.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [2, 1]);
        assert!(!fed.overflowed);

        feed.push((10..10 + OUTBOX_FEED_CAPACITY as i64).map(row).collect());
        let fed = feed.take(usize::MAX);
        assert!(
            fed.rows.is_empty(),
            "an overflow drops everything held: {:?}",
            fed.rows.len()
        );
        assert!(fed.overflowed, "and says so once");
        assert!(!feed.take(1).overflowed);
    }
}
