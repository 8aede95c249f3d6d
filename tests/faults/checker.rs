//! The checker: merit's tables counted against the ledger (and, on anvil, the chain) for
//! votes, achievements, NFTs and notifications lost, doubled or unexpected.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use merit_chain::{Chain, EthersChain, ZERO_ADDRESS};
use merit_storage::{
    entities::{achievement, nft, notification, proposal, saga, user, vote},
    sea_orm::EntityTrait,
    Store,
};

use crate::ledger::Ledger;

/// Lost, doubled and unexpected effects of one kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    lost: u64,
    doubled: u64,
    unexpected: u64,
}

impl Tally {
    fn clean(&self) -> bool {
        *self == Tally::default()
    }
}

/// What the checker found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Votes the broker confirmed to `merit simulate`.
    pub(crate) confirmed: u64,
    /// Votes it published without a confirm (refused, or in flight at a broker outage):
    /// each may or may not have been stored.
    pub(crate) unconfirmed: u64,
    /// `votes` rows.
    pub(crate) counted: u64,
    pub(crate) achievements: u64,
    pub(crate) minted: u64,
    pub(crate) notifications: u64,
    pub(crate) votes: Tally,
    pub(crate) achievements_tally: Tally,
    pub(crate) nfts: Tally,
    pub(crate) notifications_tally: Tally,
    /// Sagas not `completed` (running, compensated, failed, stuck).
    pub(crate) sagas_not_completed: u64,
}

impl Verdict {
    pub(crate) fn clean(&self) -> bool {
        self.votes.clean()
            && self.achievements_tally.clean()
            && self.nfts.clean()
            && self.notifications_tally.clean()
            && self.sagas_not_completed == 0
    }
}

fn saturating(a: i64) -> u64 {
    u64::try_from(a.max(0)).unwrap_or(0)
}

/// The tables the checker reads.
struct Rows {
    votes: Vec<vote::Model>,
    users: Vec<user::Model>,
    proposals: Vec<proposal::Model>,
    achievements: Vec<achievement::Model>,
    nfts: Vec<nft::Model>,
    notes: Vec<notification::Model>,
    sagas: Vec<saga::Model>,
}

impl Rows {
    async fn read(store: &Store) -> Self {
        let db = store.db();
        Self {
            votes: vote::Entity::find().all(db).await.expect("votes"),
            users: user::Entity::find().all(db).await.expect("users"),
            proposals: proposal::Entity::find().all(db).await.expect("proposals"),
            achievements: achievement::Entity::find()
                .all(db)
                .await
                .expect("achievements"),
            nfts: nft::Entity::find().all(db).await.expect("nfts"),
            notes: notification::Entity::find()
                .all(db)
                .await
                .expect("notifications"),
            sagas: saga::Entity::find().all(db).await.expect("sagas"),
        }
    }
}

/// Votes counted per voter: by the voter's actor (own votes excluded) and notified to the
/// voter (own votes included).
struct VotesBy<'a> {
    cast_by: HashMap<&'a str, i64>,
    recorded_for: HashMap<&'a str, i64>,
}

/// Counts effects against what was sent, event id by event id. `chain`: a view of the
/// real chain, to check every token on it too.
pub(crate) async fn check(store: &Store, ledger: &Ledger, chain: Option<&EthersChain>) -> Verdict {
    let confirmed = Ledger::confirmed(&ledger.votes);
    let unconfirmed = ledger.votes.len() as u64 - confirmed;
    let rows = Rows::read(store).await;
    let achievements = &rows.achievements;
    let mut v = Verdict {
        confirmed,
        unconfirmed,
        counted: rows.votes.len() as u64,
        achievements: achievements.len() as u64,
        minted: achievements.iter().filter(|a| a.state == "minted").count() as u64,
        notifications: rows.notes.len() as u64,
        sagas_not_completed: rows.sagas.iter().filter(|s| s.state != "completed").count() as u64,
        ..Verdict::default()
    };
    let by = check_votes(&rows, ledger, &mut v);
    check_proposals(&rows, ledger, &mut v);
    check_achievements(&rows, &by, &mut v);
    check_nfts(&rows, &mut v);
    if let Some(chain) = chain {
        check_chain(&rows, chain, &mut v).await;
    }
    check_notifications(&rows, &by, &mut v);
    v
}

