//! After each voting stage: was every vote counted exactly once? Read from the run's
//! database, against what the load generator published:
//!
//! - the `votes` rows of the stage's proposals are exactly the (proposal, voter) pairs
//!   sent, each with the id of a vote sent, no id twice;
//! - each proposal's stored tally counts as many voters as it has rows;
//! - the ProposalActors' inbox holds every vote's id, the UserActors' inbox every
//!   `vote.recorded` id;
//! - each voter's `votes_cast` is the number of its votes sent so far on proposals it did
//!   not create (a vote on one's own proposal counts in the tally, not for the voter).
//!
//! A mismatch is an error naming the first few differences: the bench then exits
//! non-zero, which is what CI's small run checks.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use merit_messages::{ActorKind, Origin};
use merit_storage::{
    entities::{inbox, proposal, user, vote},
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    Store,
};
use serde::Serialize;

use super::{voter, Shape, PROPOSALS};

/// What one stage's check read.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(super) struct Counted {
    /// Votes published.
    pub(super) sent: u32,
    /// `votes` rows of the stage's proposals.
    pub(super) vote_rows: u64,
    /// Voters counted in the stage's proposals' tallies, summed.
    pub(super) tally_voters: u64,
    /// ProposalActor inbox rows of the stage's votes.
    pub(super) proposal_inbox: u64,
    /// UserActor inbox rows of the stage's `vote.recorded`s.
    pub(super) user_inbox: u64,
}

/// Lists differences, keeping the first few.
#[derive(Default)]
struct Mismatches {
    seen: usize,
    first: Vec<String>,
}

impl Mismatches {
    fn add(&mut self, what: String) {
        self.seen += 1;
        if self.first.len() < 10 {
            self.first.push(what);
        }
    }
}

/// Checks stage `tag`: `n` votes of `shape` with ids `vote_ids` and their
/// `vote.recorded` ids `recorded_ids`. `votes_cast` holds, by voter index, the votes
/// each voter should have counted before this stage; it is advanced by this stage's.
pub(super) async fn votes(
    store: &Store,
    tag: &str,
    shape: Shape,
    n: u32,
    vote_ids: &[String],
    recorded_ids: &[String],
    votes_cast: &mut HashMap<u32, u64>,
) -> Result<Counted> {
    let mut check = Check {
        store,
        n,
        proposals: (0..PROPOSALS).map(|p| format!("{tag}-{p}")).collect(),
        bad: Mismatches::default(),
    };
    let expected = sent(tag, shape, n, votes_cast);
    let (vote_rows, per_proposal) = check.vote_rows(&expected, vote_ids).await?;
    let tally_voters = check.tallies(&per_proposal).await?;
    let proposal_inbox = check
        .inbox(
            ActorKind::Proposal,
            Origin::Producer,
            vote_ids,
            ("ProposalActors", "votes"),
        )
        .await?;
    let user_inbox = check
        .inbox(
            ActorKind::User,
            Origin::Merit,
            recorded_ids,
            ("UserActors", "vote.recorded"),
        )
        .await?;
    check.votes_cast(votes_cast).await?;

    let bad = check.bad;
    anyhow::ensure!(
        bad.seen == 0,
        "stage '{tag}': votes not counted exactly once ({} difference(s)): {}",
        bad.seen,
        bad.first.join("; ")
    );
    Ok(Counted {
        sent: n,
        vote_rows,
        tally_voters,
        proposal_inbox,
        user_inbox,
    })
}

/// The (proposal, voter) pairs of stage `tag`'s `n` votes of `shape`; advances
/// `votes_cast` by them.
fn sent(
    tag: &str,
    shape: Shape,
    n: u32,
    votes_cast: &mut HashMap<u32, u64>,
) -> HashSet<(String, String)> {
    let mut expected = HashSet::with_capacity(n as usize);
    for i in 0..n {
        let (v, p) = shape.vote(i, n);
        expected.insert((format!("{tag}-{p}"), voter(v).to_string()));
        // Proposal p is created by voter p.
        if v != p {
            *votes_cast.entry(v).or_default() += 1;
        }
    }
    expected
}

/// One stage's check: each step reads one part of the database and notes what differs
/// from what was sent, so that one run reports every kind of difference.
struct Check<'a> {
    store: &'a Store,
    /// Votes sent.
    n: u32,
    /// The stage's proposal ids.
    proposals: Vec<String>,
    bad: Mismatches,
}

