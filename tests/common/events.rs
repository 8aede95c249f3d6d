//! Producer events the tests publish.

/// The `i`-th test wallet (distinct for every `i`).
pub fn wallet(i: u32) -> merit_messages::Address {
    let mut a = [0u8; 20];
    a[16..].copy_from_slice(&(i + 1).to_be_bytes());
    merit_messages::Address(a)
}

/// A `governance.proposal.created` for `id`, open from a minute ago for a week, so votes
/// published now are counted.
pub fn open_proposal(id: &str) -> merit_messages::Envelope {
    let now = chrono::Utc::now();
    merit_messages::Envelope::new(
        "test",
        merit_messages::ProposalCreated {
            proposal: id.parse().expect("proposal id"),
            creator: wallet(999_999),
            title: format!("Proposal {id}"),
            description: String::new(),
            starts_at: now - chrono::Duration::minutes(1),
            ends_at: now + chrono::Duration::days(7),
            quorum: 1,
            threshold_bps: 5_000,
        },
    )
}

/// A `governance.vote.cast` by `voter` on `proposal`, published by `source`.
pub fn vote_cast(
    source: &str,
    proposal: &str,
    voter: merit_messages::Address,
    choice: merit_messages::VoteChoice,
) -> merit_messages::Envelope {
    merit_messages::Envelope::new(
        source,
        merit_messages::VoteCast {
            proposal: proposal.parse().expect("proposal id"),
            voter,
            choice,
            reason: None,
        },
    )
}

/// A chain position for events a test makes up: chain 31337 (anvil's), block `block`.
pub fn chain_ref(block: u64) -> merit_messages::ChainRef {
    merit_messages::ChainRef {
        chain_id: 31337,
        block_number: block,
        block_hash: merit_messages::TxHash([7; 32]),
        tx_hash: merit_messages::TxHash([8; 32]),
        log_index: 0,
    }
}

/// Step `step` of `tokens` NFTs (token ids `0..tokens`): their mint (step 0) to `wallet(t)`,
/// then transfer `step`, from `wallet(t + step - 1)` to `wallet(t + step)`, at block
/// `step + 1`. The NftActor ignores a change older than the last it applied, so a
/// reordered transfer is dropped, and with it the two `user.holdings.changed` it emits:
/// strict per-key order emits exactly `1 + 2 × hops` per token.
pub fn nft_step(step: u32, tokens: u32) -> Vec<merit_mailbox::Outgoing> {
    use merit_messages::{Envelope, NftMinted, NftTransferred};
    (0..tokens)
        .map(|t| {
            let token = t.to_string().parse().expect("token");
            let chain = chain_ref(u64::from(step) + 1);
            let env = if step == 0 {
                Envelope::new(
                    "order-test",
                    NftMinted {
                        token,
                        to: wallet(t),
                        achievement_id: None,
                        tier: None,
                        chain,
                    },
                )
            } else {
                Envelope::new(
                    "order-test",
                    NftTransferred {
                        token,
                        from: wallet(t + step - 1),
                        to: wallet(t + step),
                        chain,
                    },
                )
            };
            merit_mailbox::Outgoing::from_envelope(&env)
        })
        .collect()
}

/// `governance.proposal.created` for proposal `id` by `creator`, from `source`: a first
/// proposal unlocks the "first-proposal" achievement.
pub fn proposal_created_by(
    source: &str,
    creator: merit_messages::Address,
    id: &str,
) -> merit_messages::Envelope {
    let now = chrono::Utc::now();
    merit_messages::Envelope::new(
        source,
        merit_messages::ProposalCreated {
            proposal: id.parse().expect("proposal id"),
            creator,
            title: "A proposal".into(),
            description: String::new(),
            starts_at: now,
            ends_at: now + chrono::Duration::days(1),
            quorum: 1,
            threshold_bps: 5_000,
        },
    )
}

/// Publishes an open proposal (see [`open_proposal`]) for each of `p-0` .. `p-{n-1}`.
pub async fn publish_open_proposals<T: merit_mailbox::Transport + ?Sized>(producer: &T, n: u32) {
    let proposals: Vec<merit_mailbox::Outgoing> = (0..n)
        .map(|p| merit_mailbox::Outgoing::from_envelope(&open_proposal(&format!("p-{p}"))))
        .collect();
    producer
        .publish(proposals)
        .await
        .expect("publish proposals");
}
