//! The proposal's event handlers: creation, votes and their weight, the deadlines,
//! cancellation and execution, the close decision and the voters' fan-out.

use std::ops::Bound::{Excluded, Unbounded};

use merit_config::dynamic::{DynamicConfig, UNIT_BPS};
use merit_messages::{
    Address, Boost, DeadlinePhase, Envelope, Event, ProposalAccepted, ProposalCancelled,
    ProposalClosed, ProposalCreated, ProposalDeadline, ProposalExecuted, ProposalFanout,
    ProposalOutcome, ProposalResult, Tally, VoteCast, VoteChoice, VoteRecorded,
};

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{
    ProposalEffects, ProposalInfo, ProposalInputs, ProposalState, ProposalStatus, VoteRecord,
    BASE_WEIGHT, FANOUT_BATCH,
};
use crate::{domain::Decision, user::HeldNfts};

/// `governance.proposal.created` for a proposal not yet created: accepted within the
/// configured limits, with the sequence number `prepare` allocated.
pub(super) fn on_created(
    config: &DynamicConfig,
    state: &mut ProposalState,
    event: &Envelope,
    p: &ProposalCreated,
    inputs: &ProposalInputs,
) -> Decision {
    let now = inputs.now.unwrap_or(event.occurred_at);
    if let Err((field, why)) = config
        .limits
        .check_proposal(p.starts_at, p.ends_at, p.quorum, now)
    {
        // Refused: the proposal does not exist, and nothing is emitted, so no
        // achievement can come of it (the inbox row keeps it applied once).
        tracing::info!(proposal = %p.proposal, field, reason = %why,
            "proposal creation refused by the configured limits");
        return Decision::unchanged();
    }
    let Some(seq) = inputs.seq else {
        // Limits changed between prepare and apply: refuse, as above.
        return Decision::unchanged();
    };
    state.info = Some(ProposalInfo {
        creator: p.creator.to_string(),
        title: p.title.clone(),
        description: p.description.clone(),
        starts_at: p.starts_at,
        ends_at: p.ends_at,
        quorum: p.quorum,
        threshold_bps: p.threshold_bps,
        created_at: event.occurred_at,
        seq,
    });
    state.status = ProposalStatus::Pending;
    let accepted = ProposalAccepted {
        proposal: p.proposal.clone(),
        creator: p.creator,
        proposal_seq: seq,
    };
    Decision::changed().emit(event.caused("accepted", "proposal-actor", accepted))
}

/// `governance.vote.cast`: the first vote of a voter within the voting window is counted
/// with its boosts; any other is refused (counted as refused, no effect).
pub(super) fn on_vote(
    config: &DynamicConfig,
    state: &mut ProposalState,
    event: &Envelope,
    v: &VoteCast,
    inputs: &ProposalInputs,
    effects: &mut ProposalEffects,
) -> Decision {
    let voter = v.voter.to_string();
    let ballot = state
        .info
        .as_ref()
        .filter(|info| in_voting_window(config, state.status, info, event, inputs))
        .map(|info| (info.seq, info.creator == voter));
    let Some((seq, own_proposal)) = ballot.filter(|_| !state.voters.contains(&voter)) else {
        state.refused_votes += 1;
        return Decision::changed();
    };
    let (weight, multiplier, boosts) = weigh(config, &state.boosted, &inputs.held);
    count_vote(state, &voter, v.choice, weight, &boosts);
    let recorded = VoteRecorded {
        proposal: v.proposal.clone(),
        proposal_seq: seq,
        voter: v.voter,
        choice: v.choice,
        weight,
        multiplier_bps: multiplier,
        boosts: boosts.clone(),
        config_version: config.version,
        own_proposal,
    };
    effects.votes.push((
        voter,
        VoteRecord {
            choice: v.choice,
            weight,
            boosts,
            event_id: event.id.to_string(),
            cast_at: event.occurred_at,
        },
    ));
    Decision::changed().emit(event.caused("recorded", "proposal-actor", recorded))
}

/// Whether a vote falls in the voting window of an open proposal. The producer's
/// `occurred_at` must be in the window, and so must merit's own clock when the vote is
/// applied (up to the configured grace after the end, for votes queued before it): a
/// backdated `occurred_at` buys nothing.
fn in_voting_window(
    config: &DynamicConfig,
    status: ProposalStatus,
    info: &ProposalInfo,
    event: &Envelope,
    inputs: &ProposalInputs,
) -> bool {
    let now = inputs.now.unwrap_or(event.occurred_at);
    let grace =
        chrono::Duration::try_seconds(i64::try_from(config.limits.vote_grace_secs).unwrap_or(0))
            .unwrap_or_default();
    status.is_open()
        && event.occurred_at >= info.starts_at
        && event.occurred_at < info.ends_at
        && now >= info.starts_at
        && info
            .ends_at
            .checked_add_signed(grace)
            .is_none_or(|last| now < last)
}