/// Votes, by event id: each confirmed vote is a row, for its proposal and voter (a vote
/// without a confirm may be one too); no row is for an id never sent, no id or
/// (proposal, voter) has two rows; and each row is counted once by its voter's actor
/// and once in its proposal's tally.
/// A vote on one's own proposal is in the tally but not in the voter's counters or
/// achievements.
fn check_votes<'a>(rows: &'a Rows, ledger: &Ledger, v: &mut Verdict) -> VotesBy<'a> {
    let (votes, proposals) = (&rows.votes, &rows.proposals);
    let creator_of: HashMap<&str, &str> = proposals
        .iter()
        .map(|p| (p.id.as_str(), p.creator.as_str()))
        .collect();
    let own = |row: &&vote::Model| {
        creator_of
            .get(row.proposal_id.as_str())
            .is_some_and(|c| c.eq_ignore_ascii_case(&row.voter))
    };
    let counted = i64::try_from(votes.len()).expect("count");
    let counted_for_users = i64::try_from(votes.iter().filter(|r| !own(r)).count()).expect("count");
    let mut by = VotesBy {
        cast_by: HashMap::new(),
        // Own votes included: each counted vote is notified to its voter.
        recorded_for: HashMap::new(),
    };
    let mut rows_of: HashMap<&str, u64> = HashMap::new();
    let mut pairs: BTreeSet<(&str, &str)> = BTreeSet::new();
    for row in votes {
        *by.recorded_for.entry(row.voter.as_str()).or_default() += 1;
        if !own(&row) {
            *by.cast_by.entry(row.voter.as_str()).or_default() += 1;
        }
        *rows_of.entry(row.event_id.as_str()).or_default() += 1;
        if !pairs.insert((row.proposal_id.as_str(), row.voter.as_str())) {
            v.votes.doubled += 1;
        }
        match ledger.votes.get(&row.event_id) {
            Some(sent)
                if sent.proposal == row.proposal_id
                    && sent.user.eq_ignore_ascii_case(&row.voter) => {}
            _ => v.votes.unexpected += 1,
        }
    }
    v.votes.lost = ledger
        .votes
        .iter()
        .filter(|(id, sent)| sent.confirmed && !rows_of.contains_key(id.as_str()))
        .count() as u64;
    v.votes.doubled += rows_of.values().map(|n| n - 1).sum::<u64>();
    let at_users: i64 = rows.users.iter().map(|u| u.votes_cast).sum();
    let in_tallies: i64 = proposals
        .iter()
        .map(|p| p.tally["voters"].as_i64().unwrap_or(0))
        .sum();
    v.votes.lost += saturating(counted_for_users - at_users) + saturating(counted - in_tallies);
    v.votes.doubled += saturating(at_users - counted_for_users) + saturating(in_tallies - counted);
    by
}

/// Every confirmed proposal exists, as created by its creator (votes on a lost one
/// would be dead-lettered, which the vote counts would show too).
fn check_proposals(rows: &Rows, ledger: &Ledger, v: &mut Verdict) {
    let created: HashMap<&str, &str> = rows
        .proposals
        .iter()
        .map(|p| (p.id.as_str(), p.creator.as_str()))
        .collect();
    for sent in ledger.proposals.values().filter(|s| s.confirmed) {
        match created.get(sent.proposal.as_str()) {
            Some(creator) if creator.eq_ignore_ascii_case(&sent.user) => {}
            Some(_) => v.votes.unexpected += 1,
            None => v.votes.lost += 1,
        }
    }
}

/// Achievements: the count rules are recomputed from the rows — "voter-10" for every
/// voter with at least 10 counted votes, "first-proposal" for every creator — and no
/// (user, rule) unlocks twice.
fn check_achievements(rows: &Rows, by: &VotesBy<'_>, v: &mut Verdict) {
    let mut expected: BTreeSet<(String, &str)> = by
        .cast_by
        .iter()
        .filter(|(_, n)| **n >= 10)
        .map(|(u, _)| (u.to_string(), "voter-10"))
        .collect();
    expected.extend(
        rows.proposals
            .iter()
            .map(|p| (p.creator.clone(), "first-proposal")),
    );
    let mut unlocked: BTreeMap<(String, String), u64> = BTreeMap::new();
    for a in &rows.achievements {
        *unlocked
            .entry((a.user.clone(), a.rule_id.clone()))
            .or_default() += 1;
    }
    for (user, rule) in &expected {
        if !unlocked.contains_key(&(user.clone(), rule.to_string())) {
            v.achievements_tally.lost += 1;
        }
    }
    for ((user, rule), n) in &unlocked {
        v.achievements_tally.doubled += n - 1;
        let counted_rule = rule == "voter-10" || rule == "first-proposal";
        if counted_rule && !expected.contains(&(user.clone(), rule.as_str())) {
            v.achievements_tally.unexpected += 1;
        }
    }
}

