//! Unit tests of the proposal domain: the shared read, votes and their weight, the close
//! decision and the voters' fan-out.

use merit_messages::{
    Address, DeadlinePhase, ProposalCreated, ProposalDeadline, ProposalFanout, ProposalOutcome,
    VoteCast,
};

use super::held::ReadFailed;
use super::*;
use crate::domain::{apply_to_copy, Applied};

#[test]
fn a_failed_shared_read_keeps_an_outage_an_outage() {
    use merit_storage::{
        sea_orm::{DbErr, RuntimeErr},
        StorageError,
    };
    let unavailable = |e: StorageError| match e {
        StorageError::Db(db) => crate::shell::is_unavailable(&db),
        _ => false,
    };
    let outage = StorageError::Db(DbErr::Conn(RuntimeErr::Internal("refused".into())));
    assert!(unavailable(ReadFailed::new(&outage).error()));
    let refused = StorageError::Db(DbErr::Custom("no such column".into()));
    let again = ReadFailed::new(&refused).error();
    assert!(again.to_string().contains("no such column"), "{again}");
    assert!(!unavailable(again));
}

fn created(quorum: u64) -> Envelope {
    let now = Utc::now();
    Envelope::new(
        "t",
        ProposalCreated {
            proposal: "p".parse().expect("id"),
            creator: Address([9; 20]),
            title: "t".into(),
            description: String::new(),
            starts_at: now - chrono::Duration::minutes(1),
            ends_at: now + chrono::Duration::hours(1),
            quorum,
            threshold_bps: 5000,
        },
    )
}

fn vote(b: u8, choice: VoteChoice) -> Envelope {
    Envelope::new(
        "t",
        VoteCast {
            proposal: "p".parse().expect("id"),
            voter: Address([b; 20]),
            choice,
            reason: None,
        },
    )
}

fn apply(state: &ProposalState, event: &Envelope, held: &[(&str, &str)]) -> Applied<ProposalState> {
    let inputs = ProposalInputs {
        seq: Some(7),
        held: HeldNfts {
            tokens: held
                .iter()
                .map(|(t, tier)| (t.to_string(), tier.parse().expect("tier")))
                .collect(),
        },
        now: Some(Utc::now()),
    };
    apply_to_copy::<ProposalDomain>(&DynamicConfig::builtin(), "p", state, event, &inputs)
}

#[test]
fn first_vote_is_final_and_tally_is_the_sum_of_counted_weights() {
    let mut s = apply(&ProposalState::default(), &created(1), &[]).state;
    assert_eq!(s.info.as_ref().map(|i| i.seq), Some(7));
    for (b, c) in [
        (1, VoteChoice::For),
        (2, VoteChoice::Against),
        (1, VoteChoice::Against),
        (3, VoteChoice::Abstain),
    ] {
        s = apply(&s, &vote(b, c), &[]).state;
    }
    assert_eq!(s.tally.voters, 3);
    assert_eq!(s.refused_votes, 1);
    assert_eq!(s.tally.for_weight, BASE_WEIGHT);
    assert_eq!(
        3 * BASE_WEIGHT,
        s.tally.for_weight + s.tally.against_weight + s.tally.abstain_weight,
        "the tally is the sum of the counted weights"
    );
}

fn apply_at(state: &ProposalState, event: &Envelope, now: DateTime<Utc>) -> Applied<ProposalState> {
    let inputs = ProposalInputs {
        now: Some(now),
        ..ProposalInputs::default()
    };
    apply_to_copy::<ProposalDomain>(&DynamicConfig::builtin(), "p", state, event, &inputs)
}

#[test]
fn a_backdated_vote_counts_only_within_the_grace_by_merit_s_clock() {
    let s = apply(&ProposalState::default(), &created(1), &[]).state;
    let ends_at = s.info.as_ref().map(|i| i.ends_at).expect("info");
    let grace = chrono::Duration::seconds(
        i64::try_from(DynamicConfig::builtin().limits.vote_grace_secs).expect("grace"),
    );
    // Stamped inside the window by the producer; applied past ends_at + grace.
    let late = apply_at(&s, &vote(1, VoteChoice::For), ends_at + grace);
    assert_eq!((late.state.tally.voters, late.state.refused_votes), (0, 1));
    assert!(late.emit.is_empty());
    // Applied within the grace (queued before the end): counted.
    let queued = apply_at(&s, &vote(1, VoteChoice::For), ends_at + grace / 2);
    assert_eq!(queued.state.tally.voters, 1);
    // Applied before the window opened, whatever it claims: refused.
    let starts_at = s.info.as_ref().map(|i| i.starts_at).expect("info");
    let early = apply_at(
        &s,
        &vote(2, VoteChoice::For),
        starts_at - chrono::Duration::seconds(1),
    );
    assert_eq!(early.state.refused_votes, 1);
}

#[test]
fn own_votes_are_marked_and_a_refused_creation_emits_nothing() {
    let s = apply(&ProposalState::default(), &created(1), &[]);
    assert_eq!(s.emit.len(), 1, "governance.proposal.accepted");
    assert_eq!(
        s.emit[0].event_type().as_str(),
        "governance.proposal.accepted"
    );
    let own = apply(&s.state, &vote(9, VoteChoice::For), &[]);
    match &own.emit[0].event {
        Event::VoteRecorded(r) => assert!(r.own_proposal),
        other => panic!("{other:?}"),
    }
    let zero = apply(&ProposalState::default(), &created(0), &[]);
    assert!(
        zero.state.info.is_none() && zero.emit.is_empty(),
        "quorum 0 refused"
    );
}

