//! Events: the script's envelopes, with ids that are the same in every run.

use chrono::{DateTime, Utc};
use merit_messages::{
    ChainRef, Envelope, Event, EventId, NftBurned, NftMinted, NftTransferred, ProposalCreated,
    VoteCast, VoteChoice,
};

use crate::common::{self, wallet};

pub(crate) fn addr(i: u32) -> String {
    wallet(i).to_string()
}

/// The id of the script's event `label`: the same in every run, and for every copy.
pub(crate) fn id(label: &str) -> EventId {
    EventId::named(&format!("domain-test:{label}"))
}

pub(crate) fn ev(label: &str, at: DateTime<Utc>, event: impl Into<Event>) -> Envelope {
    Envelope::with_id(id(label), "domain-test", at, event)
}

pub(crate) fn created(
    label: &str,
    proposal: &str,
    creator: u32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    quorum: u64,
    threshold_bps: u16,
) -> Envelope {
    ev(
        label,
        Utc::now(),
        ProposalCreated {
            proposal: proposal.parse().expect("proposal id"),
            creator: wallet(creator),
            title: format!("Proposal {proposal}"),
            description: String::new(),
            starts_at,
            ends_at,
            quorum,
            threshold_bps,
        },
    )
}

/// `voter` votes `choice` on `proposal`; the event is labelled `vote:{proposal}:u{voter}`
/// plus `suffix`.
pub(crate) fn vote_at(
    proposal: &str,
    voter: u32,
    choice: VoteChoice,
    suffix: &str,
    at: DateTime<Utc>,
) -> Envelope {
    ev(
        &format!("vote:{proposal}:u{voter}{suffix}"),
        at,
        VoteCast {
            proposal: proposal.parse().expect("proposal id"),
            voter: wallet(voter),
            choice,
            reason: None,
        },
    )
}

pub(crate) fn vote(proposal: &str, voter: u32, choice: VoteChoice) -> Envelope {
    vote_at(proposal, voter, choice, "", Utc::now())
}

/// The chain position of a made-up event: block `block`, log `log_index`.
pub(crate) fn chain(block: u64, log_index: u64) -> ChainRef {
    ChainRef {
        log_index,
        ..common::chain_ref(block)
    }
}

pub(crate) fn mint(token: u32, to: u32, tier: Option<&str>, block: u64, log: u64) -> Envelope {
    ev(
        &format!("mint:{token}"),
        Utc::now(),
        NftMinted {
            token: token.to_string().parse().expect("token"),
            to: wallet(to),
            achievement_id: None,
            tier: tier.map(|t| t.parse().expect("tier")),
            chain: chain(block, log),
        },
    )
}

pub(crate) fn transfer(token: u32, from: u32, to: u32, block: u64, log: u64) -> Envelope {
    ev(
        &format!("transfer:{token}:{block}:{log}"),
        Utc::now(),
        NftTransferred {
            token: token.to_string().parse().expect("token"),
            from: wallet(from),
            to: wallet(to),
            chain: chain(block, log),
        },
    )
}

pub(crate) fn burn(token: u32, from: u32, block: u64, log: u64) -> Envelope {
    ev(
        &format!("burn:{token}"),
        Utc::now(),
        NftBurned {
            token: token.to_string().parse().expect("token"),
            from: wallet(from),
            chain: chain(block, log),
        },
    )
}
