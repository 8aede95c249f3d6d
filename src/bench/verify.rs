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
    let mut bad = Mismatches::default();
    let proposals: Vec<String> = (0..PROPOSALS).map(|p| format!("{tag}-{p}")).collect();

    let mut expected: HashSet<(String, String)> = HashSet::with_capacity(n as usize);
    for i in 0..n {
        let (v, p) = shape.vote(i, n);
        expected.insert((format!("{tag}-{p}"), voter(v).to_string()));
        // Proposal p is created by voter p.
        if v != p {
            *votes_cast.entry(v).or_default() += 1;
        }
    }
    let rows = vote::Entity::find()
        .filter(vote::Column::ProposalId.is_in(proposals.iter().cloned()))
        .all(store.db())
        .await?;
    let sent_ids: HashSet<&str> = vote_ids.iter().map(String::as_str).collect();
    let mut row_ids = HashSet::with_capacity(rows.len());
    let mut per_proposal: HashMap<&str, u64> = HashMap::new();
    for row in &rows {
        *per_proposal.entry(row.proposal_id.as_str()).or_default() += 1;
        if !expected.contains(&(row.proposal_id.clone(), row.voter.clone())) {
            bad.add(format!(
                "a vote row never sent: {} by {}",
                row.proposal_id, row.voter
            ));
        }
        if !sent_ids.contains(row.event_id.as_str()) {
            bad.add(format!(
                "a vote row with an id never sent: {}",
                row.event_id
            ));
        }
        if !row_ids.insert(row.event_id.as_str()) {
            bad.add(format!("vote {} stored twice", row.event_id));
        }
    }
    if rows.len() != n as usize {
        bad.add(format!("{} vote rows for {n} votes sent", rows.len()));
    }

    let mut tally_voters = 0;
    for p in proposal::Entity::find()
        .filter(proposal::Column::Id.is_in(proposals.iter().cloned()))
        .all(store.db())
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
            bad.add(format!(
                "proposal {}: tally counts {voters} voters, {stored} vote rows",
                p.id
            ));
        }
    }
    if tally_voters != u64::from(n) {
        bad.add(format!("tallies count {tally_voters} voters for {n} votes"));
    }

    let proposal_inbox = inbox_rows(
        store,
        &merit_actors::inbox_consumer(ActorKind::Proposal, Origin::Producer),
        vote_ids,
    )
    .await?;
    if proposal_inbox != u64::from(n) {
        bad.add(format!(
            "the ProposalActors' inbox holds {proposal_inbox} of {n} votes"
        ));
    }
    let user_inbox = inbox_rows(
        store,
        &merit_actors::inbox_consumer(ActorKind::User, Origin::Merit),
        recorded_ids,
    )
    .await?;
    if user_inbox != u64::from(n) {
        bad.add(format!(
            "the UserActors' inbox holds {user_inbox} of {n} vote.recorded"
        ));
    }

    let addresses: HashMap<String, u32> = votes_cast
        .keys()
        .map(|v| (voter(*v).to_string(), *v))
        .collect();
    let mut counted: HashMap<u32, u64> = HashMap::new();
    let keys: Vec<String> = addresses.keys().cloned().collect();
    for chunk in keys.chunks(1_000) {
        for u in user::Entity::find()
            .filter(user::Column::Address.is_in(chunk.iter().cloned()))
            .all(store.db())
            .await?
        {
            if let Some(v) = addresses.get(&u.address) {
                counted.insert(*v, u64::try_from(u.votes_cast).unwrap_or(0));
            }
        }
    }
    let mut voters: Vec<_> = votes_cast.iter().collect();
    voters.sort();
    for (v, due) in voters {
        let got = counted.get(v).copied().unwrap_or(0);
        if got != *due {
            bad.add(format!("voter {}: votes_cast {got}, {due} sent", voter(*v)));
        }
    }

    anyhow::ensure!(
        bad.seen == 0,
        "stage '{tag}': votes not counted exactly once ({} difference(s)): {}",
        bad.seen,
        bad.first.join("; ")
    );
    Ok(Counted {
        sent: n,
        vote_rows: rows.len() as u64,
        tally_voters,
        proposal_inbox,
        user_inbox,
    })
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
