//! What a UserActor remembers of the user's behaviour for rule evaluation: [`RuleFacts`],
//! folded from [`Activity`] values one at a time, persisted with the user, bounded in size
//! whatever the user does.
//!
//! `record` is not idempotent: recording the same activity twice counts it twice. The
//! UserActor's inbox applies each event once, and that is what makes counts exact.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use merit_messages::TierId;
use serde::{Deserialize, Serialize};

use super::language::{ActivityKind, Window, MAX_WINDOW_MINUTES};

/// Timestamps kept per activity kind for windowed counts: the latest 10,000.
///
/// A windowed count is then exact for any `at_least` up to this bound (which validation
/// enforces): the window holds at least `n` activities if and only if at least `n` of the
/// kept ones fall in it, because the kept ones are the most recent.
pub const MAX_RECENT_PER_KIND: usize = 10_000;

/// Separate runs of consecutive proposal seqs kept for streaks: the 1,024 highest.
///
/// When a vote would create a 1,025th run, the run of the oldest proposals is forgotten;
/// the longest streak already reached is remembered separately, so it never shrinks. A
/// late vote on a proposal next to a forgotten run starts a new run instead of extending
/// it (the only way the bound undercounts: it needs over a thousand gaps in the user's
/// voting record first).
pub const MAX_STREAK_RUNS: usize = 1_024;

/// Distinct tiers counted for `held_while`. Tiers come from the config and number a few;
/// activities while holding a tier beyond the first 64 seen are not counted for it.
pub const MAX_TRACKED_TIERS: usize = 64;

/// One thing the user did, as the UserActor tells it to the rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// What the user did.
    pub kind: ActivityKind,
    /// When (the event's time, not the clock's).
    pub at: DateTime<Utc>,
    /// The proposal's global sequence number, assigned in creation order by the
    /// governance side. Streaks use it for `vote_cast`; other kinds ignore it.
    pub proposal_seq: Option<u64>,
    /// The tiers of the NFTs the user held at that moment (duplicates count once).
    pub tiers_held: Vec<TierId>,
}

/// The user's behaviour, as far as rules need it.
///
/// - per kind, the total number of activities;
/// - per kind, the timestamps of the latest [`MAX_RECENT_PER_KIND`] activities no older
///   than 366 days before the newest one (windows never reach further; see
///   [`count_within`](Self::count_within)), in milliseconds;
/// - the runs of consecutive proposal seqs voted on (bounded by [`MAX_STREAK_RUNS`]) and
///   the longest run ever reached;
/// - per tier and kind, the activities while holding that tier.
///
/// Worst-case size: about 3 × 10,000 timestamps plus 1,024 runs plus 64 × 3 counters;
/// typical users hold a few hundred bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleFacts {
    counts: BTreeMap<ActivityKind, u64>,
    recent_ms: BTreeMap<ActivityKind, VecDeque<i64>>,
    vote_runs: BTreeMap<u64, u64>,
    longest_streak: u64,
    while_holding: BTreeMap<TierId, BTreeMap<ActivityKind, u64>>,
}

impl RuleFacts {
    /// Folds one activity in. Activities may arrive out of time order.
    pub fn record(&mut self, activity: Activity) {
        let kind = activity.kind;
        let count = self.counts.entry(kind).or_default();
        *count = count.saturating_add(1);
        self.remember_time(kind, activity.at.timestamp_millis());
        if let (ActivityKind::VoteCast, Some(seq)) = (kind, activity.proposal_seq) {
            self.remember_vote(seq);
        }
        let tiers: BTreeSet<TierId> = activity.tiers_held.into_iter().collect();
        for tier in tiers {
            if !self.while_holding.contains_key(&tier)
                && self.while_holding.len() >= MAX_TRACKED_TIERS
            {
                continue;
            }
            let n = self
                .while_holding
                .entry(tier)
                .or_default()
                .entry(kind)
                .or_default();
            *n = n.saturating_add(1);
        }
    }

    /// All activities of `kind` ever recorded.
    pub fn count(&self, kind: ActivityKind) -> u64 {
        self.counts.get(&kind).copied().unwrap_or(0)
    }

