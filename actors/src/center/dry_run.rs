//! The dry run: a proposed document evaluated against every stored user snapshot, counting
//! per rule the users it would newly unlock. Reads only.

use std::fmt;

use chrono::{DateTime, Utc};
use merit_config::rules::{would_unlock, RuleFacts, UnlockLedger};
use merit_messages::{ActorKind, RuleId, TierId};
use merit_storage::{
    entities::actor,
    sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect},
    StorageError,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{store::validate, ConfigCenter, Result, DRY_RUN_PAGE, DRY_RUN_SAMPLES};

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

impl ConfigCenter {
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
}
