//! Pure mapping from chain logs to merit's NFT events. A mint (from the zero address)
//! becomes `nft.minted`, a burn (to the zero address) `nft.burned`, anything else
//! `nft.transferred`; the id is derived from `(chain id, tx hash, log index)`, so reading a
//! block twice yields the same envelopes (and the outbox keeps one of each).

use merit_messages::{
    ChainRef, Envelope, Event, EventId, NftBurned, NftMinted, NftTransferred, TxHash,
};

use crate::api::{TransferLog, ZERO_ADDRESS};

/// The `source` of every event the chain adapter emits.
pub fn source(chain_id: u64) -> String {
    format!("chain:{chain_id}")
}

/// The event a Transfer log stands for, or `None` for a log from and to the zero address
/// (which ERC-721 never emits).
pub fn envelope_for(chain_id: u64, log: &TransferLog) -> Option<Envelope> {
    let chain = ChainRef {
        chain_id,
        block_number: log.block,
        block_hash: log.block_hash,
        tx_hash: log.tx_hash,
        log_index: log.log_index,
    };
    let event: Event = match (log.from == ZERO_ADDRESS, log.to == ZERO_ADDRESS) {
        (true, true) => return None,
        (true, false) => NftMinted {
            token: log.token_id.clone(),
            to: log.to,
            achievement_id: log.achievement_id,
            tier: None,
            chain,
        }
        .into(),
        (false, true) => NftBurned {
            token: log.token_id.clone(),
            from: log.from,
            chain,
        }
        .into(),
        (false, false) => NftTransferred {
            token: log.token_id.clone(),
            from: log.from,
            to: log.to,
            chain,
        }
        .into(),
    };
    let id = EventId::from_chain_log(chain_id, &log.tx_hash, log.log_index);
    Some(Envelope::with_id(
        id,
        source(chain_id),
        log.block_time,
        event,
    ))
}

/// The placeholder transaction hash of an event that no single transaction caused (a
/// full-sync repair).
pub const NO_TX: TxHash = TxHash([0; 32]);

#[cfg(test)]
mod tests {
    use merit_messages::{ActorKind, Address, EventType, TokenId};

    use super::*;

    fn log(from: Address, to: Address) -> TransferLog {
        TransferLog {
            block: 7,
            block_hash: TxHash([7; 32]),
            block_time: chrono::DateTime::UNIX_EPOCH,
            log_index: 2,
            tx_hash: TxHash([9; 32]),
            from,
            to,
            token_id: TokenId::from(42u128),
            achievement_id: None,
        }
    }

    #[test]
    fn transfers_map_by_zero_address_with_deterministic_ids() {
        let a = Address([1; 20]);
        let b = Address([2; 20]);
        let cases = [
            (ZERO_ADDRESS, a, EventType::NftMinted),
            (a, b, EventType::NftTransferred),
            (b, ZERO_ADDRESS, EventType::NftBurned),
        ];
        for (from, to, expected) in cases {
            let env = envelope_for(31337, &log(from, to)).expect("a real transfer");
            assert_eq!(env.event_type(), expected);
            assert_eq!(env.id, EventId::from_chain_log(31337, &TxHash([9; 32]), 2));
            assert_eq!(env.keys.key_for(ActorKind::Nft).as_deref(), Some("42"));
            assert!(env
                .routing_headers()
                .contains(&("merit-nft", "42".to_string())));
            assert_eq!(env.source, "chain:31337");
            assert_eq!(env.occurred_at, chrono::DateTime::UNIX_EPOCH);
        }
        assert!(envelope_for(1, &log(ZERO_ADDRESS, ZERO_ADDRESS)).is_none());
    }
}
