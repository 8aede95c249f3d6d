//! The dynamic configuration: NFT benefit tiers, vote-weight limits and achievement rules,
//! as one JSON document stored in numbered versions (by the config center in
//! `merit-actors`) and applied by every node without a restart. This module is the
//! document alone: parsing, validation and the vote-weight arithmetic, with no storage.
//!
//! ```json
//! { "tiers":  { "bronze": { "title": "Bronze", "bonus_bps": 1000 },
//!               "gold":   { "title": "Gold",   "bonus_bps": 5000 } },
//!   "limits": { "max_multiplier_bps": 30000, "max_boosting_nfts": 5 },
//!   "rules":  [ { "id": "first-proposal", "tier": "bronze", "title": "Created a proposal",
//!                 "when": { "count": { "activity": "proposal_created", "at_least": 1 } } } ] }
//! ```
//!
//! A vote's multiplier is `10000 + Σ bonus_bps` over the voter's boosting NFTs (in basis
//! points, so 10000 = ×1), where the boosting NFTs are the voter's tokens whose tier has a
//! bonus and that have not boosted a vote on the same proposal before, highest bonus
//! first, at most `max_boosting_nfts` of them, and the sum is capped at
//! `max_multiplier_bps`. The rules follow [`crate::rules`].

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use merit_messages::TierId;
use serde::{Deserialize, Serialize};

use crate::rules::{from_serde_error, RuleError, RuleSet};

/// One multiplier unit: 10000 basis points = ×1.
pub const UNIT_BPS: u32 = 10_000;
/// Largest bonus one tier may give (+1000%).
pub const MAX_TIER_BONUS_BPS: u32 = 100_000;
/// Most tiers a document may define.
pub const MAX_TIERS: usize = 64;

/// What holding an NFT of one tier is worth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierBenefit {
    /// Display name.
    pub title: String,
    /// Added to a vote's multiplier per boosting NFT of this tier, in basis points.
    pub bonus_bps: u32,
}

/// Bounds on vote weight and on what a proposal may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Highest multiplier a vote can reach, in basis points (at least 10000).
    pub max_multiplier_bps: u32,
    /// Most NFTs that boost one vote.
    pub max_boosting_nfts: u32,
    /// Smallest quorum a proposal may ask for, in weight units (1000 = one plain vote; at
    /// least 1, so no proposal passes with nobody voting).
    #[serde(default = "default_min_quorum")]
    pub min_quorum: u64,
    /// Shortest voting window (`ends_at - starts_at`), in seconds.
    #[serde(default = "default_min_voting_secs")]
    pub min_voting_secs: u64,
    /// How far in the past `starts_at` may be when the creation is applied, in seconds
    /// (clock skew and queueing). A window already over is refused whatever this is.
    #[serde(default = "default_max_start_skew_secs")]
    pub max_start_skew_secs: u64,
    /// Most proposals one user may create through the API in 24 hours.
    #[serde(default = "default_max_proposals_per_day")]
    pub max_proposals_per_day: u32,
    /// How long after `ends_at` (by merit's clock) a vote stamped inside the window is
    /// still counted, in seconds: votes queued before the end are counted, a producer's
    /// backdated `occurred_at` buys at most this.
    #[serde(default = "default_vote_grace_secs")]
    pub vote_grace_secs: u64,
}

fn default_vote_grace_secs() -> u64 {
    300
}

fn default_min_quorum() -> u64 {
    1
}
fn default_min_voting_secs() -> u64 {
    10
}
fn default_max_start_skew_secs() -> u64 {
    86_400
}
fn default_max_proposals_per_day() -> u32 {
    20
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_multiplier_bps: 3 * UNIT_BPS,
            max_boosting_nfts: 5,
            min_quorum: default_min_quorum(),
            min_voting_secs: default_min_voting_secs(),
            max_start_skew_secs: default_max_start_skew_secs(),
            max_proposals_per_day: default_max_proposals_per_day(),
            vote_grace_secs: default_vote_grace_secs(),
        }
    }
}

