//! Reading the store: the rows the end state is judged on.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Debug,
    time::Duration,
};

use merit_actors::achievement_token;
use merit_config::rules::achievement_id;
use merit_messages::{ActorKind, Tally};
use merit_storage::{
    entities::{achievement, actor, benefit, nft, notification, proposal, user, vote},
    sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter},
    Store,
};
use serde_json::Value;

use crate::{common::wallet, events::addr};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AchievementRow {
    pub(crate) user: String,
    pub(crate) rule: String,
    pub(crate) tier: String,
    pub(crate) rule_version: i64,
    pub(crate) id: String,
    pub(crate) token: Option<String>,
    pub(crate) state: String,
}

/// The achievement the built-in rule `rule` unlocks first for wallet `user`.
pub(crate) fn unlocked(user: u32, rule: &str, tier: &str, rule_version: i64) -> AchievementRow {
    let id = achievement_id(&wallet(user), &rule.parse().expect("rule id"), 1);
    AchievementRow {
        user: addr(user),
        rule: rule.to_string(),
        tier: tier.to_string(),
        rule_version,
        id: id.to_string(),
        token: Some(achievement_token(id).to_string()),
        state: "unlocked".to_string(),
    }
}

/// A `votes` row: choice, weight, boosts as (token, tier, bonus), the counted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VoteRow {
    pub(crate) choice: String,
    pub(crate) weight: i64,
    pub(crate) boosts: Vec<(String, String, u64)>,
    pub(crate) event_id: String,
}

/// A `users` row: proposals created, votes counted, proposals passed, NFTs held, longest
/// streak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserRow {
    pub(crate) created: i64,
    pub(crate) votes: i64,
    pub(crate) passed: i64,
    pub(crate) nfts: i64,
    pub(crate) streak: i64,
}

/// A `benefits` row: multiplier, held tiered tokens as (token, tier), config version.
pub(crate) type BenefitRow = (i64, Vec<(String, String)>, i64);

/// An `nfts` row: owner, tier, burned, (block, log index).
pub(crate) type NftRow = (Option<String>, Option<String>, bool, (i64, i64));

/// Everything the script's end state is judged on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EndState {
    pub(crate) achievements: BTreeSet<AchievementRow>,
    /// Status and tally by proposal id.
    pub(crate) proposals: BTreeMap<String, (String, Tally)>,
    /// Votes each ProposalActor refused, by proposal id (also for proposals never created).
    pub(crate) refused: BTreeMap<String, u64>,
    pub(crate) votes: BTreeMap<(String, String), VoteRow>,
    pub(crate) benefits: BTreeMap<String, BenefitRow>,
    pub(crate) users: BTreeMap<String, UserRow>,
    pub(crate) nfts: BTreeMap<String, NftRow>,
}

impl EndState {
    /// What differs from `expected`, part by part: each differing part's name with its
    /// differing entries (empty when nothing does).
    pub(crate) fn differences(&self, expected: &EndState) -> Vec<(&'static str, String)> {
        let mut achievements = String::new();
        for a in self.achievements.difference(&expected.achievements) {
            achievements += &format!("  unexpected {a:?}\n");
        }
        for a in expected.achievements.difference(&self.achievements) {
            achievements += &format!("  missing {a:?}\n");
        }
        let parts = [
            ("achievements", achievements),
            (
                "tallies (proposal status and tally)",
                diff_maps(&self.proposals, &expected.proposals),
            ),
            ("refused votes", diff_maps(&self.refused, &expected.refused)),
            (
                "vote weights (choice, weight, boosts)",
                diff_maps(&self.votes, &expected.votes),
            ),
            ("benefits", diff_maps(&self.benefits, &expected.benefits)),
            ("user counters", diff_maps(&self.users, &expected.users)),
            ("nfts", diff_maps(&self.nfts, &expected.nfts)),
        ];
        parts.into_iter().filter(|(_, d)| !d.is_empty()).collect()
    }
}

/// The entries of `got` and `expected` that differ, one line each ("" when none does).
fn diff_maps<K: Ord + Debug, V: PartialEq + Debug>(
    got: &BTreeMap<K, V>,
    expected: &BTreeMap<K, V>,
) -> String {
    let keys: BTreeSet<&K> = got.keys().chain(expected.keys()).collect();
    let mut out = String::new();
    for k in keys {
        let (g, e) = (got.get(k), expected.get(k));
        if g != e {
            out += &format!("  [{k:?}]: got {g:?}, expected {e:?}\n");
        }
    }
    out
}

/// Fails, after `context`, naming each part of the end state that differs from `expected`
/// (achievements, tallies, refused votes, vote weights, benefits, user counters, nfts) with
/// what differs in it.
pub(crate) fn assert_same_end_state(got: &EndState, expected: &EndState, context: &str) {
    let diffs = got.differences(expected);
    let parts: Vec<&str> = diffs.iter().map(|(part, _)| *part).collect();
    let details: String = diffs
        .iter()
        .map(|(part, diff)| format!("{part}:\n{diff}"))
        .collect();
    assert!(
        diffs.is_empty(),
        "{context}: the {} differ:\n{details}",
        parts.join(", ")
    );
}

