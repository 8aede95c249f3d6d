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

use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use chrono::{DateTime, SubsecRound, Utc};
use merit_config::{
    rules::{would_unlock, RuleError, RuleFacts, UnlockLedger, MAX_DOCUMENT_BYTES},
    DynamicConfig,
};
use merit_messages::{ActorKind, Backoff, ConfigChanged, Envelope, EventId, RuleId, TierId};
use merit_storage::{
    entities::{actor, config_version},
    sea_orm::{
        sea_query::Expr, sea_query::OnConflict, ActiveValue::Set, ColumnTrait, DbErr, EntityTrait,
        PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr,
    },
    OutboxMessage, StorageError, Store, Turn, TurnOutcome,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// What differs in one keyed section (tiers by id, rules by id) between two versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SectionDiff<K> {
    /// Present only in the newer version, with their canonical JSON.
    pub added: Vec<Entry<K>>,
    /// Present only in the older version, with their canonical JSON.
    pub removed: Vec<Entry<K>>,
    /// Present in both with a different canonical JSON.
    pub changed: Vec<Change<K>>,
}

impl<K> Default for SectionDiff<K> {
    fn default() -> Self {
        Self {
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
        }
    }
}

impl<K> SectionDiff<K> {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// An entry added or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry<K> {
    /// Its id.
    pub id: K,
    /// Its canonical JSON.
    pub value: Value,
}

/// An entry present in both versions with different contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change<K> {
    /// Its id.
    pub id: K,
    /// Canonical JSON in the older version.
    pub before: Value,
    /// Canonical JSON in the newer version.
    pub after: Value,
}

/// One limit whose value differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitChange {
    /// The field under `limits`.
    pub field: &'static str,
    /// Value in the older version.
    pub before: u32,
    /// Value in the newer version.
    pub after: u32,
}

/// The differences between two versions `from` → `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigDiff {
    /// The version compared from.
    pub from: u64,
    /// The version compared to.
    pub to: u64,
    /// Tiers by id.
    pub tiers: SectionDiff<TierId>,
    /// Limits that changed.
    pub limits: Vec<LimitChange>,
    /// Rules by id.
    pub rules: SectionDiff<RuleId>,
    /// Whether the rules both versions share are listed in a different order (the order
    /// in which unlocks are reported).
    pub rules_reordered: bool,
}

impl ConfigDiff {
    /// Compares two configurations (`from` → `to`).
    pub fn between(from: &DynamicConfig, to: &DynamicConfig) -> Self {
        let tiers = section(
            from.tiers.iter().map(|(id, t)| (id.clone(), json(t))),
            to.tiers.iter().map(|(id, t)| (id.clone(), json(t))),
        );
        let mut limits = Vec::new();
        let (a, b) = (from.limits, to.limits);
        for (field, before, after) in [
            (
                "max_multiplier_bps",
                a.max_multiplier_bps,
                b.max_multiplier_bps,
            ),
            (
                "max_boosting_nfts",
                a.max_boosting_nfts,
                b.max_boosting_nfts,
            ),
        ] {
            if before != after {
                limits.push(LimitChange {
                    field,
                    before,
                    after,
                });
            }
        }
        let rules = section(
            from.rules.rules.iter().map(|r| (r.id.clone(), json(r))),
            to.rules.rules.iter().map(|r| (r.id.clone(), json(r))),
        );
        let shared = |of: &DynamicConfig, other: &DynamicConfig| -> Vec<RuleId> {
            of.rules
                .rules
                .iter()
                .filter(|r| other.rules.get(&r.id).is_some())
                .map(|r| r.id.clone())
                .collect()
        };
        let rules_reordered = shared(from, to) != shared(to, from);
        Self {
            from: from.version,
            to: to.version,
            tiers,
            limits,
            rules,
            rules_reordered,
        }
    }

    /// Whether the two versions are equal.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
            && self.limits.is_empty()
            && self.rules.is_empty()
            && !self.rules_reordered
    }
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("config values are plain data and always serialise")
}