impl Limits {
    /// Whether a proposal with this schedule and quorum may be created at `now`; `Err`
    /// names the field and what the limit is. The ProposalActor refuses a creation that
    /// fails this, and the API answers 400 before publishing one.
    pub fn check_proposal(
        &self,
        starts_at: chrono::DateTime<chrono::Utc>,
        ends_at: chrono::DateTime<chrono::Utc>,
        quorum: u64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), (&'static str, String)> {
        if quorum < self.min_quorum {
            return Err((
                "quorum",
                format!("{quorum} is below the minimum quorum {}", self.min_quorum),
            ));
        }
        let window = (ends_at - starts_at).num_seconds();
        if window < i64::try_from(self.min_voting_secs).unwrap_or(i64::MAX) {
            return Err((
                "ends_at",
                format!(
                    "a voting window of {window} s is shorter than the minimum {} s",
                    self.min_voting_secs
                ),
            ));
        }
        if ends_at <= now {
            return Err(("ends_at", "is in the past: the vote would be over".into()));
        }
        let skew = chrono::Duration::try_seconds(
            i64::try_from(self.max_start_skew_secs).unwrap_or(i64::MAX),
        );
        let earliest = skew.and_then(|skew| now.checked_sub_signed(skew));
        if earliest.is_some_and(|earliest| starts_at < earliest) {
            return Err((
                "starts_at",
                format!("is more than {} s in the past", self.max_start_skew_secs),
            ));
        }
        Ok(())
    }
}

/// A validated dynamic configuration document, with the version it was stored as
/// (0: the built-in default, before any version was stored).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DynamicConfig {
    /// The stored version number.
    pub version: u64,
    /// Benefit tiers by id.
    pub tiers: BTreeMap<TierId, TierBenefit>,
    /// Vote-weight limits.
    pub limits: Limits,
    /// Achievement rules.
    pub rules: RuleSet,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireConfig {
    #[serde(default)]
    tiers: BTreeMap<TierId, TierBenefit>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    rules: serde_json::Value,
}

/// The built-in document (`config/dynamic/default.json`): what a node runs before any
/// version is stored, and version 1 of a fresh config center.
pub const DEFAULT_DOCUMENT: &str = include_str!("../dynamic/default.json");

impl DynamicConfig {
    /// The built-in configuration, as version 0.
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_DOCUMENT.as_bytes(), 0)
            .expect("the built-in dynamic config is valid (a unit test checks it)")
    }

    /// Strict parse + validation of a document. The error names the JSON path and the
    /// reason; nothing partial is ever returned.
    pub fn parse(json: &[u8], version: u64) -> Result<Self, RuleError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let wire: WireConfig =
            serde_path_to_error::deserialize(merit_messages::strict::Strict(&mut de))
                .map_err(from_serde_error)?;
        de.end().map_err(|e| {
            RuleError::new("$", format!("trailing data after the document: {e}")).with_source(e)
        })?;
        validate_tiers(&wire.tiers)?;
        validate_limits(&wire.limits)?;
        let known: Vec<TierId> = wire.tiers.keys().cloned().collect();
        let rules = parse_rules(&wire.rules, &known)?;
        Ok(Self {
            version,
            tiers: wire.tiers,
            limits: wire.limits,
            rules,
        })
    }

    /// The canonical document (what [`DynamicConfig::parse`] reads back).
    pub fn to_document(&self) -> serde_json::Value {
        let rules: serde_json::Value =
            serde_json::from_slice(&self.rules.to_json()).unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "tiers": self.tiers,
            "limits": self.limits,
            "rules": rules.get("rules").cloned().unwrap_or_else(|| serde_json::json!([])),
        })
    }

    /// The bonus of `tier` (0 for a tier the config does not define).
    pub fn bonus_bps(&self, tier: &TierId) -> u32 {
        self.tiers.get(tier).map_or(0, |t| t.bonus_bps)
    }

    /// Chooses the boosting NFTs among `candidates` (token, tier) — those with a bonus,
    /// highest bonus first (ties by token id), at most `max_boosting_nfts`, and none once
    /// the multiplier reached `max_multiplier_bps` — and returns them with the multiplier
    /// they give, capped at `max_multiplier_bps`.
    pub fn boost<'a, T: Clone + Ord + 'a>(
        &self,
        candidates: impl IntoIterator<Item = (&'a T, &'a TierId)>,
    ) -> (Vec<(T, TierId, u32)>, u32) {
        let mut scored: Vec<(T, TierId, u32)> = candidates
            .into_iter()
            .map(|(token, tier)| (token.clone(), tier.clone(), self.bonus_bps(tier)))
            .filter(|(_, _, bonus)| *bonus > 0)
            .collect();
        scored.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        scored.truncate(self.limits.max_boosting_nfts as usize);
        // Only tokens that add weight boost: once the cap is reached the rest are left
        // out, so they stay free to boost another vote on the same proposal.
        let cap = self.limits.max_multiplier_bps;
        let mut multiplier = UNIT_BPS;
        let mut chosen = Vec::with_capacity(scored.len());
        for token in scored {
            if multiplier >= cap {
                break;
            }
            multiplier = multiplier.saturating_add(token.2).min(cap);
            chosen.push(token);
        }
        (chosen, multiplier)
    }
}

