//! The config center: the dynamic configuration (tiers, limits, rules) as numbered,
//! append-only versions in the `config_versions` table.
//!
//! The flow of a change:
//! 1. [`ConfigCenter::propose`] validates the document with [`DynamicConfig::parse`]; a
//!    refused document returns [`CenterError::Invalid`] naming the JSON path and the reason,
//!    and nothing is written.
//! 2. The canonical form ([`DynamicConfig::to_document`]) is stored as `latest + 1`
//!    together with a `config.changed` event in the outbox, in one transaction
//!    ([`Store::commit_turn`]); the running node's relay publishes it with confirms, and
//!    every node applies the new version. Nodes that missed the event catch up by polling
//!    [`ConfigCenter::latest_version`].
//! 3. Two proposers racing for the same number: the insert ignores a conflict on the
//!    primary key, the loser sees zero rows, rolls back (its outbox row with it) and retries
//!    with the next number, so both changes land with distinct versions. After
//!    [`MAX_ATTEMPTS`] lost races it gives up with [`CenterError::Conflict`].
//!
//! A rollback is a new version whose document equals an older one's, with `rollback_of`
//! set: history is never rewritten. Version 0 is the built-in document
//! ([`DynamicConfig::builtin`]); it is never stored, but [`ConfigCenter::diff`] and
//! [`ConfigCenter::rollback`] accept it.
//!
//! [`ConfigCenter::dry_run`] only reads: it evaluates a proposed document against every
//! stored user snapshot and reports, per rule, how many users it would newly unlock.
//!
//! The code is in three rooms: `store` holds the versions (append, history, rollback and
//! the race for a number), `diff` compares two documents, and `dry_run` evaluates a
//! proposed one against the stored users.

mod diff;
mod dry_run;
mod store;

use std::time::Duration;

use chrono::{DateTime, Utc};
use merit_config::rules::RuleError;
use merit_messages::Backoff;
use merit_storage::{StorageError, Store};
use serde::Serialize;

pub use diff::{Change, ConfigDiff, Entry, LimitChange, SectionDiff};
pub use dry_run::{DryRunReport, RuleDryRun};

/// The `source` of the `config.changed` envelopes the center emits, and its inbox consumer.
pub const SOURCE: &str = "config-center";
/// Longest author name, in characters.
pub const MAX_AUTHOR_CHARS: usize = 100;
/// Longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Most history rows one call returns.
pub const MAX_HISTORY_PAGE: u64 = 1_000;
/// User snapshots read per query during a dry run.
pub const DRY_RUN_PAGE: u64 = 1_000;
/// Sample addresses kept per rule in a dry run.
pub const DRY_RUN_SAMPLES: usize = 10;
/// How many times a proposal retries after losing the race for a version number.
pub const MAX_ATTEMPTS: u32 = 32;
/// The wait after losing that race: short, and fully jittered so that the writers that
/// raced spread out.
const VERSION_RACE: Backoff =
    Backoff::exponential(Duration::from_millis(5), Duration::from_millis(100)).with_jitter(1.0);

/// Why the config center refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum CenterError {
    /// The document is not a valid dynamic configuration; nothing was written.
    #[error("invalid config document: {0}")]
    Invalid(#[from] RuleError),
    /// No such stored version.
    #[error("config version {0} does not exist")]
    NotFound(u64),
    /// Other writers kept taking the next version number; nothing was written.
    #[error(
        "config version conflict: other changes took the next version {MAX_ATTEMPTS} times \
         in a row; nothing was written, try again"
    )]
    Conflict,
    /// An argument (author, reason, ...) is out of bounds; the message names it.
    #[error("{0}")]
    BadInput(String),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Result alias for the config center.
pub type Result<T> = std::result::Result<T, CenterError>;

/// One stored version, without its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    /// The version number (1, 2, ...).
    pub version: u64,
    /// Who made the change.
    pub author: String,
    /// Why.
    pub reason: String,
    /// When a rollback, the version it restored.
    pub rollback_of: Option<u64>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// One page of history, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryPage {
    /// Number of stored versions in all.
    pub total: u64,
    /// The versions of this page, newest first.
    pub versions: Vec<VersionInfo>,
}

/// The dynamic config store: versions, history, diff, rollback and dry runs. Cheap to
/// clone (it holds a [`Store`]).
#[derive(Debug, Clone)]
pub struct ConfigCenter {
    store: Store,
}
impl ConfigCenter {
    /// A config center on `store` (migrated).
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}