fn section<K: Ord + Clone>(
    before: impl Iterator<Item = (K, Value)>,
    after: impl Iterator<Item = (K, Value)>,
) -> SectionDiff<K> {
    let before: BTreeMap<K, Value> = before.collect();
    let after: BTreeMap<K, Value> = after.collect();
    let mut diff = SectionDiff::default();
    for (id, old) in &before {
        match after.get(id) {
            None => diff.removed.push(Entry {
                id: id.clone(),
                value: old.clone(),
            }),
            Some(new) if new != old => diff.changed.push(Change {
                id: id.clone(),
                before: old.clone(),
                after: new.clone(),
            }),
            Some(_) => {}
        }
    }
    for (id, new) in after {
        if !before.contains_key(&id) {
            diff.added.push(Entry { id, value: new });
        }
    }
    diff
}

impl fmt::Display for ConfigDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "diff of config version {} -> {}", self.from, self.to)?;
        if self.is_empty() {
            return writeln!(f, "  (identical)");
        }
        write_section(f, "tier", &self.tiers)?;
        for l in &self.limits {
            writeln!(f, "~ limits.{}: {} -> {}", l.field, l.before, l.after)?;
        }
        write_section(f, "rule", &self.rules)?;
        if self.rules_reordered {
            writeln!(
                f,
                "~ rule order changed (unlocks are reported in rule order)"
            )?;
        }
        Ok(())
    }
}

fn write_section<K: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    diff: &SectionDiff<K>,
) -> fmt::Result {
    for e in &diff.added {
        writeln!(f, "+ {what} {}: {}", e.id, e.value)?;
    }
    for e in &diff.removed {
        writeln!(f, "- {what} {}: {}", e.id, e.value)?;
    }
    for c in &diff.changed {
        writeln!(f, "~ {what} {}", c.id)?;
        writeln!(f, "    before: {}", c.before)?;
        writeln!(f, "    after:  {}", c.after)?;
    }
    Ok(())
}

/// What a dry run found for one rule of the proposed document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleDryRun {
    /// The rule.
    pub rule: RuleId,
    /// The tier it mints.
    pub tier: TierId,
    /// Its title.
    pub title: String,
    /// Users whose condition holds now and who never unlocked this rule id: activating the
    /// document would unlock it for them on their next evaluated event.
    pub would_newly_unlock: u64,
    /// Users whose condition holds but who already unlocked this rule id (not counted
    /// above: the ledger keeps them from unlocking it again).
    pub already_unlocked: u64,
    /// Up to [`DRY_RUN_SAMPLES`] addresses among `would_newly_unlock`, in address order.
    pub samples: Vec<String>,
}

/// The result of evaluating a proposed document against stored user history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DryRunReport {
    /// The evaluation time used for windowed conditions.
    pub evaluated_at: DateTime<Utc>,
    /// The active version when the run started (what the proposal would replace).
    pub current_version: u64,
    /// User snapshots evaluated.
    pub users_scanned: u64,
    /// User snapshots that could not be read as rule facts (skipped, not counted).
    pub users_unreadable: u64,
    /// Per rule of the proposed document, in document order.
    pub rules: Vec<RuleDryRun>,
}

impl fmt::Display for DryRunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "dry run against version {} at {}: {} users scanned{}",
            self.current_version,
            self.evaluated_at.to_rfc3339(),
            self.users_scanned,
            if self.users_unreadable > 0 {
                format!(", {} unreadable snapshots skipped", self.users_unreadable)
            } else {
                String::new()
            }
        )?;
        for r in &self.rules {
            writeln!(
                f,
                "  {:<24} would newly unlock {:>6} users (already unlocked: {}){}",
                r.rule.to_string(),
                r.would_newly_unlock,
                r.already_unlocked,
                if r.samples.is_empty() {
                    String::new()
                } else {
                    format!(" e.g. {}", r.samples.join(", "))
                }
            )?;
        }
        Ok(())
    }
}

/// What a dry run reads of a user snapshot: only the rule facts and the unlock ledger, so
/// it keeps working whatever else the UserActor's state holds.
#[derive(Deserialize)]
struct UserRuleView {
    #[serde(default)]
    facts: RuleFacts,
    #[serde(default)]
    ledger: UnlockLedger,
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

    /// The latest stored version, or 0 when none is stored. One indexed query: nodes poll
    /// it to catch a `config.changed` they missed.
    pub async fn latest_version(&self) -> Result<u64> {
        let latest: Option<Option<i64>> = config_version::Entity::find()
            .select_only()
            .column_as(config_version::Column::Version.max(), "latest")
            .into_tuple()
            .one(self.store.db())
            .await
            .map_err(StorageError::from)?;
        Ok(latest.flatten().map_or(0, to_u64))
    }