    /// Activities of `kind` in the trailing `window` ending at `now`: those with
    /// `at > now - window`, at millisecond resolution. Activities stamped after `now`
    /// (a producer's clock ahead of the caller's) count as if at `now`.
    ///
    /// Exact up to [`MAX_RECENT_PER_KIND`]; beyond, it reports that bound. History older
    /// than 366 days before the newest recorded activity is dropped, which is exact for
    /// any `now` at or after the newest activity, and for any `now` at most
    /// `366 days - window` before it.
    pub fn count_within(&self, kind: ActivityKind, window: Window, now: DateTime<Utc>) -> u64 {
        let Some(times) = self.recent_ms.get(&kind) else {
            return 0;
        };
        let start = now.timestamp_millis().saturating_sub(window.millis());
        let outside = times.partition_point(|&t| t <= start);
        (times.len() - outside) as u64
    }

    /// The longest run of consecutive proposal seqs the user voted on: the length of the
    /// longest `s, s+1, ..., s+k-1` all voted on, in whatever order the votes arrived.
    ///
    /// The longest rather than the current run: it never decreases, so a streak rule
    /// unlocks the same whatever the evaluation timing, and it needs no knowledge of
    /// proposals the user did not vote on (which the UserActor never sees).
    pub fn longest_streak(&self) -> u64 {
        self.longest_streak
    }

    /// Activities of `kind` recorded while the user held an NFT of `tier`.
    pub fn count_while_holding(&self, tier: &TierId, kind: ActivityKind) -> u64 {
        self.while_holding
            .get(tier)
            .and_then(|by_kind| by_kind.get(&kind))
            .copied()
            .unwrap_or(0)
    }

    fn remember_time(&mut self, kind: ActivityKind, at_ms: i64) {
        let times = self.recent_ms.entry(kind).or_default();
        let at = times.partition_point(|&t| t <= at_ms);
        times.insert(at, at_ms);
        let newest = times.back().copied().unwrap_or(at_ms);
        let horizon = newest.saturating_sub(i64::from(MAX_WINDOW_MINUTES) * 60_000);
        while times.len() > MAX_RECENT_PER_KIND || times.front().is_some_and(|&t| t <= horizon) {
            times.pop_front();
        }
    }

    fn remember_vote(&mut self, seq: u64) {
        let before = self
            .vote_runs
            .range(..=seq)
            .next_back()
            .map(|(&s, &e)| (s, e));
        if before.is_some_and(|(_, end)| seq <= end) {
            return; // already voted on: a streak is a set of proposals
        }
        let start = match before {
            Some((s, end)) if end.checked_add(1) == Some(seq) => s,
            _ => seq,
        };
        let end = match seq.checked_add(1) {
            Some(next) => self.vote_runs.remove(&next).unwrap_or(seq),
            None => seq,
        };
        self.vote_runs.insert(start, end);
        let len = (end - start).saturating_add(1);
        self.longest_streak = self.longest_streak.max(len);
        while self.vote_runs.len() > MAX_STREAK_RUNS {
            self.vote_runs.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000, 0).single().expect("valid")
            + chrono::TimeDelta::minutes(minute)
    }

    fn vote(seq: u64) -> Activity {
        Activity {
            kind: ActivityKind::VoteCast,
            at: at(0),
            proposal_seq: Some(seq),
            tiers_held: vec![],
        }
    }

    fn streak_of(seqs: &[u64]) -> u64 {
        let mut facts = RuleFacts::default();
        for &s in seqs {
            facts.record(vote(s));
        }
        facts.longest_streak()
    }

    #[test]
    fn streak_is_longest_run_of_consecutive_seqs_in_any_order() {
        assert_eq!(streak_of(&[]), 0);
        assert_eq!(streak_of(&[7]), 1);
        assert_eq!(streak_of(&[1, 2, 3, 5, 6]), 3);
        assert_eq!(streak_of(&[5, 3, 1, 2, 4]), 5);
        assert_eq!(streak_of(&[10, 12, 11]), 3);
        assert_eq!(
            streak_of(&[1, 1, 2, 2]),
            2,
            "a repeated vote is one proposal"
        );
        assert_eq!(
            streak_of(&[1, 2, 3, 10, 11]),
            3,
            "a later shorter run keeps the longest"
        );
        assert_eq!(streak_of(&[u64::MAX, u64::MAX - 1, 0]), 2);
    }

    #[test]
    fn streak_runs_stay_bounded_and_longest_never_shrinks() {
        let mut facts = RuleFacts::default();
        for s in 0..5 {
            facts.record(vote(s));
        }
        // Thousands of isolated votes push the 0..5 run out of the kept runs.
        for i in 0..(MAX_STREAK_RUNS as u64 + 10) {
            facts.record(vote(100 + 2 * i));
        }
        assert_eq!(facts.vote_runs.len(), MAX_STREAK_RUNS);
        assert_eq!(facts.longest_streak(), 5);
    }

