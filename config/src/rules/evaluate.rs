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
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;
    use crate::rules::{Activity, ActivityKind};

    fn t(minute: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000, 0).single().expect("valid") + TimeDelta::minutes(minute)
    }

    fn set(doc: serde_json::Value) -> RuleSet {
        let tiers: Vec<TierId> = ["bronze", "silver", "gold"]
            .iter()
            .map(|t| t.parse().expect("tier"))
            .collect();
        RuleSet::parse(&serde_json::to_vec(&doc).expect("json"), &tiers).expect("valid rules")
    }

    fn one_rule(when: serde_json::Value) -> RuleSet {
        set(
            serde_json::json!({"rules": [{"id": "r", "tier": "silver", "title": "R", "when": when}]}),
        )
    }

    fn act(kind: ActivityKind, minute: i64) -> Activity {
        Activity {
            kind,
            at: t(minute),
            proposal_seq: None,
            tiers_held: vec![],
        }
    }

    fn vote(seq: u64, minute: i64, tiers: &[&str]) -> Activity {
        Activity {
            kind: ActivityKind::VoteCast,
            at: t(minute),
            proposal_seq: Some(seq),
            tiers_held: tiers.iter().map(|s| s.parse().expect("tier")).collect(),
        }
    }

    /// A user: facts and ledger, recording activities and evaluating after each.
    struct User {
        facts: RuleFacts,
        ledger: UnlockLedger,
        unlocked: Vec<Unlock>,
    }

    impl User {
        fn new() -> Self {
            Self {
                facts: RuleFacts::default(),
                ledger: UnlockLedger::default(),
                unlocked: vec![],
            }
        }

        /// Records `a` and evaluates at its time; returns the occurrences newly unlocked.
        fn does(&mut self, rules: &RuleSet, a: Activity) -> Vec<u32> {
            let now = a.at;
            self.facts.record(a);
            self.eval(rules, now)
        }

        fn eval(&mut self, rules: &RuleSet, now: DateTime<Utc>) -> Vec<u32> {
            let new = evaluate(rules, 7, &self.facts, &mut self.ledger, now);
            self.unlocked.extend(new.iter().cloned());
            new.iter().map(|u| u.occurrence).collect()
        }
    }

    #[test]
    fn first_proposal_unlocks_once() {
        let rules =
            one_rule(serde_json::json!({"count": {"activity": "proposal_created", "at_least": 1}}));
        let mut user = User::new();
        assert!(user.does(&rules, act(ActivityKind::VoteCast, 0)).is_empty());
        assert_eq!(
            user.does(&rules, act(ActivityKind::ProposalCreated, 1)),
            [1]
        );
        assert!(user
            .does(&rules, act(ActivityKind::ProposalCreated, 2))
            .is_empty());
        assert!(
            user.eval(&rules, t(3)).is_empty(),
            "evaluating again unlocks nothing"
        );
        let u = &user.unlocked[0];
        assert_eq!(
            (
                u.rule.as_str(),
                u.tier.as_str(),
                u.occurrence,
                u.rule_version
            ),
            ("r", "silver", 1, 7)
        );
    }

    #[test]
    fn voted_on_ten_unlocks_at_the_tenth_vote() {
        let rules =
            one_rule(serde_json::json!({"count": {"activity": "vote_cast", "at_least": 10}}));
        let mut user = User::new();
        for i in 0..9 {
            assert!(
                user.does(&rules, vote(i, i as i64, &[])).is_empty(),
                "vote {i}"
            );
        }
        assert_eq!(user.does(&rules, vote(9, 9, &[])), [1]);
        assert!(user.does(&rules, vote(10, 10, &[])).is_empty());
    }

    #[test]
    fn five_streak_counts_consecutive_seqs_despite_gaps_and_order() {
        let rules = one_rule(serde_json::json!({"streak": {"at_least": 5}}));
        let mut user = User::new();
        // 1 2 _ 4 5 6 _ 8: runs of 2 and 3, no streak of 5 yet.
        for (i, seq) in [8, 1, 5, 2, 4, 6].into_iter().enumerate() {
            assert!(
                user.does(&rules, vote(seq, i as i64, &[])).is_empty(),
                "seq {seq}"
            );
        }
        assert_eq!(user.facts.longest_streak(), 3);
        // 7 joins 4-5-6 with 8: a run of 5, arriving late.
        assert_eq!(user.does(&rules, vote(7, 10, &[])), [1]);
        assert_eq!(user.facts.longest_streak(), 5);
        // 3 joins everything into 1..=8: longer, but a Once rule stays unlocked once.
        assert!(user.does(&rules, vote(3, 11, &[])).is_empty());
        assert_eq!(user.facts.longest_streak(), 8);
    }

    #[test]
    fn three_passed_proposals() {
        let rules =
            one_rule(serde_json::json!({"count": {"activity": "proposal_passed", "at_least": 3}}));
        let mut user = User::new();
        for i in 0..5 {
            assert!(user
                .does(&rules, act(ActivityKind::ProposalCreated, i))
                .is_empty());
        }
        assert!(user
            .does(&rules, act(ActivityKind::ProposalPassed, 6))
            .is_empty());
        assert!(user
            .does(&rules, act(ActivityKind::ProposalPassed, 7))
            .is_empty());
        assert_eq!(user.does(&rules, act(ActivityKind::ProposalPassed, 8)), [1]);
    }

    #[test]
    fn held_gold_while_voting() {
        let rules = one_rule(serde_json::json!(
            {"held_while": {"tier": "gold", "activity": "vote_cast", "at_least": 2}}));
        let mut user = User::new();
        assert!(user.does(&rules, vote(1, 0, &["silver"])).is_empty());
        assert!(user.does(&rules, vote(2, 1, &["gold"])).is_empty());
        assert!(
            user.does(&rules, act(ActivityKind::ProposalCreated, 2))
                .is_empty(),
            "not a vote"
        );
        assert!(
            user.does(&rules, vote(3, 3, &[])).is_empty(),
            "gold sold meanwhile"
        );
        assert_eq!(user.does(&rules, vote(4, 4, &["silver", "gold"])), [1]);
    }

    #[test]
    fn windowed_count_ages_out_and_never_re_unlocks_a_once_rule() {
        let rules = one_rule(serde_json::json!(
            {"count": {"activity": "vote_cast", "at_least": 3, "within": "1h"}}));
        let mut user = User::new();
        assert!(user.does(&rules, vote(1, 0, &[])).is_empty());
        assert!(user.does(&rules, vote(2, 30, &[])).is_empty());
        // The vote at 0 has aged out by minute 60: (0, 60] holds two votes.
        assert!(user.does(&rules, vote(3, 60, &[])).is_empty());
        let now = t(70);
        assert!(!would_unlock(&rules.rules[0], &user.facts, now));
        assert_eq!(user.does(&rules, vote(4, 70, &[])), [1], "30, 60 and 70");
        // The window empties, then fills again: still unlocked once.
        assert!(user.eval(&rules, t(500)).is_empty());
        assert!(!would_unlock(&rules.rules[0], &user.facts, t(500)));
        for (i, m) in [501, 502, 503].into_iter().enumerate() {
            assert!(user.does(&rules, vote(10 + i as u64, m, &[])).is_empty());
        }
        assert!(would_unlock(&rules.rules[0], &user.facts, t(503)));
        assert_eq!(user.unlocked.len(), 1);
    }

    #[test]
    fn all_of_needs_every_part_and_any_of_one() {
        let rules = set(serde_json::json!({"rules": [
            {"id": "both", "tier": "gold", "title": "Both", "when": {"all_of": [
                {"count": {"activity": "proposal_created", "at_least": 1}},
                {"count": {"activity": "vote_cast", "at_least": 2}}]}},
            {"id": "either", "tier": "bronze", "title": "Either", "when": {"any_of": [
                {"count": {"activity": "proposal_passed", "at_least": 1}},
                {"streak": {"at_least": 2}}]}},
            {"id": "nested", "tier": "silver", "title": "Nested", "when": {"all_of": [
                {"any_of": [{"streak": {"at_least": 9}},
                            {"held_while": {"tier": "gold", "activity": "vote_cast"}}]},
                {"count": {"activity": "proposal_passed", "at_least": 1}}]}},
        ]}));
        let mut user = User::new();
        let ids = |user: &User| -> Vec<String> {
            user.unlocked.iter().map(|u| u.rule.to_string()).collect()
        };
        user.does(&rules, vote(1, 0, &["gold"]));
        user.does(&rules, vote(3, 1, &[]));
        assert!(
            ids(&user).is_empty(),
            "two votes but no proposal; no streak of 2"
        );
        user.does(&rules, act(ActivityKind::ProposalCreated, 2));
        assert_eq!(ids(&user), ["both"]);
        user.does(&rules, vote(2, 3, &[]));
        assert_eq!(ids(&user), ["both", "either"], "1-2-3 is a streak");
        user.does(&rules, act(ActivityKind::ProposalPassed, 4));
        assert_eq!(
            ids(&user),
            ["both", "either", "nested"],
            "gold vote and a pass"
        );
    }

    #[test]
    fn repeat_every_n_unlocks_at_each_multiple() {
        let rules = set(serde_json::json!({"rules": [
            {"id": "every-3", "tier": "bronze", "title": "3 more votes", "repeat": {"every": 3},
             "when": {"count": {"activity": "vote_cast", "at_least": 3}}},
            {"id": "first-then-every-4", "tier": "bronze", "title": "Votes", "repeat": {"every": 4},
             "when": {"count": {"activity": "vote_cast", "at_least": 1}}},
        ]}));
        let mut user = User::new();
        let mut log = vec![];
        for i in 1..=12 {
            let new = user.does(&rules, vote(i, i as i64, &[]));
            if !new.is_empty() {
                log.push((i, new));
            }
        }
        assert_eq!(
            log,
            [
                (3, vec![1]),
                (4, vec![1]),
                (6, vec![2]),
                (8, vec![2]),
                (9, vec![3]),
                (12, vec![4, 3])
            ]
        );
        assert_eq!(user.ledger.occurrences(&"every-3".parse().expect("id")), 4);
        assert_eq!(
            user.ledger
                .occurrences(&"first-then-every-4".parse().expect("id")),
            3
        );
    }

    #[test]
    fn a_late_rule_catches_up_every_occurrence_at_once() {
        let rules = set(serde_json::json!({"rules": [
            {"id": "streaky", "tier": "bronze", "title": "Streaks", "repeat": {"every": 2},
             "when": {"streak": {"at_least": 2}}}]}));
        let mut facts = RuleFacts::default();
        for seq in 0..7 {
            facts.record(vote(seq, 0, &[]));
        }
        let mut ledger = UnlockLedger::default();
        let got: Vec<u32> = evaluate(&rules, 1, &facts, &mut ledger, t(0))
            .iter()
            .map(|u| u.occurrence)
            .collect();
        assert_eq!(got, [1, 2, 3], "streak 7 => floor(7 / 2)");
        assert!(evaluate(&rules, 1, &facts, &mut ledger, t(0)).is_empty());
    }

    #[test]
    fn a_rule_removed_and_added_back_does_not_unlock_again() {
        let rules =
            one_rule(serde_json::json!({"count": {"activity": "vote_cast", "at_least": 1}}));
        let mut user = User::new();
        assert_eq!(user.does(&rules, vote(1, 0, &[])), [1]);
        let without = RuleSet::default();
        assert!(user.does(&without, vote(2, 1, &[])).is_empty());
        assert!(user.does(&rules, vote(3, 2, &[])).is_empty());
        assert_eq!(user.unlocked.len(), 1);
    }

    #[test]
    fn a_released_unlock_is_due_again_with_the_same_occurrence() {
        let rules =
            one_rule(serde_json::json!({"count": {"activity": "vote_cast", "at_least": 1}}));
        let mut user = User::new();
        assert_eq!(user.does(&rules, vote(1, 0, &[])), [1]);
        let id: RuleId = "r".parse().expect("id");
        assert!(!user.ledger.release(&id, 2), "only the latest occurrence");
        assert!(user.ledger.release(&id, 1));
        assert_eq!(user.ledger.occurrences(&id), 0);
        assert!(!user.ledger.release(&id, 1), "already released");
        assert_eq!(user.eval(&rules, t(1)), [1]);
    }

    #[test]
    fn achievement_ids_are_deterministic_uuid5() {
        let user = Address([0xab; 20]);
        let rule: RuleId = "voted-10".parse().expect("id");
        let id = achievement_id(&user, &rule, 1);
        assert_eq!(id, achievement_id(&user, &rule, 1));
        assert_eq!(id.get_version_num(), 5);
        assert_ne!(id, achievement_id(&user, &rule, 2));
        assert_ne!(id, achievement_id(&Address([0xac; 20]), &rule, 1));
        let name = format!("achievement:0x{}:voted-10:1", "ab".repeat(20));
        assert_eq!(id, Uuid::new_v5(&MERIT_NAMESPACE, name.as_bytes()));
    }

    #[test]
    fn ledger_round_trips_through_json() {
        let rules =
            one_rule(serde_json::json!({"count": {"activity": "vote_cast", "at_least": 1}}));
        let mut user = User::new();
        user.does(&rules, vote(1, 0, &[]));
        let json = serde_json::to_string(&user.ledger).expect("serialise");
        assert_eq!(json, r#"{"unlocked":{"r":1}}"#);
        let back: UnlockLedger = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, user.ledger);
    }
}