    /// The active configuration: the latest stored version, or the built-in one (version
    /// 0) when none is stored.
    pub async fn current(&self) -> Result<DynamicConfig> {
        let row = config_version::Entity::find()
            .order_by_desc(config_version::Column::Version)
            .one(self.store.db())
            .await
            .map_err(StorageError::from)?;
        match row {
            None => Ok(DynamicConfig::builtin()),
            Some(row) => Ok(decode(&row)?.1),
        }
    }

    /// Stored versions, newest first: `limit` (at most [`MAX_HISTORY_PAGE`]) after
    /// skipping `offset`, with the total count.
    pub async fn history(&self, offset: u64, limit: u64) -> Result<HistoryPage> {
        let db = self.store.db();
        let total = config_version::Entity::find()
            .count(db)
            .await
            .map_err(StorageError::from)?;
        let rows: Vec<HistoryRow> = config_version::Entity::find()
            .select_only()
            .columns([
                config_version::Column::Version,
                config_version::Column::Author,
                config_version::Column::Reason,
                config_version::Column::RollbackOf,
                config_version::Column::CreatedAt,
            ])
            .order_by_desc(config_version::Column::Version)
            .offset(offset)
            .limit(limit.min(MAX_HISTORY_PAGE))
            .into_tuple()
            .all(db)
            .await
            .map_err(StorageError::from)?;
        let versions = rows
            .into_iter()
            .map(
                |(version, author, reason, rollback_of, created_at)| VersionInfo {
                    version: to_u64(version),
                    author,
                    reason,
                    rollback_of: rollback_of.map(to_u64),
                    created_at,
                },
            )
            .collect();
        Ok(HistoryPage { total, versions })
    }

    /// One stored version with its configuration; `None` when it was never stored
    /// (including version 0, the built-in document, which is not a stored version).
    pub async fn get(&self, version: u64) -> Result<Option<(VersionInfo, DynamicConfig)>> {
        let Ok(id) = i64::try_from(version) else {
            return Ok(None);
        };
        let row = config_version::Entity::find_by_id(id)
            .one(self.store.db())
            .await
            .map_err(StorageError::from)?;
        row.as_ref().map(decode).transpose()
    }

    /// Validates `document` and stores it as the next version, with a `config.changed`
    /// event in the same transaction. A refused document writes nothing.
    #[tracing::instrument(skip(self, document, reason), fields(bytes = document.len()))]
    pub async fn propose(
        &self,
        document: &[u8],
        author: &str,
        reason: &str,
    ) -> Result<VersionInfo> {
        check_author_reason(author, reason)?;
        let config = validate(document)?;
        self.append(config.to_document(), author, reason, None)
            .await
    }

    /// Stores a new version whose document equals `to_version`'s (0: the built-in one),
    /// recording `rollback_of = to_version`.
    #[tracing::instrument(skip(self, reason))]
    pub async fn rollback(
        &self,
        to_version: u64,
        author: &str,
        reason: &str,
    ) -> Result<VersionInfo> {
        check_author_reason(author, reason)?;
        let config = self.config_at(to_version).await?;
        self.append(config.to_document(), author, reason, Some(to_version))
            .await
    }

    /// The differences from version `a` to version `b` (0: the built-in document).
    pub async fn diff(&self, a: u64, b: u64) -> Result<ConfigDiff> {
        let from = self.config_at(a).await?;
        let to = self.config_at(b).await?;
        Ok(ConfigDiff::between(&from, &to))
    }

