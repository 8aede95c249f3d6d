//! The outbox relay: publishes committed outbox rows, oldest first, with publisher
//! confirms, and marks them published only after the broker confirmed them. A crash
//! between the two republishes the rows: delivery is at least once, and receivers'
//! inboxes absorb the duplicates. With several nodes on one database every relay may
//! publish a row; the same inboxes make that safe.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bytes::Bytes;
use merit_mailbox::{Outgoing, Transport};
use merit_storage::{OutboxRow, Store};
use tokio::sync::watch;

use crate::error::Result;

/// How many rows one publish batch carries.
pub const RELAY_BATCH: u64 = 500;

/// Relays until shutdown; an error ends the run so the supervisor restarts it.
pub(crate) async fn run_relay(
    store: Store,
    transport: Arc<dyn Transport>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let signal = store.outbox_signal();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let rows = store.pending_outbox(0, RELAY_BATCH).await?;
        if rows.is_empty() {
            tokio::select! {
                _ = signal.notified() => {}
                // Rows committed by another process sharing the database.
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = shutdown.changed() => return Ok(()),
            }
            continue;
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        for row in &rows {
            *by_type.entry(row.routing_key.clone()).or_default() += 1;
        }
        transport
            .publish(rows.into_iter().map(outgoing).collect())
            .await?;
        for (event_type, n) in by_type {
            metrics::counter!("merit_events_out_total", "type" => event_type).increment(n);
        }
        store.mark_published(&ids).await?;
        tracing::debug!(published = ids.len(), "outbox relayed");
    }
}

fn outgoing(row: OutboxRow) -> Outgoing {
    let headers: BTreeMap<String, String> = row
        .headers
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Outgoing {
        routing_key: row.routing_key,
        body: Bytes::from(row.payload.into_bytes()),
        message_id: row.event_id,
        correlation_id: None,
        headers,
        // Everything in the outbox is merit's: it goes through merit's own door.
        origin: merit_messages::Origin::Merit,
    }
}