/// Checks the tiers: how many, and each one's title and bonus.
fn validate_tiers(tiers: &BTreeMap<TierId, TierBenefit>) -> Result<(), RuleError> {
    if tiers.len() > MAX_TIERS {
        return Err(RuleError::new(
            "tiers",
            format!("{} tiers: at most {MAX_TIERS} allowed", tiers.len()),
        ));
    }
    for (id, tier) in tiers {
        let chars = tier.title.chars().count();
        if chars == 0 || chars > 100 {
            return Err(RuleError::new(
                format!("tiers.{id}.title"),
                format!("{chars} characters: expected 1..=100"),
            ));
        }
        if tier.bonus_bps > MAX_TIER_BONUS_BPS {
            return Err(RuleError::new(
                format!("tiers.{id}.bonus_bps"),
                format!(
                    "{} is out of range: at most {MAX_TIER_BONUS_BPS}",
                    tier.bonus_bps
                ),
            ));
        }
    }
    Ok(())
}

/// Checks each limit against its range, in the order of the fields.
fn validate_limits(limits: &Limits) -> Result<(), RuleError> {
    if limits.max_multiplier_bps < UNIT_BPS {
        return Err(RuleError::new(
            "limits.max_multiplier_bps",
            format!(
                "{} is below {UNIT_BPS} (x1): a limit may not shrink a plain vote",
                limits.max_multiplier_bps
            ),
        ));
    }
    if limits.max_boosting_nfts > 1_000 {
        return Err(RuleError::new(
            "limits.max_boosting_nfts",
            format!("{} is out of range: at most 1000", limits.max_boosting_nfts),
        ));
    }
    const YEAR_SECS: u64 = 366 * 86_400;
    for (path, value, min, max) in [
        ("limits.min_quorum", limits.min_quorum, 1, u64::MAX),
        (
            "limits.min_voting_secs",
            limits.min_voting_secs,
            1,
            YEAR_SECS,
        ),
        (
            "limits.max_start_skew_secs",
            limits.max_start_skew_secs,
            0,
            YEAR_SECS,
        ),
        ("limits.vote_grace_secs", limits.vote_grace_secs, 0, 86_400),
        (
            "limits.max_proposals_per_day",
            u64::from(limits.max_proposals_per_day),
            1,
            1_000_000,
        ),
    ] {
        if value < min || value > max {
            return Err(RuleError::new(
                path,
                format!("{value} is out of range: expected {min}..={max}"),
            ));
        }
    }
    Ok(())
}

/// The achievement rules of the document (none when it has no `rules`), whose tiers must
/// be among `known`.
fn parse_rules(rules: &serde_json::Value, known: &[TierId]) -> Result<RuleSet, RuleError> {
    match rules {
        serde_json::Value::Null => Ok(RuleSet::default()),
        rules => {
            let doc = serde_json::to_vec(&serde_json::json!({ "rules": rules }))
                .map_err(|e| RuleError::new("rules", e.to_string()).with_source(e))?;
            RuleSet::parse(&doc, known)
        }
    }
}

/// The node's active dynamic config, shared by every actor and swapped as a whole when a
/// new version arrives: a turn reads one consistent version (`get` clones an `Arc`).
#[derive(Clone, Debug)]
pub struct ConfigHandle(Arc<RwLock<Arc<DynamicConfig>>>);

impl ConfigHandle {
    /// A handle holding `config`.
    pub fn new(config: DynamicConfig) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(config))))
    }

    /// The active config.
    pub fn get(&self) -> Arc<DynamicConfig> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The active version.
    pub fn version(&self) -> u64 {
        self.get().version
    }

    /// Activates `config` if it is newer than the active one; returns whether it did.
    /// Versions only move forward (a rollback is itself a newer version).
    pub fn update(&self, config: DynamicConfig) -> bool {
        let mut guard = match self.0.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if config.version <= guard.version && guard.version != 0 {
            return false;
        }
        *guard = Arc::new(config);
        true
    }
}

impl Default for ConfigHandle {
    fn default() -> Self {
        Self::new(DynamicConfig::builtin())
    }
}

#[cfg(test)]
mod tests;
