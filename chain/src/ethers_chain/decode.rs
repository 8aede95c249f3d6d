//! Reading the node's answers: Transfer logs decoded, each mint with its achievement,
//! and provider errors classified, the contract's custom errors decoded.

use chrono::DateTime;
use ethers::{abi::RawLog, contract::EthEvent, providers::ProviderError, types::Log};
use merit_messages::TxHash;

use super::{
    binding::{AchievementMintedFilter, MeritAchievementErrors, TransferFilter},
    from_h160, from_u256, NONEXISTENT,
};
use crate::{
    api::{achievement_from_bytes32, TransferLog},
    error::{ChainError, Result},
};

/// Decodes Transfer logs and attaches each mint's achievement (from the
/// `AchievementMinted` log of the same transaction and token), sorted by position.
pub(super) fn decode_logs(raw: &[Log]) -> Result<Vec<TransferLog>> {
    let bad =
        |what: &str| ChainError::transient("logs", format!("node returned a log without {what}"));
    let mut achievements = std::collections::HashMap::new();
    let mut out = Vec::new();
    for log in raw.iter().filter(|l| l.removed != Some(true)) {
        let tx_hash = TxHash(
            log.transaction_hash
                .ok_or_else(|| bad("a transaction hash"))?
                .0,
        );
        let parsed = RawLog::from(log.clone());
        if let Ok(m) = <AchievementMintedFilter as EthEvent>::decode_log(&parsed) {
            achievements.insert((tx_hash, m.token_id), m.achievement_id);
            continue;
        }
        let t = <TransferFilter as EthEvent>::decode_log(&parsed).map_err(|e| {
            ChainError::transient_with("logs", format!("undecodable Transfer log: {e}"), e)
        })?;
        out.push((
            t.token_id,
            TransferLog {
                block: log
                    .block_number
                    .ok_or_else(|| bad("a block number"))?
                    .as_u64(),
                block_hash: TxHash(log.block_hash.ok_or_else(|| bad("a block hash"))?.0),
                block_time: DateTime::UNIX_EPOCH,
                log_index: log.log_index.ok_or_else(|| bad("a log index"))?.low_u64(),
                tx_hash,
                from: from_h160(t.from),
                to: from_h160(t.to),
                token_id: from_u256(t.token_id),
                achievement_id: None,
            },
        ));
    }
    let mut logs: Vec<TransferLog> = out
        .into_iter()
        .map(|(id, mut log)| {
            if log.from == crate::api::ZERO_ADDRESS {
                log.achievement_id = achievements
                    .get(&(log.tx_hash, id))
                    .copied()
                    .and_then(achievement_from_bytes32);
            }
            log
        })
        .collect();
    logs.sort_by_key(TransferLog::position);
    Ok(logs)
}

/// Classifies a provider error (see [`ErrorClass`](crate::ErrorClass)); decodes the
/// contract's custom errors.
pub(super) fn classify(op: &'static str, e: &ProviderError) -> ChainError {
    match e {
        ProviderError::HTTPError(re) if re.is_connect() => {
            ChainError::unavailable(op, "connection refused or unreachable")
        }
        ProviderError::HTTPError(re) if re.is_timeout() => {
            ChainError::transient(op, "HTTP timeout")
        }
        ProviderError::HTTPError(re) => ChainError::transient(
            op,
            format!(
                "HTTP error: {}",
                re.status()
                    .map_or_else(|| "transport failure".to_string(), |s| s.to_string())
            ),
        ),
        ProviderError::JsonRpcClientError(inner) => match inner.as_error_response() {
            Some(rpc) if rpc.is_revert() => {
                let decoded = rpc.decode_revert_data::<MeritAchievementErrors>();
                if let Some(MeritAchievementErrors::MeritOwnerChanged(x)) = &decoded {
                    return ChainError::OwnerChanged {
                        op,
                        token: from_u256(x.token_id),
                        expected: from_h160(x.expected_owner),
                        holder: Some(from_h160(x.owner)),
                    };
                }
                let reason = match decoded {
                    Some(MeritAchievementErrors::AccessControlUnauthorizedAccount(x)) => format!(
                        "AccessControlUnauthorizedAccount: {} lacks role 0x{}",
                        from_h160(x.account),
                        hex::encode(x.needed_role)
                    ),
                    Some(MeritAchievementErrors::ERC721NonexistentToken(x)) => {
                        format!("{NONEXISTENT}: token {}", x.token_id)
                    }
                    Some(MeritAchievementErrors::ERC721InvalidSender(_)) => {
                        "ERC721InvalidSender: the token already exists".to_string()
                    }
                    Some(other) => format!("{other:?}"),
                    None => rpc.message.clone(),
                };
                ChainError::permanent(op, format!("reverted: {reason}"))
            }
            Some(rpc) => {
                let msg = rpc.message.to_ascii_lowercase();
                let transient = [
                    "nonce too low",
                    "nonce too high",
                    "already known",
                    "underpriced",
                    "header not found",
                    "rate limit",
                    "limit exceeded",
                    "timeout",
                    "timed out",
                    "busy",
                    "try again",
                ];
                if transient.iter().any(|t| msg.contains(t)) || rpc.code == -32005 {
                    ChainError::transient(
                        op,
                        format!("node said {} (code {})", rpc.message, rpc.code),
                    )
                } else {
                    ChainError::permanent(
                        op,
                        format!("node said {} (code {})", rpc.message, rpc.code),
                    )
                }
            }
            None => ChainError::transient(op, inner.to_string()),
        },
        other => ChainError::transient(op, other.to_string()),
    }
}