    /// Evaluates every rule of the proposed `document` against every stored user snapshot
    /// at time `now`, and counts per rule the users it would newly unlock: its condition
    /// holds and their ledger has no occurrence of the rule id. Writes nothing.
    ///
    /// Snapshots are read in pages of [`DRY_RUN_PAGE`] by address, outside a transaction:
    /// users changing during the scan are seen in whichever state each page reads.
    #[tracing::instrument(skip(self, document), fields(bytes = document.len()))]
    pub async fn dry_run(&self, document: &[u8], now: DateTime<Utc>) -> Result<DryRunReport> {
        let config = validate(document)?;
        let current_version = self.latest_version().await?;
        let mut rules: Vec<RuleDryRun> = config
            .rules
            .rules
            .iter()
            .map(|r| RuleDryRun {
                rule: r.id.clone(),
                tier: r.tier.clone(),
                title: r.title.clone(),
                would_newly_unlock: 0,
                already_unlocked: 0,
                samples: Vec::new(),
            })
            .collect();
        let (mut users_scanned, mut users_unreadable) = (0u64, 0u64);
        let mut after: Option<String> = None;
        loop {
            let mut query = actor::Entity::find()
                .select_only()
                .columns([actor::Column::Key, actor::Column::State])
                .filter(actor::Column::Kind.eq(ActorKind::User.as_str()));
            if let Some(last) = &after {
                query = query.filter(Expr::col(actor::Column::Key).gt(last.as_str()));
            }
            let page: Vec<(String, Value)> = query
                .order_by_asc(actor::Column::Key)
                .limit(DRY_RUN_PAGE)
                .into_tuple()
                .all(self.store.db())
                .await
                .map_err(StorageError::from)?;
            let full = page.len() as u64 == DRY_RUN_PAGE;
            for (key, state) in page {
                match serde_json::from_value::<UserRuleView>(state) {
                    Err(e) => {
                        users_unreadable += 1;
                        tracing::warn!(user = %key, error = %e, "dry run skips an unreadable user snapshot");
                    }
                    Ok(view) => {
                        users_scanned += 1;
                        for (rule, report) in config.rules.rules.iter().zip(rules.iter_mut()) {
                            if !would_unlock(rule, &view.facts, now) {
                                continue;
                            }
                            if view.ledger.occurrences(&rule.id) > 0 {
                                report.already_unlocked += 1;
                            } else {
                                report.would_newly_unlock += 1;
                                if report.samples.len() < DRY_RUN_SAMPLES {
                                    report.samples.push(key.clone());
                                }
                            }
                        }
                    }
                }
                after = Some(key);
            }
            if !full {
                break;
            }
        }
        Ok(DryRunReport {
            evaluated_at: now,
            current_version,
            users_scanned,
            users_unreadable,
            rules,
        })
    }

    /// The configuration of a stored version, or the built-in one for 0.
    async fn config_at(&self, version: u64) -> Result<DynamicConfig> {
        if version == 0 {
            return Ok(DynamicConfig::builtin());
        }
        self.get(version)
            .await?
            .map(|(_, config)| config)
            .ok_or(CenterError::NotFound(version))
    }

    /// Stores `document` (already validated and canonical) as the next version with its
    /// `config.changed`, retrying when a concurrent writer took the number.
    async fn append(
        &self,
        document: Value,
        author: &str,
        reason: &str,
        rollback_of: Option<u64>,
    ) -> Result<VersionInfo> {
        for attempt in 1..=MAX_ATTEMPTS {
            let latest = self.latest_version().await?;
            let info = VersionInfo {
                version: latest + 1,
                author: author.to_string(),
                reason: reason.to_string(),
                rollback_of,
                // Microseconds: what PostgreSQL keeps, so the returned info equals the row.
                created_at: Utc::now().trunc_subsecs(6),
            };
            if self
                .insert_version(&info, latest, &document, attempt)
                .await?
            {
                tracing::info!(
                    version = info.version,
                    ?rollback_of,
                    author,
                    "config version stored"
                );
                return Ok(info);
            }
            tokio::time::sleep(VERSION_RACE.delay(attempt)).await;
        }
        Err(CenterError::Conflict)
    }