#[test]
fn a_vote_before_creation_is_refused() {
    let s = apply(&ProposalState::default(), &vote(1, VoteChoice::For), &[]).state;
    assert_eq!((s.tally.voters, s.refused_votes), (0, 1));
}

#[test]
fn one_nft_boosts_one_vote_per_proposal_whoever_holds_it() {
    let s = apply(&ProposalState::default(), &created(1), &[]).state;
    let first = apply(&s, &vote(1, VoteChoice::For), &[("42", "gold")]);
    assert_eq!(first.state.tally.for_weight, 1_500, "gold gives +50%");
    assert_eq!(first.emit.len(), 1);
    // The token moved to voter 2, who votes next: no second boost.
    let second = apply(&first.state, &vote(2, VoteChoice::For), &[("42", "gold")]);
    assert_eq!(second.state.tally.for_weight, 2_500);
}

/// The deadline timer's close of proposal `p`, due at its end.
fn close_deadline(s: &ProposalState) -> Envelope {
    let ends_at = s.info.as_ref().map(|i| i.ends_at).expect("info");
    Envelope::with_id(
        merit_messages::EventId::named("p:close"),
        "timer",
        ends_at,
        ProposalDeadline {
            proposal: "p".parse().expect("id"),
            phase: DeadlinePhase::Close,
            due_at: ends_at,
        },
    )
}

#[test]
fn closing_decides_by_quorum_and_threshold() {
    let s = apply(&ProposalState::default(), &created(2_000), &[]).state;
    let s = apply(&s, &vote(1, VoteChoice::For), &[]).state;
    let close = close_deadline(&s);
    let closed = apply(&s, &close, &[]);
    assert_eq!(
        closed.state.status,
        ProposalStatus::Defeated,
        "1000 < quorum 2000"
    );
    let types: Vec<&str> = closed
        .emit
        .iter()
        .map(|e| e.event_type().as_str())
        .collect();
    assert_eq!(
        types,
        ["governance.proposal.closed", "governance.proposal.fanout"],
        "the creator is told, and the voters' fan-out starts"
    );
    let late = apply(&closed.state, &vote(2, VoteChoice::For), &[]);
    assert_eq!(late.state.tally.voters, 1, "no votes after close");
    let again = apply(&closed.state, &close, &[]);
    assert!(!again.changed, "a closed proposal closes once");
}

fn voter(i: u32) -> Address {
    let mut a = [0u8; 20];
    a[..4].copy_from_slice(&i.to_be_bytes());
    a[19] = 1;
    Address(a)
}

#[test]
fn every_voter_is_told_the_outcome_once_in_batches() {
    const VOTERS: u32 = 2_500;
    let mut s = apply(&ProposalState::default(), &created(1), &[]).state;
    for i in 0..VOTERS {
        let cast = Envelope::new(
            "t",
            VoteCast {
                proposal: "p".parse().expect("id"),
                voter: voter(i),
                choice: VoteChoice::For,
                reason: None,
            },
        );
        s = apply(&s, &cast, &[]).state;
    }
    assert_eq!(s.tally.voters, u64::from(VOTERS));
    // A fan-out for an open proposal is ignored (only closing starts one).
    let early = ProposalFanout {
        proposal: "p".parse().expect("id"),
        after: None,
    };
    assert!(apply(&s, &Envelope::new("t", early), &[]).emit.is_empty());

    let close = close_deadline(&s);
    let closed = apply(&s, &close, &[]);
    let mut next = closed
        .emit
        .into_iter()
        .find(|e| e.event_type() == merit_messages::EventType::ProposalFanout);
    let (mut told, mut turns, mut ids) = (Vec::new(), 0, BTreeSet::new());
    while let Some(fanout) = next.take() {
        turns += 1;
        let batch = apply(&closed.state, &fanout, &[]);
        assert!(!batch.changed, "a fan-out turn changes nothing");
        // The same fan-out delivered again emits the same ids.
        let again = apply(&closed.state, &fanout, &[]);
        assert_eq!(
            batch.emit.iter().map(|e| e.id).collect::<Vec<_>>(),
            again.emit.iter().map(|e| e.id).collect::<Vec<_>>()
        );
        for e in batch.emit {
            assert!(ids.insert(e.id), "ids are unique");
            match e.event {
                Event::ProposalResult(r) => {
                    assert_eq!(r.outcome, ProposalOutcome::Succeeded);
                    assert_eq!(r.tally.voters, u64::from(VOTERS));
                    assert_eq!(e.keys.user, Some(r.voter), "addressed to the voter");
                    told.push(r.voter.to_string());
                }
                Event::ProposalFanout(_) => next = Some(e),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(turns, 3, "2,500 voters in batches of {FANOUT_BATCH}");
    let expected: Vec<String> = closed.state.voters.iter().cloned().collect();
    assert_eq!(told, expected, "each voter once, in address order");
}
