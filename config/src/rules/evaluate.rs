//! Evaluating a rule set against one user's facts: which unlocks are newly due.
//!
//! Each rule has a number of occurrences due for the current facts (0 or 1 for `Once`,
//! `floor(q / n)` for `Every(n)`, see [`Repeat`]). The [`UnlockLedger`] remembers, per rule
//! id, how many occurrences were already unlocked; an evaluation unlocks exactly the
//! occurrences above that mark and raises it. The mark never falls on its own, so:
//! - evaluating again with the same facts unlocks nothing (idempotent);
//! - a `Once` rule unlocks once per user ever, even if its condition turns false and true
//!   again (a windowed count) or the rule is removed and added back;
//! - the result is a function of (rules, facts, ledger, now) only: no clock, no randomness.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use merit_messages::{Address, RuleId, TierId, MERIT_NAMESPACE};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    facts::RuleFacts,
    language::{Condition, Repeat, Rule, RuleSet},
};

/// How many times each rule unlocked for one user, keyed by rule id. Persisted with the
/// user; it grows by one entry per distinct rule id the user ever unlocked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnlockLedger {
    unlocked: BTreeMap<RuleId, u32>,
}

impl UnlockLedger {
    /// How many occurrences of `rule` the user unlocked (0 if never).
    pub fn occurrences(&self, rule: &RuleId) -> u32 {
        self.unlocked.get(rule).copied().unwrap_or(0)
    }

    /// Every rule the user unlocked, with its count, in rule-id order.
    pub fn iter(&self) -> impl Iterator<Item = (&RuleId, u32)> + '_ {
        self.unlocked.iter().map(|(id, n)| (id, *n))
    }

    /// Takes back the latest unlock of `rule` so that a later evaluation may unlock the
    /// same occurrence again (with the same [`achievement_id`]) — for a saga whose mint
    /// failed and released its reservation. Only the latest occurrence can be released;
    /// returns whether `occurrence` was it. An operator's revocation that must not
    /// re-unlock leaves the ledger alone instead.
    pub fn release(&mut self, rule: &RuleId, occurrence: u32) -> bool {
        match self.unlocked.get_mut(rule) {
            Some(n) if *n == occurrence && occurrence > 0 => {
                *n -= 1;
                if *n == 0 {
                    self.unlocked.remove(rule);
                }
                true
            }
            _ => false,
        }
    }
}

/// One newly due unlock: the UserActor turns it into an `achievement.unlocked` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlock {
    /// The rule met.
    pub rule: RuleId,
    /// The tier of the NFT to mint.
    pub tier: TierId,
    /// Which unlock of this rule for this user: 1 for the first.
    pub occurrence: u32,
    /// The version of the rule set it was evaluated under.
    pub rule_version: u64,
}

/// Evaluates every rule; returns the unlocks that are newly due, in rule order and
/// occurrence order, and records them in the ledger.
///
/// Deterministic and idempotent: evaluating again with the same facts unlocks nothing more.
pub fn evaluate(
    rules: &RuleSet,
    rule_version: u64,
    facts: &RuleFacts,
    ledger: &mut UnlockLedger,
    now: DateTime<Utc>,
) -> Vec<Unlock> {
    let mut unlocks = Vec::new();
    for rule in &rules.rules {
        let done = ledger.occurrences(&rule.id);
        let due = due_occurrences(rule, facts, now);
        if due <= done {
            continue;
        }
        unlocks.extend((done + 1..=due).map(|occurrence| Unlock {
            rule: rule.id.clone(),
            tier: rule.tier.clone(),
            occurrence,
            rule_version,
        }));
        ledger.unlocked.insert(rule.id.clone(), due);
    }
    unlocks
}

/// Deterministic achievement id: `uuid5(MERIT_NAMESPACE, "achievement:{user}:{rule}:{occurrence}")`
/// with the user as lowercase `0x`-hex. A redelivered or re-evaluated unlock yields the
/// same id, so every downstream effect (reservation, mint, notification) deduplicates.
pub fn achievement_id(user: &Address, rule: &RuleId, occurrence: u32) -> Uuid {
    let name = format!("achievement:{user}:{rule}:{occurrence}");
    Uuid::new_v5(&MERIT_NAMESPACE, name.as_bytes())
}

/// For dry runs: would this rule unlock (at least once) for these facts, ignoring any
/// ledger?
pub fn would_unlock(rule: &Rule, facts: &RuleFacts, now: DateTime<Utc>) -> bool {
    due_occurrences(rule, facts, now) > 0
}

/// How many occurrences of `rule` the facts justify in all.
fn due_occurrences(rule: &Rule, facts: &RuleFacts, now: DateTime<Utc>) -> u32 {
    let holds = holds(&rule.when, facts, now);
    match (rule.repeat, counted(&rule.when, facts)) {
        (Repeat::Every(n), Some(q)) if n > 0 => {
            if holds {
                u32::try_from(q / u64::from(n)).unwrap_or(u32::MAX)
            } else {
                0
            }
        }
        // `Once`, and the shapes validation refuses for `Every` (evaluation stays total).
        _ => u32::from(holds),
    }
}

/// Whether `condition` holds.
fn holds(condition: &Condition, facts: &RuleFacts, now: DateTime<Utc>) -> bool {
    match condition {
        Condition::Count {
            activity,
            at_least,
            within,
        } => {
            let n = match within {
                Some(window) => facts.count_within(*activity, *window, now),
                None => facts.count(*activity),
            };
            n >= u64::from(*at_least)
        }
        Condition::Streak { at_least } => facts.longest_streak() >= u64::from(*at_least),
        Condition::HeldWhile {
            tier,
            activity,
            at_least,
        } => facts.count_while_holding(tier, *activity) >= u64::from(*at_least),
        Condition::AllOf(all) => all.iter().all(|c| holds(c, facts, now)),
        Condition::AnyOf(any) => any.iter().any(|c| holds(c, facts, now)),
    }
}

/// The never-decreasing quantity a repeating rule measures, for the shapes that have one.
fn counted(condition: &Condition, facts: &RuleFacts) -> Option<u64> {
    match condition {
        Condition::Count {
            activity,
            within: None,
            ..
        } => Some(facts.count(*activity)),
        Condition::Streak { .. } => Some(facts.longest_streak()),
        Condition::HeldWhile { tier, activity, .. } => {
            Some(facts.count_while_holding(tier, *activity))
        }
        Condition::Count {
            within: Some(_), ..
        }
        | Condition::AllOf(_)
        | Condition::AnyOf(_) => None,
    }
}

#[cfg(test)]
mod tests;