    /// One try at storing `info` as the version after `latest`, in one turn with its
    /// `config.changed`: `false` when the number was taken and a new try may win.
    async fn insert_version(
        &self,
        info: &VersionInfo,
        latest: u64,
        document: &Value,
        attempt: u32,
    ) -> Result<bool> {
        let version = info.version;
        let row = version_row(info, document)?;
        let taken = Arc::new(AtomicBool::new(false));
        let flag = taken.clone();
        let outcome = self
            .store
            .commit_turn(change_turn(info, latest), move |txn| {
                Box::pin(async move {
                    let inserted = config_version::Entity::insert(row)
                        .on_conflict(
                            OnConflict::column(config_version::Column::Version)
                                .do_nothing()
                                .to_owned(),
                        )
                        .exec_without_returning(txn)
                        .await?;
                    if inserted == 0 {
                        // Another writer committed this version first: roll back the
                        // whole turn (the outbox row too) and let the caller retry.
                        flag.store(true, Ordering::SeqCst);
                        return Err(StorageError::Db(DbErr::RecordNotInserted));
                    }
                    Ok(())
                })
            })
            .await;
        match outcome {
            Ok(TurnOutcome::Applied { .. }) => Ok(true),
            Ok(TurnOutcome::Duplicate) => {
                // A fresh random event id was already in the inbox: impossible short
                // of a uuid collision; a new attempt draws a new id.
                tracing::warn!(version, attempt, "config change event id reused; retrying");
                Ok(false)
            }
            Err(_) if taken.load(Ordering::SeqCst) => {
                tracing::info!(
                    version,
                    attempt,
                    "config version taken by another writer; retrying"
                );
                Ok(false)
            }
            Err(e) if is_unique_violation(&e) => {
                tracing::info!(version, attempt, error = %e, "config version insert conflicted; retrying");
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The `config_versions` row of `info`.
fn version_row(info: &VersionInfo, document: &Value) -> Result<config_version::ActiveModel> {
    let version = info.version;
    let row_version = i64::try_from(version)
        .map_err(|_| CenterError::BadInput(format!("version {version} overflows")))?;
    Ok(config_version::ActiveModel {
        version: Set(row_version),
        document: Set(document.clone()),
        author: Set(info.author.clone()),
        reason: Set(info.reason.clone()),
        rollback_of: Set(info.rollback_of.and_then(|v| i64::try_from(v).ok())),
        created_at: Set(info.created_at),
    })
}

/// The turn that stores a version: its `config.changed` in the outbox, under a fresh
/// event id (each attempt is a new change, never a redelivery of an earlier one).
fn change_turn(info: &VersionInfo, latest: u64) -> Turn {
    let envelope = Envelope::with_id(
        EventId::new_random(),
        SOURCE,
        info.created_at,
        ConfigChanged {
            version: info.version,
            previous: (latest > 0).then_some(latest),
            rollback_of: info.rollback_of,
            author: info.author.clone(),
            reason: info.reason.clone(),
        },
    );
    Turn {
        consumer: SOURCE.to_string(),
        event_id: envelope.id,
        batched: Vec::new(),
        state: None,
        outbox: vec![OutboxMessage::from_envelope(&envelope)],
    }
}

/// A unique violation a concurrent writer could still cause despite `ON CONFLICT DO
/// NOTHING` (a backend that checks the key at commit rather than at insert).
fn is_unique_violation(e: &StorageError) -> bool {
    matches!(e, StorageError::Db(db) if matches!(db.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))))
}

fn validate(document: &[u8]) -> Result<DynamicConfig> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(CenterError::Invalid(RuleError::new(
            "$",
            format!(
                "document is {} bytes: at most {MAX_DOCUMENT_BYTES} allowed",
                document.len()
            ),
        )));
    }
    Ok(DynamicConfig::parse(document, 0)?)
}

