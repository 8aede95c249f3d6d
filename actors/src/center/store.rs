//! The versions: numbered, append-only rows of `config_versions`, each stored with its
//! `config.changed` in one transaction; history, rollback and the race for a number.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use chrono::{DateTime, SubsecRound, Utc};
use merit_config::{
    rules::{RuleError, MAX_DOCUMENT_BYTES},
    DynamicConfig,
};
use merit_messages::{ConfigChanged, Envelope, EventId};
use merit_storage::{
    column::{to_i64, to_u64},
    entities::config_version,
    sea_orm::{
        sea_query::OnConflict, ActiveValue::Set, ColumnTrait, DbErr, EntityTrait, PaginatorTrait,
        QueryOrder, QuerySelect, SqlErr,
    },
    OutboxMessage, StorageError, Turn, TurnOutcome,
};
use serde_json::Value;

use super::{
    CenterError, ConfigCenter, HistoryPage, Result, VersionInfo, MAX_ATTEMPTS, MAX_AUTHOR_CHARS,
    MAX_HISTORY_PAGE, MAX_REASON_CHARS, SOURCE, VERSION_RACE,
};

impl ConfigCenter {
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

    /// The configuration of a stored version, or the built-in one for 0.
    pub(super) async fn config_at(&self, version: u64) -> Result<DynamicConfig> {
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
        rollback_of: Set(info.rollback_of.map(to_i64)),
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

pub(super) fn validate(document: &[u8]) -> Result<DynamicConfig> {
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
    let bytes = serde_json::to_vec(&row.document).map_err(|e| corrupt(version, e))?;
    let config = DynamicConfig::parse(&bytes, version).map_err(|e| corrupt(version, e))?;
    let info = VersionInfo {
        version,
        author: row.author.clone(),
        reason: row.reason.clone(),
        rollback_of: row.rollback_of.map(to_u64),
        created_at: row.created_at,
    };
    Ok((info, config))
}

/// A stored version that cannot be read back, keeping the error that said why.
fn corrupt(version: u64, source: impl Into<merit_storage::Cause>) -> CenterError {
    CenterError::Storage(StorageError::corrupt(
        format!("config version {version}"),
        source,
    ))
}

/// A history row: version, author, reason, rollback_of, created_at.
type HistoryRow = (i64, String, String, Option<i64>, DateTime<Utc>);

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_corrupt_stored_version_keeps_the_parse_error_as_its_source() {
        use std::error::Error as _;
        let row = config_version::Model {
            version: 7,
            document: serde_json::json!({"tiers": "not a list"}),
            author: "ops".into(),
            reason: "why".into(),
            rollback_of: None,
            created_at: Utc::now(),
        };
        let e = decode(&row).expect_err("corrupt");
        let text = e.to_string();
        assert!(text.contains("corrupt config version 7: "), "{text}");
        assert!(
            matches!(&e, CenterError::Storage(s) if s.is_corrupt()),
            "{e:?}"
        );
        // The storage error is transparent: its source is the center error's.
        let rule = e.source().expect("the parse error");
        let rule = rule.downcast_ref::<RuleError>().expect("a rule error");
        assert!(text.ends_with(&rule.to_string()), "{text}");
    }
}