/// The weight of a vote from the holder of `held`, its multiplier and its boosts: only
/// tokens that have not boosted a vote on this proposal yet can boost it.
fn weigh(
    config: &DynamicConfig,
    boosted: &BTreeSet<String>,
    held: &HeldNfts,
) -> (u64, u32, Vec<Boost>) {
    let candidates = held
        .tokens
        .iter()
        .filter(|(token, _)| !boosted.contains(token))
        .map(|(token, tier)| (token, tier));
    let (chosen, multiplier) = config.boost(candidates);
    let weight = BASE_WEIGHT * u64::from(multiplier) / u64::from(UNIT_BPS);
    let boosts = chosen
        .into_iter()
        .filter_map(|(token, tier, bonus_bps)| {
            Some(Boost {
                token: token.parse().ok()?,
                tier,
                bonus_bps,
            })
        })
        .collect();
    (weight, multiplier, boosts)
}

/// Adds a counted vote to the tally; its voter and boosting tokens are remembered so
/// neither counts again. The first vote opens a pending proposal.
fn count_vote(
    state: &mut ProposalState,
    voter: &str,
    choice: VoteChoice,
    weight: u64,
    boosts: &[Boost],
) {
    match choice {
        VoteChoice::For => state.tally.for_weight += weight,
        VoteChoice::Against => state.tally.against_weight += weight,
        VoteChoice::Abstain => state.tally.abstain_weight += weight,
    }
    state.tally.voters += 1;
    state.voters.insert(voter.to_string());
    state
        .boosted
        .extend(boosts.iter().map(|b| b.token.to_string()));
    if state.status == ProposalStatus::Pending {
        state.status = ProposalStatus::Active;
    }
}

/// `governance.proposal.deadline`: opens a pending proposal at its start, closes an open
/// one at its end.
pub(super) fn on_deadline(
    state: &mut ProposalState,
    event: &Envelope,
    d: &ProposalDeadline,
) -> Decision {
    let Some(info) = &state.info else {
        return Decision::unchanged();
    };
    match d.phase {
        DeadlinePhase::Open
            if state.status == ProposalStatus::Pending && event.occurred_at >= info.starts_at =>
        {
            state.status = ProposalStatus::Active;
            Decision::changed()
        }
        DeadlinePhase::Close if state.status.is_open() && event.occurred_at >= info.ends_at => {
            let (outcome, _) = decide(info, &state.tally);
            let closed_at = info.ends_at;
            close(state, event, &d.proposal, outcome, closed_at)
        }
        // Early (a forged or clock-skewed deadline), or already applied.
        _ => Decision::unchanged(),
    }
}

/// `governance.proposal.cancelled`: only the creator cancels, and only an open proposal.
pub(super) fn on_cancelled(
    state: &mut ProposalState,
    event: &Envelope,
    c: &ProposalCancelled,
) -> Decision {
    let Some(info) = &state.info else {
        return Decision::unchanged();
    };
    if !state.status.is_open() || c.by.to_string() != info.creator {
        return Decision::unchanged();
    }
    close(
        state,
        event,
        &c.proposal,
        ProposalOutcome::Cancelled,
        event.occurred_at,
    )
}

/// Closes a created proposal with `outcome` at `closed_at`: `governance.proposal.closed`
/// tells the creator and the first fan-out starts telling the voters.
fn close(
    state: &mut ProposalState,
    event: &Envelope,
    proposal: &merit_messages::ProposalId,
    outcome: ProposalOutcome,
    closed_at: DateTime<Utc>,
) -> Decision {
    let Some(info) = &state.info else {
        return Decision::unchanged();
    };
    let quorum_reached = decide(info, &state.tally).1;
    let closed = closed_event(
        proposal,
        info,
        outcome,
        state.tally,
        quorum_reached,
        closed_at,
    );
    state.status = match outcome {
        ProposalOutcome::Succeeded => ProposalStatus::Succeeded,
        ProposalOutcome::Defeated => ProposalStatus::Defeated,
        ProposalOutcome::Cancelled => ProposalStatus::Cancelled,
    };
    state.closed_at = Some(closed_at);
    let decision = Decision::changed().emit(event.caused("closed", "proposal-actor", closed));
    start_fanout(decision, state, event, proposal)
}

/// `governance.proposal.executed`: only the creator carries out, and only a succeeded
/// proposal.
pub(super) fn on_executed(state: &mut ProposalState, e: &ProposalExecuted) -> Decision {
    let by_creator = state
        .info
        .as_ref()
        .is_some_and(|info| info.creator == e.by.to_string());
    if state.status != ProposalStatus::Succeeded || !by_creator {
        return Decision::unchanged();
    }
    state.status = ProposalStatus::Executed;
    Decision::changed()
}

