//! User notifications: what a user's clients are told, as the UserActor records it.
//!
//! The UserActor is the one place every user-facing event passes through in order, so it
//! numbers them: each notification gets the next `seq` of the user's log and is written to
//! `notifications` in the turn's transaction (exactly once, by the inbox and the version
//! check). After the commit it is handed to the node's [`Notifier`] for live delivery;
//! that hand-off is best effort — a client that misses it (a crash between commit and
//! hand-off, a dropped fan-out message) reads it from the log by `seq`.

use std::{fmt, sync::Arc};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One entry of a user's notification log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNotification {
    /// Lowercase 0x address.
    pub user: String,
    /// Position in the user's log, from 1, without gaps.
    pub seq: u64,
    /// The event reported.
    pub event_id: Uuid,
    /// The event type (`achievement.unlocked`, `governance.vote.recorded`, …).
    pub kind: String,
    /// The event's payload.
    pub payload: serde_json::Value,
    /// When the event occurred.
    pub at: DateTime<Utc>,
}

/// Live delivery of committed notifications (the API's WebSocket hub). Must not block:
/// it runs on the actor's turn.
pub trait Notifier: Send + Sync + fmt::Debug + 'static {
    /// Delivers committed notifications, in `seq` order per user.
    fn notify(&self, notifications: &[UserNotification]);
}

/// No live delivery (a node without the API, tests): the log alone.
#[derive(Debug, Default)]
pub struct LogOnly;

impl Notifier for LogOnly {
    fn notify(&self, _: &[UserNotification]) {}
}

/// The default notifier.
pub(crate) fn log_only() -> Arc<dyn Notifier> {
    Arc::new(LogOnly)
}
