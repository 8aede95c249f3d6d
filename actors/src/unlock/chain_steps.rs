//! The saga's chain step: the mint, sent once and polled until it has its confirmations
//! (sent again if dropped), and its compensation, a burn only of a token the user still
//! holds.

use std::time::Duration;

use merit_chain::{Chain, ErrorClass, TxStatus};
use merit_messages::{Address, TokenId};
use merit_sagas::{StepContext, StepOutcome};

use super::{MintProgress, UnlockData, UnlockDeps};

fn chain_outcome(e: merit_chain::ChainError, poll: Duration) -> StepOutcome {
    match e.class() {
        ErrorClass::Transient => StepOutcome::retry(e.to_string()),
        ErrorClass::Permanent => StepOutcome::fail(e.to_string()),
        // The endpoint is away: wait without spending attempts (the saga stalls, visibly).
        ErrorClass::Unavailable => StepOutcome::pending(
            MintProgress {
                tx: None,
                block: None,
                refused_at: None,
            },
            poll.max(Duration::from_secs(1)),
        ),
    }
}

/// Blocks a sent mint may stay unmined before it counts as dropped (and is sent again).
const DROP_GRACE_BLOCKS: u64 = 3;

pub(super) async fn mint(d: &UnlockDeps, ctx: StepContext) -> StepOutcome {
    let data: UnlockData = match ctx.data() {
        Ok(data) => data,
        Err(e) => return e.into(),
    };
    let previous: Option<MintProgress> = match ctx.previous() {
        Ok(p) => p,
        Err(e) => return e.into(),
    };
    let previous = previous.unwrap_or(MintProgress {
        tx: None,
        block: None,
        refused_at: None,
    });
    let head = match d.chain.head_block().await {
        Ok(head) => head,
        Err(e) => return chain_outcome(e, d.poll),
    };
    // Finality from the chain itself, whichever transaction minted the token (ours before
    // a crash, or one we lost track of): the token exists `confirmations` blocks deep.
    // Its id is this achievement's and only merit's minter mints, so existing means minted
    // for this unlock — to the user; who holds it now does not matter: the user may have
    // traded it the moment it was mined, and that transfer is theirs to make.
    let deep = head.saturating_sub(d.confirmations.saturating_sub(1));
    match d.chain.owner_of(&data.token, Some(deep)).await {
        Ok(Some(_)) => return StepOutcome::done(previous),
        Ok(None) => {}
        Err(e) => return chain_outcome(e, d.poll),
    }
    // Minted but not deep enough yet: wait.
    match d.chain.owner_of(&data.token, None).await {
        Ok(Some(_)) => return StepOutcome::pending(previous, d.poll),
        Ok(None) => {}
        Err(e) => return chain_outcome(e, d.poll),
    }
    // Not on chain. A transaction we sent may still be pending (wait a few blocks), may
    // have reverted (fail), or was dropped by a reorg or the pool (send again: the token id
    // is fixed, so this can never create a second token). A head below the block it was
    // sent at means this chain is not the one that took it (restarted empty, or an RPC
    // node far behind): it cannot be pending here, so it is sent again at once rather than
    // after the head has climbed back.
    if let (Some(tx), Some(sent_at)) = (previous.tx, previous.block) {
        match d.chain.confirmations(&tx).await {
            Ok(TxStatus::Mined { receipt, .. }) if !receipt.success => {
                return StepOutcome::fail(format!("mint transaction {tx} reverted"));
            }
            Ok(TxStatus::NotMined) if (sent_at..=sent_at + DROP_GRACE_BLOCKS).contains(&head) => {
                return StepOutcome::pending(previous, d.poll);
            }
            Ok(_) => {}
            Err(e) => return chain_outcome(e, d.poll),
        }
    }
    match d
        .chain
        .mint(data.user, &data.token, data.achievement_id)
        .await
    {
        Ok(tx) => StepOutcome::pending(
            MintProgress {
                tx: Some(tx),
                block: Some(head),
                refused_at: None,
            },
            d.poll,
        ),
        // Refused. Our earlier transaction may have been mined meanwhile (the token
        // exists now), or may still be pending — one sent before a crash that lost its
        // record makes the chain refuse this one ("the token already exists" against the
        // pending state) while the latest block has no token yet. The refusal is final
        // only once it has lasted a few blocks with no token.
        Err(e) if e.class() == ErrorClass::Permanent => {
            match d.chain.owner_of(&data.token, None).await {
                Ok(Some(_)) => StepOutcome::pending(previous, d.poll),
                Ok(None) => match previous.refused_at {
                    Some(first) if head > first + DROP_GRACE_BLOCKS => {
                        StepOutcome::fail(e.to_string())
                    }
                    first => StepOutcome::pending(
                        MintProgress {
                            refused_at: first.or(Some(head)),
                            ..previous
                        },
                        d.poll,
                    ),
                },
                Err(e) => chain_outcome(e, d.poll),
            }
        }
        Err(e) => chain_outcome(e, d.poll),
    }
}

/// Compensation of `mint`: burn the token if it exists and is still the user's. A token
/// the user already passed on belongs to someone else now: merit never destroys a third
/// party's asset; the compensation completes without burning and says so.
pub(super) async fn burn(d: &UnlockDeps, ctx: StepContext) -> StepOutcome {
    let data: UnlockData = match ctx.data() {
        Ok(data) => data,
        Err(e) => return e.into(),
    };
    burn_if_still_held(d.chain.as_ref(), &data.token, data.user, d.poll).await
}

/// The output of a compensation that left the token alone, with the reason.
fn not_burned(token: &TokenId, holder: Option<Address>) -> StepOutcome {
    let reason = match holder {
        Some(holder) => format!("token {token} is held by {holder}, not the user"),
        None => format!("token {token} no longer exists"),
    };
    tracing::warn!(%token, ?holder, "compensation leaves a token the user passed on");
    StepOutcome::done(serde_json::json!({ "not_burned": reason }))
}

/// Burns `token` only from `user`. The owner read here is a cheap early exit, not the
/// guard: the burn itself names `user` as the expected owner and the contract refuses it
/// if the token changed hands in between (or, for a transfer still pending when the burn
/// was sent, the burn reverts on chain and the next poll finds the new holder). Either
/// way the compensation completes without burning and records why.
pub(super) async fn burn_if_still_held(
    chain: &dyn Chain,
    token: &TokenId,
    user: Address,
    poll: Duration,
) -> StepOutcome {
    match chain.owner_of(token, None).await {
        Ok(None) => StepOutcome::done_empty(),
        Ok(Some(holder)) if holder != user => not_burned(token, Some(holder)),
        Ok(Some(_)) => match chain.burn(token, user).await {
            // Re-checked on the next poll: done once the token is gone (or, had a
            // transfer been mined first, held by someone else: not burned).
            Ok(tx) => StepOutcome::pending(
                MintProgress {
                    tx: Some(tx),
                    block: None,
                    refused_at: None,
                },
                poll,
            ),
            Err(e) => match e.owner_changed() {
                // Changed hands between the read above and the burn: the chain refused.
                Some(holder) => not_burned(token, holder),
                None => StepOutcome::retry(e.to_string()),
            },
        },
        Err(e) => StepOutcome::retry(e.to_string()),
    }
}