/// The voters of `events` that `state` has not counted: whose tokens a vote reads.
pub(super) fn new_voters<'e>(
    state: &ProposalState,
    events: impl IntoIterator<Item = &'e Envelope>,
) -> Vec<String> {
    events
        .into_iter()
        .filter_map(|e| match &e.event {
            Event::VoteCast(v) if !state.voters.contains(&v.voter.to_string()) => {
                Some(v.voter.to_string())
            }
            _ => None,
        })
        .collect()
}

/// The outcome of closing with `tally`, and whether the quorum was reached.
fn decide(info: &ProposalInfo, tally: &Tally) -> (ProposalOutcome, bool) {
    let total = tally.for_weight + tally.against_weight + tally.abstain_weight;
    let quorum_reached = total >= info.quorum;
    let decisive = u128::from(tally.for_weight + tally.against_weight);
    let passes = tally.for_weight > 0
        && u128::from(tally.for_weight) * 10_000 >= u128::from(info.threshold_bps) * decisive;
    let outcome = if quorum_reached && passes {
        ProposalOutcome::Succeeded
    } else {
        ProposalOutcome::Defeated
    };
    (outcome, quorum_reached)
}

/// Adds the first fan-out to a closing `decision`, when the proposal has voters.
fn start_fanout(
    decision: Decision,
    state: &ProposalState,
    event: &Envelope,
    proposal: &merit_messages::ProposalId,
) -> Decision {
    if state.voters.is_empty() {
        return decision;
    }
    let first = ProposalFanout {
        proposal: proposal.clone(),
        after: None,
    };
    decision.emit(event.caused("fanout", "proposal-actor", first))
}

/// One fan-out turn: a `governance.proposal.result` for each of the next
/// [`FANOUT_BATCH`] voters after `f.after`, and the fan-out for the batch after that.
/// Changes nothing: the cursor travels in the events.
pub(super) fn fanout_batch(
    state: &ProposalState,
    event: &Envelope,
    f: &ProposalFanout,
) -> Decision {
    let (Some(info), Some(closed_at)) = (&state.info, state.closed_at) else {
        return Decision::unchanged();
    };
    let outcome = match state.status {
        ProposalStatus::Succeeded | ProposalStatus::Executed => ProposalOutcome::Succeeded,
        ProposalStatus::Defeated => ProposalOutcome::Defeated,
        ProposalStatus::Cancelled => ProposalOutcome::Cancelled,
        // Only a closed proposal fans out (a forged fan-out for an open one is ignored).
        ProposalStatus::Pending | ProposalStatus::Active => return Decision::unchanged(),
    };
    let quorum_reached = decide(info, &state.tally).1;
    let after = f.after.map(|a| a.to_string());
    let start = match &after {
        Some(a) => (Excluded(a.as_str()), Unbounded),
        None => (Unbounded, Unbounded),
    };
    let mut decision = Decision::unchanged();
    let mut last = None;
    for voter in state.voters.range::<str, _>(start).take(FANOUT_BATCH) {
        let Ok(address) = voter.parse::<Address>() else {
            continue;
        };
        let result = ProposalResult {
            proposal: f.proposal.clone(),
            voter: address,
            outcome,
            tally: state.tally,
            quorum_reached,
            closed_at,
        };
        decision =
            decision.emit(event.caused(&format!("result:{voter}"), "proposal-actor", result));
        last = Some((voter, address));
    }
    if let Some((voter, address)) = last {
        let more = state
            .voters
            .range::<str, _>((Excluded(voter.as_str()), Unbounded))
            .next()
            .is_some();
        if more {
            let next = ProposalFanout {
                proposal: f.proposal.clone(),
                after: Some(address),
            };
            decision = decision.emit(event.caused("fanout", "proposal-actor", next));
        }
    }
    decision
}

fn closed_event(
    proposal: &merit_messages::ProposalId,
    info: &ProposalInfo,
    outcome: ProposalOutcome,
    tally: Tally,
    quorum_reached: bool,
    closed_at: DateTime<Utc>,
) -> ProposalClosed {
    ProposalClosed {
        proposal: proposal.clone(),
        creator: info.creator.parse().unwrap_or(Address([0; 20])),
        outcome,
        tally,
        quorum_reached,
        closed_at,
    }
}

pub(super) fn choice_str(choice: VoteChoice) -> &'static str {
    match choice {
        VoteChoice::For => "for",
        VoteChoice::Against => "against",
        VoteChoice::Abstain => "abstain",
    }
}