impl Check<'_> {
    /// The stage's `votes` rows against the `expected` pairs and the ids sent; returns how
    /// many rows, and how many per proposal id.
    async fn vote_rows(
        &mut self,
        expected: &HashSet<(String, String)>,
        vote_ids: &[String],
    ) -> Result<(u64, HashMap<String, u64>)> {
        let rows = vote::Entity::find()
            .filter(vote::Column::ProposalId.is_in(self.proposals.iter().cloned()))
            .all(self.store.db())
            .await?;
        let sent_ids: HashSet<&str> = vote_ids.iter().map(String::as_str).collect();
        let mut row_ids = HashSet::with_capacity(rows.len());
        let mut per_proposal: HashMap<String, u64> = HashMap::new();
        for row in &rows {
            *per_proposal.entry(row.proposal_id.clone()).or_default() += 1;
            if !expected.contains(&(row.proposal_id.clone(), row.voter.clone())) {
                self.bad.add(format!(
                    "a vote row never sent: {} by {}",
                    row.proposal_id, row.voter
                ));
            }
            if !sent_ids.contains(row.event_id.as_str()) {
                self.bad.add(format!(
                    "a vote row with an id never sent: {}",
                    row.event_id
                ));
            }
            if !row_ids.insert(row.event_id.as_str()) {
                self.bad.add(format!("vote {} stored twice", row.event_id));
            }
        }
        let n = self.n;
        if rows.len() != n as usize {
            self.bad
                .add(format!("{} vote rows for {n} votes sent", rows.len()));
        }
        Ok((rows.len() as u64, per_proposal))
    }

    /// Each proposal's stored tally against its `votes` rows (`per_proposal`); returns
    /// the voters the tallies count, summed.
    async fn tallies(&mut self, per_proposal: &HashMap<String, u64>) -> Result<u64> {
        let mut tally_voters = 0;
        for p in proposal::Entity::find()
            .filter(proposal::Column::Id.is_in(self.proposals.iter().cloned()))
            .all(self.store.db())
            .await?
        {
            let voters = p
                .tally
                .get("voters")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            tally_voters += voters;
            let stored = per_proposal.get(p.id.as_str()).copied().unwrap_or(0);
            if voters != stored {
                self.bad.add(format!(
                    "proposal {}: tally counts {voters} voters, {stored} vote rows",
                    p.id
                ));
            }
        }
        let n = self.n;
        if tally_voters != u64::from(n) {
            self.bad
                .add(format!("tallies count {tally_voters} voters for {n} votes"));
        }
        Ok(tally_voters)
    }

    /// The inbox rows of `kind`'s actors consuming from `origin` among `ids`, one per id
    /// sent; `actors` and `messages` name them in a difference. Returns how many.
    async fn inbox(
        &mut self,
        kind: ActorKind,
        origin: Origin,
        ids: &[String],
        (actors, messages): (&str, &str),
    ) -> Result<u64> {
        let consumer = merit_actors::inbox_consumer(kind, origin);
        let found = inbox_rows(self.store, &consumer, ids).await?;
        let n = self.n;
        if found != u64::from(n) {
            self.bad.add(format!(
                "the {actors}' inbox holds {found} of {n} {messages}"
            ));
        }
        Ok(found)
    }

    /// Each voter's stored `votes_cast` against the votes it should have counted.
    async fn votes_cast(&mut self, votes_cast: &HashMap<u32, u64>) -> Result<()> {
        let addresses: HashMap<String, u32> = votes_cast
            .keys()
            .map(|v| (voter(*v).to_string(), *v))
            .collect();
        let mut counted: HashMap<u32, u64> = HashMap::new();
        let keys: Vec<String> = addresses.keys().cloned().collect();
        for chunk in keys.chunks(1_000) {
            for u in user::Entity::find()
                .filter(user::Column::Address.is_in(chunk.iter().cloned()))
                .all(self.store.db())
                .await?
            {
                if let Some(v) = addresses.get(&u.address) {
                    counted.insert(*v, merit_storage::column::to_u64(u.votes_cast));
                }
            }
        }
        let mut voters: Vec<_> = votes_cast.iter().collect();
        voters.sort();
        for (v, due) in voters {
            let got = counted.get(v).copied().unwrap_or(0);
            if got != *due {
                self.bad
                    .add(format!("voter {}: votes_cast {got}, {due} sent", voter(*v)));
            }
        }
        Ok(())
    }
}

/// Inbox rows of `consumer` among `ids`.
async fn inbox_rows(store: &Store, consumer: &str, ids: &[String]) -> Result<u64> {
    let mut found = 0;
    for chunk in ids.chunks(1_000) {
        found += inbox::Entity::find()
            .filter(inbox::Column::Consumer.eq(consumer))
            .filter(inbox::Column::EventId.is_in(chunk.iter().cloned()))
            .all(store.db())
            .await?
            .len() as u64;
    }
    Ok(found)
}
