//! The rule language as typed values: what an operator writes, after [`RuleSet::parse`]
//! has checked it. Serialising a [`RuleSet`] yields the same JSON document form that
//! `parse` reads, so a stored rule set round-trips unchanged.
//!
//! [`RuleSet::parse`]: super::RuleSet::parse

use std::{fmt, str::FromStr};

use chrono::TimeDelta;
use merit_messages::{RuleId, TierId};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::error::quote;

/// A kind of governance behaviour that rules count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    /// The user created a proposal.
    ProposalCreated,
    /// The user voted on a proposal.
    VoteCast,
    /// A proposal the user created succeeded.
    ProposalPassed,
}

impl ActivityKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ActivityKind; 3] = [
        ActivityKind::ProposalCreated,
        ActivityKind::VoteCast,
        ActivityKind::ProposalPassed,
    ];

    /// The name used in rule documents (`vote_cast`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProposalCreated => "proposal_created",
            Self::VoteCast => "vote_cast",
            Self::ProposalPassed => "proposal_passed",
        }
    }
}

impl fmt::Display for ActivityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One achievement rule: when `when` holds, the user unlocks an achievement minted as an
/// NFT of `tier`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// The rule's name; the unlock ledger keys by it, so a rule removed and added back
    /// does not unlock again for a user who already has it.
    pub id: RuleId,
    /// The NFT tier an unlock mints.
    pub tier: TierId,
    /// What people see, 1-200 characters.
    pub title: String,
    /// Whether the rule unlocks once or again and again.
    pub repeat: Repeat,
    /// The condition.
    pub when: Condition,
}

/// How often a rule unlocks for one user.
///
/// `Every(n)` measures the quantity its condition counts — the number of activities for
/// `count`, the longest streak for `streak`, the votes while holding for `held_while` —
/// call it `q`. Occurrence `k` (1, 2, ...) is due once the condition holds and
/// `q >= k * n`: a rule unlocks `floor(q / n)` times in all, each occurrence exactly once,
/// and an evaluation that finds several occurrences due (a rule added after the user was
/// already active) returns them all. Validation allows `Every` only on a single `count`
/// (without `within`), `streak` or `held_while` condition whose `at_least <= n`: those
/// quantities never decrease, so "reaching another multiple" is well defined, and no
/// occurrence is skipped or doubled at the first unlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Repeat {
    /// Unlocks at most once per user, ever.
    #[default]
    Once,
    /// Unlocks again each time the counted quantity reaches another multiple of `n`.
    Every(u32),
}

/// A condition over a user's [`RuleFacts`](super::RuleFacts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// At least `at_least` activities of `activity`; with `within`, only those in the
    /// trailing window ending at evaluation time.
    Count {
        /// The activity counted.
        activity: ActivityKind,
        /// Threshold, at least 1.
        at_least: u32,
        /// The trailing window, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        within: Option<Window>,
    },
    /// The user's longest run of votes on consecutive proposals is at least `at_least`
    /// long (see [`RuleFacts::longest_streak`](super::RuleFacts::longest_streak)).
    Streak {
        /// Threshold, at least 1.
        at_least: u32,
    },
    /// At least `at_least` activities of `activity` happened while the user held an NFT of
    /// `tier`.
    HeldWhile {
        /// The tier held.
        tier: TierId,
        /// The activity counted.
        activity: ActivityKind,
        /// Threshold, at least 1 (1 when the document leaves it out).
        at_least: u32,
    },
    /// Every listed condition holds (non-empty).
    AllOf(Vec<Condition>),
    /// At least one listed condition holds (non-empty).
    AnyOf(Vec<Condition>),
}

/// Longest accepted [`Window`]: 366 days. Activity history older than this (relative to
/// the newest recorded activity) is dropped from [`RuleFacts`](super::RuleFacts).
pub const MAX_WINDOW_MINUTES: u32 = 366 * 24 * 60;