fn check_author_reason(author: &str, reason: &str) -> Result<()> {
    let n = author.chars().count();
    if author.trim().is_empty() || n > MAX_AUTHOR_CHARS {
        return Err(CenterError::BadInput(format!(
            "author: {n} characters{}: expected 1..={MAX_AUTHOR_CHARS}, not blank",
            if author.trim().is_empty() && n > 0 {
                " of whitespace"
            } else {
                ""
            }
        )));
    }
    let n = reason.chars().count();
    if reason.trim().is_empty() || n > MAX_REASON_CHARS {
        return Err(CenterError::BadInput(format!(
            "reason: {n} characters{}: expected 1..={MAX_REASON_CHARS}, not blank",
            if reason.trim().is_empty() && n > 0 {
                " of whitespace"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

fn decode(row: &config_version::Model) -> Result<(VersionInfo, DynamicConfig)> {
    let version = to_u64(row.version);
    let bytes = serde_json::to_vec(&row.document).map_err(|e| corrupt(version, e.to_string()))?;
    let config =
        DynamicConfig::parse(&bytes, version).map_err(|e| corrupt(version, e.to_string()))?;
    let info = VersionInfo {
        version,
        author: row.author.clone(),
        reason: row.reason.clone(),
        rollback_of: row.rollback_of.map(to_u64),
        created_at: row.created_at,
    };
    Ok((info, config))
}

fn corrupt(version: u64, reason: String) -> CenterError {
    CenterError::Storage(StorageError::Corrupt {
        what: format!("config version {version}"),
        reason,
    })
}

/// A history row: version, author, reason, rollback_of, created_at.
type HistoryRow = (i64, String, String, Option<i64>, DateTime<Utc>);

/// Stored versions are written from `u64`s and are never negative.
fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
        "tiers": { "bronze": { "title": "Bronze", "bonus_bps": 1000 },
                   "gold": { "title": "Gold", "bonus_bps": 5000 } },
        "limits": { "max_multiplier_bps": 15000, "max_boosting_nfts": 2 },
        "rules": [
          { "id": "a", "tier": "bronze", "title": "A",
            "when": { "count": { "activity": "proposal_created", "at_least": 1 } } },
          { "id": "b", "tier": "gold", "title": "B",
            "when": { "count": { "activity": "vote_cast", "at_least": 3 } } } ]
    }"#;

    fn parse(doc: &str, version: u64) -> DynamicConfig {
        DynamicConfig::parse(doc.as_bytes(), version).expect("valid")
    }

    #[test]
    fn identical_documents_have_an_empty_diff() {
        let d = ConfigDiff::between(&parse(DOC, 1), &parse(DOC, 2));
        assert!(d.is_empty(), "{d}");
        assert!(d.to_string().contains("identical"));
    }

    #[test]
    fn diff_names_each_added_removed_and_changed_entry() {
        let next = DOC
            .replace(r#""at_least": 3"#, r#""at_least": 5"#)
            .replace(r#""bonus_bps": 5000"#, r#""bonus_bps": 6000"#)
            .replace(r#""max_boosting_nfts": 2"#, r#""max_boosting_nfts": 3"#)
            .replace(r#""id": "a""#, r#""id": "c""#);
        let d = ConfigDiff::between(&parse(DOC, 1), &parse(&next, 2));
        let ids = |v: &[Entry<RuleId>]| v.iter().map(|e| e.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&d.rules.added), ["c"]);
        assert_eq!(ids(&d.rules.removed), ["a"]);
        assert_eq!(d.rules.changed.len(), 1);
        assert_eq!(d.rules.changed[0].id.to_string(), "b");
        assert_eq!(d.tiers.changed.len(), 1);
        assert_eq!(d.tiers.changed[0].id.to_string(), "gold");
        assert_eq!(d.limits.len(), 1);
        assert_eq!(d.limits[0].field, "max_boosting_nfts");
        let text = d.to_string();
        for needle in [
            "+ rule c",
            "- rule a",
            "~ rule b",
            "~ tier gold",
            "~ limits.max_boosting_nfts: 2 -> 3",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
    }

    #[test]
    fn reordering_rules_is_reported() {
        let swapped = r#"{
        "tiers": { "bronze": { "title": "Bronze", "bonus_bps": 1000 },
                   "gold": { "title": "Gold", "bonus_bps": 5000 } },
        "limits": { "max_multiplier_bps": 15000, "max_boosting_nfts": 2 },
        "rules": [
          { "id": "b", "tier": "gold", "title": "B",
            "when": { "count": { "activity": "vote_cast", "at_least": 3 } } },
          { "id": "a", "tier": "bronze", "title": "A",
            "when": { "count": { "activity": "proposal_created", "at_least": 1 } } } ]
        }"#;
        let d = ConfigDiff::between(&parse(DOC, 1), &parse(swapped, 2));
        assert!(d.rules.is_empty());
        assert!(d.rules_reordered);
        assert!(!d.is_empty());
    }

    #[test]
    fn author_and_reason_are_bounded() {
        assert!(check_author_reason("ops", "why").is_ok());
        for (author, reason) in [
            ("", "why"),
            ("  ", "why"),
            (&"x".repeat(101)[..], "why"),
            ("ops", ""),
            ("ops", &"y".repeat(501)[..]),
        ] {
            let e = check_author_reason(author, reason).expect_err("refused");
            assert!(matches!(e, CenterError::BadInput(_)), "{e}");
        }
        assert!(check_author_reason(&"x".repeat(100), &"y".repeat(500)).is_ok());
    }
}