/// NFTs: every achievement minted exactly once, as the token reserved for it, to its
/// user; no token that no achievement asked for.
fn check_nfts(rows: &Rows, v: &mut Verdict) {
    let by_achievement: HashMap<&str, &nft::Model> = rows
        .nfts
        .iter()
        .filter_map(|n| Some((n.achievement_id.as_deref()?, n)))
        .collect();
    for a in &rows.achievements {
        match by_achievement.get(a.id.as_str()) {
            Some(n) if a.state == "minted" && a.token_id.as_deref() == Some(&n.token_id) => {}
            Some(_) if a.state == "minted" => v.nfts.unexpected += 1,
            _ => v.nfts.lost += 1,
        }
    }
    v.nfts.unexpected += rows
        .nfts
        .iter()
        .filter(|n| n.achievement_id.is_none())
        .count() as u64;
}

/// On the real chain: every minted achievement's token minted exactly once, and no token
/// minted that no achievement reserved.
async fn check_chain(rows: &Rows, chain: &EthersChain, v: &mut Verdict) {
    let achievements = &rows.achievements;
    let head = chain.head_block().await.expect("head block");
    let mut mints: HashMap<String, u64> = HashMap::new();
    for log in chain.logs(0, head).await.expect("Transfer logs") {
        if log.from == ZERO_ADDRESS {
            *mints.entry(log.token_id.to_string()).or_default() += 1;
        }
    }
    let reserved: BTreeSet<&str> = achievements
        .iter()
        .filter_map(|a| a.token_id.as_deref())
        .collect();
    for a in achievements.iter().filter(|a| a.state == "minted") {
        let token = a.token_id.as_deref().unwrap_or_default();
        match mints.get(token).copied().unwrap_or(0) {
            0 => v.nfts.lost += 1,
            1 => {}
            n => v.nfts.doubled += n - 1,
        }
    }
    v.nfts.unexpected += mints
        .keys()
        .filter(|t| !reserved.contains(t.as_str()))
        .count() as u64;
}

/// Notifications: each user's log is gap-free from 1, holds each event once, and has
/// one `vote.recorded` per counted vote, one `achievement.unlocked` per achievement and
/// one `achievement.minted` per minted one.
fn check_notifications(rows: &Rows, by: &VotesBy<'_>, v: &mut Verdict) {
    let recorded_for = &by.recorded_for;
    let mut logs: HashMap<&str, Vec<&notification::Model>> = HashMap::new();
    for n in &rows.notes {
        logs.entry(n.user.as_str()).or_default().push(n);
    }
    let mut unlocked_by: HashMap<&str, (i64, i64)> = HashMap::new();
    for a in &rows.achievements {
        let e = unlocked_by.entry(a.user.as_str()).or_default();
        e.0 += 1;
        if a.state == "minted" {
            e.1 += 1;
        }
    }
    let mut people: BTreeSet<&str> = logs.keys().copied().collect();
    people.extend(recorded_for.keys().copied());
    people.extend(unlocked_by.keys().copied());
    for who in people {
        let log = logs.get(who).map(Vec::as_slice).unwrap_or_default();
        let max_seq = log.iter().map(|n| n.seq).max().unwrap_or(0);
        v.notifications_tally.lost += saturating(max_seq - log.len() as i64);
        let distinct: BTreeSet<(&str, &str)> = log
            .iter()
            .map(|n| (n.event_id.as_str(), n.kind.as_str()))
            .collect();
        v.notifications_tally.doubled += (log.len() - distinct.len()) as u64;
        let of = |kind: &str| distinct.iter().filter(|(_, k)| *k == kind).count() as i64;
        let (unlocks, mints) = unlocked_by.get(who).copied().unwrap_or_default();
        for (have, want) in [
            (
                of("governance.vote.recorded"),
                recorded_for.get(who).copied().unwrap_or(0),
            ),
            (of("achievement.unlocked"), unlocks),
            (of("achievement.minted"), mints),
        ] {
            v.notifications_tally.lost += saturating(want - have);
            v.notifications_tally.unexpected += saturating(have - want);
        }
    }
}