/// A trailing time window, written `<n><unit>` with unit `m` (minutes), `h`, `d` or `w`
/// (`"90m"`, `"12h"`, `"30d"`, `"2w"`); from 1 minute to 366 days. Two windows are equal
/// when they last as long (`"2w"` equals `"14d"`); both print as the largest unit that
/// divides them (`"2w"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    minutes: u32,
}

impl Window {
    /// A window of `minutes`, if within 1 minute..=366 days.
    pub fn from_minutes(minutes: u32) -> Option<Self> {
        (1..=MAX_WINDOW_MINUTES)
            .contains(&minutes)
            .then_some(Self { minutes })
    }

    /// Its length in minutes.
    pub fn minutes(self) -> u32 {
        self.minutes
    }

    /// Its length as a duration.
    pub fn as_duration(self) -> TimeDelta {
        TimeDelta::minutes(i64::from(self.minutes))
    }

    /// Its length in milliseconds (the resolution of window arithmetic).
    pub(crate) fn millis(self) -> i64 {
        i64::from(self.minutes) * 60_000
    }
}

const UNITS: [(char, u32); 4] = [('w', 7 * 24 * 60), ('d', 24 * 60), ('h', 60), ('m', 1)];

impl FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || {
            format!(
                "{} is not a duration: expected a whole number followed by m, h, d or w \
                 (\"90m\", \"12h\", \"30d\", \"2w\")",
                quote(s)
            )
        };
        let unit_char = s.chars().last().ok_or_else(syntax)?;
        let digits = &s[..s.len() - unit_char.len_utf8()];
        let per_unit = UNITS
            .iter()
            .find(|(c, _)| *c == unit_char)
            .map(|(_, m)| *m)
            .ok_or_else(syntax)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        // All digits, so parsing fails only on overflow, which is out of range too.
        let minutes = digits
            .parse::<u32>()
            .ok()
            .and_then(|amount| amount.checked_mul(per_unit));
        minutes.and_then(Self::from_minutes).ok_or_else(|| {
            format!(
                "{} is out of range: a window lasts from 1m to 366d",
                quote(s)
            )
        })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, per) = UNITS
            .iter()
            .copied()
            .find(|(_, per)| self.minutes % per == 0)
            .unwrap_or(('m', 1));
        write!(f, "{}{unit}", self.minutes / per)
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A validated set of rules, in the order the document lists them (the order in which
/// [`evaluate`](super::evaluate) reports unlocks).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RuleSet {
    /// The rules, with unique ids.
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// The rule named `id`, if the set has it.
    pub fn get(&self, id: &RuleId) -> Option<&Rule> {
        self.rules.iter().find(|r| &r.id == id)
    }

    /// The canonical JSON document of this set, which [`RuleSet::parse`] reads back.
    ///
    /// [`RuleSet::parse`]: RuleSet::parse
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a rule set is plain data and always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_each_unit_and_print_canonically() {
        let w = |s: &str| s.parse::<Window>().expect(s);
        assert_eq!(w("90m").minutes(), 90);
        assert_eq!(w("12h").minutes(), 720);
        assert_eq!(w("30d").minutes(), 30 * 1440);
        assert_eq!(w("2w").minutes(), 2 * 7 * 1440);
        assert_eq!(w("2w"), w("14d"));
        assert_eq!(w("14d").to_string(), "2w");
        assert_eq!(w("120m").to_string(), "2h");
        assert_eq!(w("90m").to_string(), "90m");
        assert_eq!(w("366d").to_string(), "366d");
    }

    #[test]
    fn windows_refuse_bad_syntax_and_range() {
        for bad in [
            "", "d", "30", "30x", "-3d", "3.5d", "+3d", " 3d", "3 d", "3D", "3dd", "é",
        ] {
            let err = bad.parse::<Window>().expect_err(bad);
            assert!(err.contains("is not a duration"), "{bad}: {err}");
        }
        for out in ["0m", "367d", "53w", "99999999w", "99999999999999999999m"] {
            let err = out.parse::<Window>().expect_err(out);
            assert!(err.contains("out of range"), "{out}: {err}");
        }
    }
}