    #[test]
    fn window_counts_age_out_and_ignore_arrival_order() {
        let mut facts = RuleFacts::default();
        for minute in [30, 0, 10, 20] {
            facts.record(Activity {
                kind: ActivityKind::VoteCast,
                at: at(minute),
                proposal_seq: None,
                tiers_held: vec![],
            });
        }
        let w: Window = "15m".parse().expect("window");
        let within = |now| facts.count_within(ActivityKind::VoteCast, w, at(now));
        assert_eq!(within(30), 2, "20 and 30 are in (15, 30]");
        assert_eq!(within(25), 2, "the one stamped after now counts as now");
        assert_eq!(within(34), 2);
        assert_eq!(within(35), 1, "20 is at the window's open start");
        assert_eq!(within(45), 0);
        assert_eq!(within(100), 0);
        assert_eq!(facts.count(ActivityKind::VoteCast), 4);
        assert_eq!(
            facts.count_within(ActivityKind::ProposalCreated, w, at(30)),
            0
        );
    }

    #[test]
    fn history_is_bounded_by_count_and_age() {
        let mut facts = RuleFacts::default();
        let record = |facts: &mut RuleFacts, minute| {
            facts.record(Activity {
                kind: ActivityKind::ProposalCreated,
                at: at(minute),
                proposal_seq: None,
                tiers_held: vec![],
            })
        };
        for minute in 0..(MAX_RECENT_PER_KIND as i64 + 5) {
            record(&mut facts, minute);
        }
        let kept = &facts.recent_ms[&ActivityKind::ProposalCreated];
        assert_eq!(kept.len(), MAX_RECENT_PER_KIND);
        assert_eq!(kept.front().copied(), Some(at(5).timestamp_millis()));
        record(&mut facts, i64::from(MAX_WINDOW_MINUTES) + 6);
        let kept = &facts.recent_ms[&ActivityKind::ProposalCreated];
        assert_eq!(kept.front().copied(), Some(at(7).timestamp_millis()));
        assert_eq!(
            facts.count(ActivityKind::ProposalCreated),
            MAX_RECENT_PER_KIND as u64 + 6
        );
    }

    #[test]
    fn holding_counts_each_tier_once_per_activity() {
        let gold: TierId = "gold".parse().expect("tier");
        let silver: TierId = "silver".parse().expect("tier");
        let mut facts = RuleFacts::default();
        facts.record(Activity {
            kind: ActivityKind::VoteCast,
            at: at(0),
            proposal_seq: Some(1),
            tiers_held: vec![gold.clone(), gold.clone(), silver.clone()],
        });
        facts.record(Activity {
            kind: ActivityKind::VoteCast,
            at: at(1),
            proposal_seq: Some(2),
            tiers_held: vec![gold.clone()],
        });
        assert_eq!(facts.count_while_holding(&gold, ActivityKind::VoteCast), 2);
        assert_eq!(
            facts.count_while_holding(&silver, ActivityKind::VoteCast),
            1
        );
        assert_eq!(
            facts.count_while_holding(&gold, ActivityKind::ProposalCreated),
            0
        );
    }

    #[test]
    fn held_tiers_are_bounded() {
        let mut facts = RuleFacts::default();
        let tiers: Vec<TierId> = (0..MAX_TRACKED_TIERS + 3)
            .map(|i| format!("t{i}").parse().expect("tier"))
            .collect();
        facts.record(Activity {
            kind: ActivityKind::VoteCast,
            at: at(0),
            proposal_seq: None,
            tiers_held: tiers.clone(),
        });
        assert_eq!(facts.while_holding.len(), MAX_TRACKED_TIERS);
    }

    #[test]
    fn facts_round_trip_through_json() {
        let mut facts = RuleFacts::default();
        facts.record(vote(3));
        facts.record(Activity {
            kind: ActivityKind::ProposalPassed,
            at: at(9),
            proposal_seq: None,
            tiers_held: vec!["gold".parse().expect("tier")],
        });
        let json = serde_json::to_string(&facts).expect("serialise");
        let back: RuleFacts = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, facts);
        let empty: RuleFacts = serde_json::from_str("{}").expect("defaults");
        assert_eq!(empty, RuleFacts::default());
    }
}
