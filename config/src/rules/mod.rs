//! Declarative achievement rules: operators write them as JSON, merit validates them, and
//! the UserActor evaluates them after each relevant event. Pure and deterministic: no I/O,
//! no clock (time comes in as `now`), no randomness.
//!
//! The flow through the module:
//! 1. The config layer hands a stored document to [`RuleSet::parse`] with the tiers it
//!    defines; the document becomes a validated [`RuleSet`] or a [`RuleError`] naming the
//!    JSON path and the reason (`rules[3].when.all_of[1].count.at_least: must be at least
//!    1 ...`).
//! 2. For each governance event about the user, the UserActor folds an [`Activity`] into
//!    its [`RuleFacts`] (bounded; persisted with the user).
//! 3. It then calls [`evaluate`] with the active rule set and its version, the facts, its
//!    [`UnlockLedger`] (persisted in the same transaction) and the event's time; each
//!    returned [`Unlock`] becomes an `achievement.unlocked` event whose id is
//!    [`achievement_id`] — deterministic, so a redelivery emits the same event.
//!
//! # The rule language
//!
//! ```json
//! { "rules": [
//!   { "id": "first-proposal", "tier": "bronze", "title": "Created a proposal",
//!     "when": { "count": { "activity": "proposal_created", "at_least": 1 } } },
//!   { "id": "voted-10", "tier": "silver", "title": "Voted on 10 proposals", "repeat": "once",
//!     "when": { "count": { "activity": "vote_cast", "at_least": 10 } } },
//!   { "id": "every-50-votes", "tier": "bronze", "title": "Another 50 votes",
//!     "repeat": { "every": 50 },
//!     "when": { "count": { "activity": "vote_cast", "at_least": 50 } } },
//!   { "id": "gold-regular", "tier": "gold", "title": "Active gold holder",
//!     "when": { "all_of": [
//!       { "held_while": { "tier": "gold", "activity": "vote_cast", "at_least": 3 } },
//!       { "any_of": [
//!         { "streak": { "at_least": 5 } },
//!         { "count": { "activity": "vote_cast", "at_least": 20, "within": "30d" } } ] } ] } }
//! ] }
//! ```
//!
//! - A rule: `id` (1-64 of `[A-Za-z0-9_.:-]`, unique in the set), `tier` (a tier the config
//!   defines: the NFT an unlock mints), `title` (1-200 characters), `repeat` (`"once"`, the
//!   default, or `{"every": n}`, see [`Repeat`]) and `when`.
//! - A condition is an object with exactly one key: `count` (`activity`, `at_least`,
//!   optional `within`: a [`Window`] such as `"90m"`, `"12h"`, `"30d"`, `"2w"`), `streak`
//!   (`at_least`), `held_while` (`tier`, `activity`, optional `at_least`, default 1),
//!   `all_of` or `any_of` (non-empty lists). Activities: `proposal_created`, `vote_cast`,
//!   `proposal_passed` (a proposal the user created succeeded).
//! - Limits: unknown fields are refused everywhere; every `at_least` is at least 1;
//!   conditions nest at most [`MAX_DEPTH`] levels with at most [`MAX_NODES`] per rule;
//!   at most [`MAX_RULES`] rules in a document of at most [`MAX_DOCUMENT_BYTES`].
//!
//! # Definitions
//!
//! - **Streak**: the longest run of consecutive proposal seqs the user voted on
//!   ([`RuleFacts::longest_streak`]); the longest, not the current one.
//! - **Window**: a windowed count counts activities with `at > now - window`; history is
//!   bounded to the latest [`MAX_RECENT_PER_KIND`] per kind within 366 days, which keeps
//!   windowed counts exact ([`RuleFacts::count_within`]).
//! - **Repeat every n**: occurrence `k` is due when `q >= k * n`, `q` being the condition's
//!   never-decreasing counted quantity; only single `count` (unwindowed), `streak` and
//!   `held_while` conditions with `at_least <= n` may repeat ([`Repeat`]).

mod error;
mod evaluate;
mod facts;
mod language;
mod parse;

#[cfg(test)]
mod tests;

pub use error::RuleError;
pub use evaluate::{achievement_id, evaluate, would_unlock, Unlock, UnlockLedger};
pub use facts::{Activity, RuleFacts, MAX_RECENT_PER_KIND, MAX_STREAK_RUNS, MAX_TRACKED_TIERS};
pub use language::{ActivityKind, Condition, Repeat, Rule, RuleSet, Window, MAX_WINDOW_MINUTES};
pub(crate) use parse::from_serde_error;
pub use parse::{MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_NODES, MAX_RULES, MAX_TITLE_CHARS};
