//! The simulated community: proposals created, votes published at a steady rate, NFTs
//! traded on the dev chain, and the wait until the node has settled it all.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use merit_chain::DevChain;
use merit_mailbox::Outgoing;
use merit_messages::{Address, Envelope, ProposalCreated, VoteCast, VoteChoice};
use merit_storage::{
    entities::{
        achievement::{self, AchievementState},
        nft, outbox, proposal,
    },
    sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter},
};
use rand::{rngs::StdRng, Rng};

use super::{
    report::{bar, progress},
    DemoArgs, DemoShape, Sent, CREATORS, SETTLE, VOTING,
};
use crate::serve::Running;

/// Publishes `governance.proposal.created` for every proposal, open for [`VOTING`], by a
/// few creators; returns how many were published.
pub(super) async fn create_proposals(
    running: &Running,
    args: &DemoArgs,
    users: &[Address],
) -> Result<u64> {
    let now = Utc::now();
    let mut batch = Vec::new();
    for p in 0..args.proposals {
        batch.push(Envelope::new(
            "merit-demo",
            ProposalCreated {
                proposal: format!("demo-{p}").parse().context("proposal id")?,
                creator: users[(p % CREATORS) as usize],
                title: format!("Community proposal #{p}"),
                description: "Simulated by merit demo".to_string(),
                starts_at: now - chrono::Duration::seconds(1),
                ends_at: now + chrono::Duration::from_std(VOTING).unwrap_or_default(),
                quorum: 20_000,
                threshold_bps: 5_000,
            },
        ));
    }
    publish(running, &batch).await?;
    Ok(batch.len() as u64)
}

/// The votes of the community, in proposal order, as `--shape` spreads them.
pub(super) fn votes(args: &DemoArgs, users: &[Address], rng: &mut StdRng) -> Result<Vec<Envelope>> {
    let mut votes = Vec::new();
    let voted_on = match args.shape {
        DemoShape::Spread => args.proposals,
        DemoShape::HotProposal => args.proposals.min(1),
    };
    for p in 0..voted_on {
        for voter in users {
            if args.shape == DemoShape::HotProposal || rng.gen_bool(0.8) {
                // Every third proposal is unpopular, so some are defeated.
                let against_from = if p % 3 == 2 { 3 } else { 6 };
                let roll = rng.gen_range(0..10);
                let choice = if roll == 9 {
                    VoteChoice::Abstain
                } else if roll >= against_from {
                    VoteChoice::Against
                } else {
                    VoteChoice::For
                };
                votes.push(Envelope::new(
                    "merit-demo",
                    VoteCast {
                        proposal: format!("demo-{p}").parse().context("proposal id")?,
                        voter: *voter,
                        choice,
                        reason: None,
                    },
                ));
            }
        }
    }
    Ok(votes)
}

/// Publishes `votes` at `rate` per second, in 50 ms ticks, noting when each went out;
/// returns how many were published.
pub(super) async fn publish_votes(
    running: &Running,
    votes: &[Envelope],
    rate: u32,
    sent: &Sent,
) -> Result<u64> {
    let total_votes = votes.len();
    let tick = Duration::from_millis(50);
    let per_tick = (rate as usize * tick.as_millis() as usize / 1000).max(1);
    let mut published = 0;
    let mut next = Instant::now();
    for (i, chunk) in votes.chunks(per_tick).enumerate() {
        {
            let mut sent = sent.lock().unwrap_or_else(|p| p.into_inner());
            for v in chunk {
                if let merit_messages::Event::VoteCast(c) = &v.event {
                    sent.insert(
                        (c.proposal.to_string(), c.voter.to_string()),
                        Instant::now(),
                    );
                }
            }
        }
        publish(running, chunk).await?;
        published += chunk.len() as u64;
        progress(&format!(
            "voting      {}  {}/{} votes",
            bar((i + 1) * per_tick, total_votes),
            ((i + 1) * per_tick).min(total_votes),
            total_votes
        ));
        next += tick;
        tokio::time::sleep_until(next.into()).await;
    }
    Ok(published)
}

/// Trades NFTs on the dev chain once enough are minted, and waits (at most [`SETTLE`])
/// until the proposals are closed, the achievements settled and the outbox empty; returns
/// the NFTs traded.
pub(super) async fn settle(
    running: &Running,
    dev: Option<&DevChain>,
    args: &DemoArgs,
    users: &[Address],
    rng: &mut StdRng,
) -> Result<u32> {
    let db = running.store.db();
    let mut traded = 0u32;
    let deadline = Instant::now() + SETTLE;
    loop {
        let open_proposals = proposal::Entity::find()
            .filter(proposal::Column::Status.is_in(["pending", "active"]))
            .count(db)
            .await?;
        let in_flight = achievement::Entity::find()
            .filter(
                achievement::Column::State
                    .is_in([AchievementState::Unlocked, AchievementState::Reserved]),
            )
            .count(db)
            .await?;
        let pending_outbox = outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .count(db)
            .await?;
        let minted = nft::Entity::find().count(db).await?;
        let total = achievement::Entity::find().count(db).await?;
        if let Some(dev) = dev {
            if traded < args.trades && minted >= u64::from(args.trades) {
                traded += trade(dev, db, users, args.trades - traded, rng).await?;
            }
        }
        progress(&format!(
            "settling    {}  achievements {}/{} settled, {minted} NFTs, {open_proposals} proposals open",
            bar((total - in_flight) as usize, total.max(1) as usize),
            total - in_flight,
            total
        ));
        let trades_done = dev.is_none() || traded >= args.trades;
        if open_proposals == 0 && in_flight == 0 && pending_outbox == 0 && trades_done {
            return Ok(traded);
        }
        if Instant::now() > deadline {
            eprintln!(
                "\nmerit demo: not settled after {SETTLE:?}; the summary shows where it stands"
            );
            return Ok(traded);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn publish(running: &Running, envelopes: &[Envelope]) -> Result<()> {
    running
        .transport
        .publish(envelopes.iter().map(Outgoing::from_envelope).collect())
        .await
        .context("publish")
}

/// Moves up to `n` NFTs from their holders to other users, directly on the dev chain (not
/// through merit): the listener brings the change back as `nft.transferred`.
async fn trade(
    dev: &DevChain,
    db: &merit_storage::sea_orm::DatabaseConnection,
    users: &[Address],
    n: u32,
    rng: &mut StdRng,
) -> Result<u32> {
    let held = nft::Entity::find()
        .filter(nft::Column::Burned.eq(false))
        .all(db)
        .await?;
    let mut done = 0;
    for row in held.into_iter().take(n as usize) {
        let (Some(owner), Ok(token)) = (row.owner.as_deref(), row.token_id.parse()) else {
            continue;
        };
        let Ok(from) = owner.parse::<Address>() else {
            continue;
        };
        let to = users[rng.gen_range(0..users.len())];
        if to != from && dev.transfer(from, to, &token).is_ok() {
            done += 1;
        }
    }
    Ok(done)
}