/// Waits until the store holds `expected`; after `secs`, fails naming the parts that differ.
pub(crate) async fn wait_end_state(secs: u64, store: &Store, expected: &EndState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = read_end_state(store).await;
        if got.differences(expected).is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            assert_same_end_state(
                &got,
                expected,
                "timed out waiting for the script's end state",
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn boosts_of(v: &Value) -> Vec<(String, String, u64)> {
    v.as_array()
        .expect("boosts is an array")
        .iter()
        .map(|b| {
            (
                b["token"].as_str().expect("token").to_string(),
                b["tier"].as_str().expect("tier").to_string(),
                b["bonus_bps"].as_u64().expect("bonus"),
            )
        })
        .collect()
}

fn held_of(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("boosting_nfts is an array")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().expect("token").to_string(),
                pair[1].as_str().expect("tier").to_string(),
            )
        })
        .collect()
}

/// Every row of entity `E`'s table (`what` names it in a failure).
async fn all<E: EntityTrait>(store: &Store, what: &str) -> Vec<E::Model> {
    E::find().all(store.db()).await.expect(what)
}

pub(crate) async fn read_achievements(store: &Store) -> BTreeSet<AchievementRow> {
    all::<achievement::Entity>(store, "read achievements")
        .await
        .into_iter()
        .map(|a| AchievementRow {
            user: a.user,
            rule: a.rule_id,
            tier: a.tier,
            rule_version: a.rule_version,
            id: a.id,
            token: a.token_id,
            state: a.state,
        })
        .collect()
}

pub(crate) async fn read_benefits(store: &Store) -> BTreeMap<String, BenefitRow> {
    all::<benefit::Entity>(store, "read benefits")
        .await
        .into_iter()
        .map(|b| {
            (
                b.user,
                (
                    b.multiplier_bps,
                    held_of(&b.boosting_nfts),
                    b.config_version,
                ),
            )
        })
        .collect()
}

pub(crate) async fn read_votes(store: &Store) -> BTreeMap<(String, String), VoteRow> {
    all::<vote::Entity>(store, "read votes")
        .await
        .into_iter()
        .map(|v| {
            (
                (v.proposal_id, v.voter),
                VoteRow {
                    choice: v.choice,
                    weight: v.weight,
                    boosts: boosts_of(&v.boosts),
                    event_id: v.event_id,
                },
            )
        })
        .collect()
}

pub(crate) async fn read_proposals(store: &Store) -> BTreeMap<String, (String, Tally)> {
    all::<proposal::Entity>(store, "read proposals")
        .await
        .into_iter()
        .map(|p| {
            let tally = serde_json::from_value(p.tally).expect("tally");
            (p.id, (p.status, tally))
        })
        .collect()
}

pub(crate) async fn read_refused(store: &Store) -> BTreeMap<String, u64> {
    actor::Entity::find()
        .filter(actor::Column::Kind.eq(ActorKind::Proposal.as_str()))
        .all(store.db())
        .await
        .expect("read proposal actors")
        .into_iter()
        .map(|a| {
            let refused = a.state["refused_votes"].as_u64().expect("refused_votes");
            (a.key, refused)
        })
        .collect()
}

pub(crate) async fn read_users(store: &Store) -> BTreeMap<String, UserRow> {
    all::<user::Entity>(store, "read users")
        .await
        .into_iter()
        .map(|u| {
            let counter = |k: &str| u.counters[k].as_i64().expect("counter");
            let row = UserRow {
                created: u.proposals_created,
                votes: u.votes_cast,
                passed: counter("proposals_passed"),
                nfts: counter("nfts_held"),
                streak: counter("longest_streak"),
            };
            (u.address, row)
        })
        .collect()
}

async fn read_nfts(store: &Store) -> BTreeMap<String, NftRow> {
    all::<nft::Entity>(store, "read nfts")
        .await
        .into_iter()
        .map(|n| {
            (
                n.token_id,
                (n.owner, n.tier, n.burned, (n.last_block, n.last_log_index)),
            )
        })
        .collect()
}

pub(crate) async fn read_end_state(store: &Store) -> EndState {
    EndState {
        achievements: read_achievements(store).await,
        proposals: read_proposals(store).await,
        refused: read_refused(store).await,
        votes: read_votes(store).await,
        benefits: read_benefits(store).await,
        users: read_users(store).await,
        nfts: read_nfts(store).await,
    }
}

pub(crate) async fn status_of(store: &Store, proposal_id: &str) -> Option<String> {
    proposal::Entity::find_by_id(proposal_id.to_string())
        .one(store.db())
        .await
        .expect("read proposal")
        .map(|p| p.status)
}

/// How many holding changes `user`'s actor applied: each adds one `user.benefits.changed`
/// to the user's notification log. (Not the snapshot's version: a turn may apply several
/// queued events with one write.)
pub(crate) async fn holding_changes_applied(store: &Store, user: u32) -> u64 {
    notification::Entity::find()
        .filter(notification::Column::User.eq(addr(user)))
        .filter(notification::Column::Kind.eq("user.benefits.changed"))
        .count(store.db())
        .await
        .expect("notifications")
}

pub(crate) fn tally(
    for_weight: u64,
    against_weight: u64,
    abstain_weight: u64,
    voters: u64,
) -> Tally {
    Tally {
        for_weight,
        against_weight,
        abstain_weight,
        voters,
    }
}

pub(crate) fn held(tokens: &[(&str, &str)]) -> Vec<(String, String)> {
    tokens
        .iter()
        .map(|(t, tier)| (t.to_string(), tier.to_string()))
        .collect()
}
