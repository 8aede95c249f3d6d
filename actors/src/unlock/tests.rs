//! Unit tests of the unlock saga's compensation: a burn only of a token the user still
//! holds, across transfers racing it.

use std::sync::Arc;

use async_trait::async_trait;
use merit_chain::{DevChain, Receipt, TransferLog};

use super::chain_steps::burn_if_still_held;
use super::*;

fn addr(b: u8) -> Address {
    Address([b; 20])
}

/// A dev chain on which the holder moves the token to `to` right before merit's burn
/// reaches the chain: after the compensation's owner check has passed.
#[derive(Debug)]
struct RacingHolder {
    inner: Arc<DevChain>,
    from: Address,
    to: Address,
    /// The burn was already in the pool when the transfer was mined first: accepted,
    /// then mined and reverted on chain (the contract's check), so nothing burned.
    pending_when_transferred: bool,
}

#[async_trait]
impl Chain for RacingHolder {
    fn chain_id(&self) -> u64 {
        self.inner.chain_id()
    }
    fn contract(&self) -> Address {
        self.inner.contract()
    }
    async fn mint(
        &self,
        to: Address,
        token: &TokenId,
        achievement: Uuid,
    ) -> merit_chain::Result<TxHash> {
        self.inner.mint(to, token, achievement).await
    }
    async fn burn(&self, token: &TokenId, expected: Address) -> merit_chain::Result<TxHash> {
        self.inner
            .transfer(self.from, self.to, token)
            .expect("the holder's transfer");
        if self.pending_when_transferred {
            return Ok(TxHash([0xbb; 32]));
        }
        self.inner.burn(token, expected).await
    }
    async fn receipt(&self, tx: &TxHash) -> merit_chain::Result<Option<Receipt>> {
        self.inner.receipt(tx).await
    }
    async fn owner_of(
        &self,
        token: &TokenId,
        at: Option<u64>,
    ) -> merit_chain::Result<Option<Address>> {
        self.inner.owner_of(token, at).await
    }
    async fn head_block(&self) -> merit_chain::Result<u64> {
        self.inner.head_block().await
    }
    async fn block_hash(&self, n: u64) -> merit_chain::Result<Option<TxHash>> {
        self.inner.block_hash(n).await
    }
    async fn logs(&self, from: u64, to: u64) -> merit_chain::Result<Vec<TransferLog>> {
        self.inner.logs(from, to).await
    }
}

#[tokio::test]
async fn a_transfer_between_the_owner_check_and_the_burn_completes_without_burning() {
    let inner = Arc::new(DevChain::new(1));
    let token = TokenId::from(31u128);
    inner
        .mint(addr(1), &token, Uuid::new_v4())
        .await
        .expect("mint");
    let chain = RacingHolder {
        inner: inner.clone(),
        from: addr(1),
        to: addr(2),
        pending_when_transferred: false,
    };
    let outcome = burn_if_still_held(&chain, &token, addr(1), Duration::from_millis(1)).await;
    assert_eq!(
        inner.owner_of(&token, None).await.expect("owner"),
        Some(addr(2)),
        "the compensation burned the new holder's token"
    );
    let StepOutcome::Done(output) = outcome else {
        panic!("expected the compensation to complete, got {outcome:?}")
    };
    let reason = output["not_burned"].as_str().expect("a reason is recorded");
    assert!(reason.contains(&addr(2).to_string()), "{reason}");
}

#[tokio::test]
async fn a_burn_reverted_by_a_transfer_mined_first_completes_without_burning_on_the_next_poll() {
    let inner = Arc::new(DevChain::new(1));
    let token = TokenId::from(33u128);
    inner
        .mint(addr(1), &token, Uuid::new_v4())
        .await
        .expect("mint");
    let chain = RacingHolder {
        inner: inner.clone(),
        from: addr(1),
        to: addr(2),
        pending_when_transferred: true,
    };
    let first = burn_if_still_held(&chain, &token, addr(1), Duration::from_millis(1)).await;
    assert!(matches!(first, StepOutcome::Pending { .. }), "{first:?}");
    // The next poll finds the new holder: done, not burned, and it says why.
    let next = burn_if_still_held(&chain, &token, addr(1), Duration::from_millis(1)).await;
    let StepOutcome::Done(output) = next else {
        panic!("expected the compensation to complete, got {next:?}")
    };
    assert!(output["not_burned"]
        .as_str()
        .is_some_and(|r| r.contains(&addr(2).to_string())));
    assert_eq!(
        inner.owner_of(&token, None).await.expect("owner"),
        Some(addr(2))
    );
}

#[tokio::test]
async fn a_token_still_held_by_the_user_is_burned_and_a_missing_one_is_done() {
    let chain = DevChain::new(1);
    let token = TokenId::from(32u128);
    chain
        .mint(addr(1), &token, Uuid::new_v4())
        .await
        .expect("mint");
    let outcome = burn_if_still_held(&chain, &token, addr(1), Duration::from_millis(1)).await;
    assert!(
        matches!(outcome, StepOutcome::Pending { .. }),
        "{outcome:?}"
    );
    assert_eq!(chain.owner_of(&token, None).await.expect("owner"), None);
    let again = burn_if_still_held(&chain, &token, addr(1), Duration::from_millis(1)).await;
    assert_eq!(again, StepOutcome::done_empty());
}
