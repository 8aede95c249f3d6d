//! Proptest strategies: every event type with arbitrary fields, and an envelope around one.

use chrono::{DateTime, TimeZone, Utc};
use merit_messages::*;
use proptest::prelude::*;
use uuid::Uuid;

fn arb_address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>().prop_map(Address)
}

fn arb_hash() -> impl Strategy<Value = TxHash> {
    any::<[u8; 32]>().prop_map(TxHash)
}

fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_000_000_000).prop_map(|s| Utc.timestamp_opt(s, 0).single().expect("in range"))
}

fn arb_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,64}"
}

fn arb_token() -> impl Strategy<Value = TokenId> {
    any::<u128>().prop_map(TokenId::from)
}

fn arb_chain() -> impl Strategy<Value = ChainRef> {
    (
        any::<u64>(),
        any::<u64>(),
        arb_hash(),
        arb_hash(),
        any::<u64>(),
    )
        .prop_map(
            |(chain_id, block_number, block_hash, tx_hash, log_index)| ChainRef {
                chain_id,
                block_number,
                block_hash,
                tx_hash,
                log_index,
            },
        )
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        arb_proposal_created(),
        arb_vote_cast(),
        arb_proposal_closed(),
        arb_achievement_unlocked(),
        arb_achievement_revoked(),
        arb_nft_minted(),
        arb_nft_transferred(),
        arb_nft_burned(),
        arb_benefits_changed(),
        arb_holdings_changed(),
        arb_config_changed(),
    ]
}

fn arb_proposal_created() -> impl Strategy<Value = Event> {
    (
        arb_id(),
        arb_address(),
        "\\PC{1,200}",
        "\\PC{0,300}",
        arb_time(),
        1i64..1_000_000,
        any::<u64>(),
        1u16..=10_000,
    )
        .prop_map(
            |(p, creator, title, description, starts_at, len, quorum, threshold_bps)| {
                Event::from(ProposalCreated {
                    proposal: p.parse().expect("valid id"),
                    creator,
                    title,
                    description,
                    starts_at,
                    ends_at: starts_at + chrono::Duration::seconds(len),
                    quorum,
                    threshold_bps,
                })
            },
        )
}

fn arb_vote_cast() -> impl Strategy<Value = Event> {
    let choice = prop_oneof![
        Just(VoteChoice::For),
        Just(VoteChoice::Against),
        Just(VoteChoice::Abstain)
    ];
    (
        arb_id(),
        arb_address(),
        choice,
        proptest::option::of("\\PC{0,100}"),
    )
        .prop_map(|(p, voter, choice, reason)| {
            Event::from(VoteCast {
                proposal: p.parse().expect("valid id"),
                voter,
                choice,
                reason,
            })
        })
}

fn arb_proposal_closed() -> impl Strategy<Value = Event> {
    (
        arb_id(),
        arb_address(),
        any::<[u64; 4]>(),
        any::<bool>(),
        arb_time(),
    )
        .prop_map(|(p, creator, t, q, closed_at)| {
            Event::from(ProposalClosed {
                proposal: p.parse().expect("valid id"),
                creator,
                outcome: if q {
                    ProposalOutcome::Succeeded
                } else {
                    ProposalOutcome::Defeated
                },
                tally: Tally {
                    for_weight: t[0],
                    against_weight: t[1],
                    abstain_weight: t[2],
                    voters: t[3],
                },
                quorum_reached: q,
                closed_at,
            })
        })
}

fn arb_achievement_unlocked() -> impl Strategy<Value = Event> {
    (
        arb_address(),
        any::<u128>(),
        arb_id(),
        any::<u64>(),
        arb_id(),
        arb_token(),
    )
        .prop_map(|(user, a, rule, rule_version, tier, token)| {
            Event::from(AchievementUnlocked {
                user,
                achievement_id: Uuid::from_u128(a),
                rule: rule.parse().expect("valid id"),
                rule_version,
                tier: tier.parse().expect("valid id"),
                token,
            })
        })
}

fn arb_achievement_revoked() -> impl Strategy<Value = Event> {
    (arb_address(), any::<u128>(), arb_id(), "\\PC{1,100}").prop_map(|(user, a, rule, reason)| {
        Event::from(AchievementRevoked {
            user,
            achievement_id: Uuid::from_u128(a),
            rule: rule.parse().expect("valid id"),
            reason,
        })
    })
}

fn arb_nft_minted() -> impl Strategy<Value = Event> {
    (
        arb_token(),
        arb_address(),
        proptest::option::of(any::<u128>()),
        arb_chain(),
    )
        .prop_map(|(token, to, a, chain)| {
            Event::from(NftMinted {
                token,
                to,
                achievement_id: a.map(Uuid::from_u128),
                tier: None,
                chain,
            })
        })
}

fn arb_nft_transferred() -> impl Strategy<Value = Event> {
    (arb_token(), arb_address(), arb_address(), arb_chain()).prop_map(|(token, from, to, chain)| {
        Event::from(NftTransferred {
            token,
            from,
            to,
            chain,
        })
    })
}

fn arb_nft_burned() -> impl Strategy<Value = Event> {
    (arb_token(), arb_address(), arb_chain())
        .prop_map(|(token, from, chain)| Event::from(NftBurned { token, from, chain }))
}

fn arb_benefits_changed() -> impl Strategy<Value = Event> {
    (
        arb_address(),
        any::<u32>(),
        proptest::collection::vec(arb_token(), 0..5),
        any::<u64>(),
    )
        .prop_map(|(user, multiplier_bps, boosting_nfts, config_version)| {
            Event::from(BenefitsChanged {
                user,
                multiplier_bps,
                boosting_nfts,
                config_version,
            })
        })
}

fn arb_holdings_changed() -> impl Strategy<Value = Event> {
    (
        arb_address(),
        arb_token(),
        any::<bool>(),
        proptest::option::of(arb_id()),
        any::<(u64, u64)>(),
    )
        .prop_map(|(user, token, acquired, tier, position)| {
            Event::from(HoldingsChanged {
                user,
                token,
                change: if acquired {
                    HoldingChange::Acquired
                } else {
                    HoldingChange::Released
                },
                tier: tier.map(|t| t.parse().expect("valid id")),
                position,
            })
        })
}

fn arb_config_changed() -> impl Strategy<Value = Event> {
    (
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        "\\PC{1,100}",
        "\\PC{0,200}",
    )
        .prop_map(|(version, previous, author, reason)| {
            Event::from(ConfigChanged {
                version,
                previous,
                rollback_of: None,
                author,
                reason,
            })
        })
}

pub(crate) fn arb_envelope() -> impl Strategy<Value = Envelope> {
    (
        arb_event(),
        any::<u128>(),
        "[a-z0-9:-]{1,128}",
        arb_time(),
        any::<u128>(),
        proptest::option::of(any::<u128>()),
    )
        .prop_map(|(event, id, source, at, corr, cause)| {
            let mut env = Envelope::with_id(EventId(Uuid::from_u128(id)), source, at, event);
            env.correlation_id = Uuid::from_u128(corr);
            env.causation_id = cause.map(|c| EventId(Uuid::from_u128(c)));
            env
        })
}
