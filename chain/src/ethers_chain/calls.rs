//! How the client talks to the node: a read with its timeout and bounded retries of
//! transient failures, and a transaction signed and sent with the nonce managed.

use std::{future::Future, sync::atomic::Ordering};

use ethers::{
    providers::{Http, Middleware, Provider, ProviderError},
    types::{
        transaction::eip2718::TypedTransaction, BlockId, BlockNumber, Bytes,
        Eip1559TransactionRequest, H160, U256,
    },
};
use merit_messages::TxHash;

use super::{classify, to_h160, EthersChain};
use crate::error::{ChainError, ErrorClass, Result};

impl EthersChain {
    /// Runs one read with the timeout and bounded retries of transient failures.
    pub(super) async fn rpc<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: Fn(Provider<Http>) -> Fut,
        Fut: Future<Output = std::result::Result<T, ProviderError>>,
    {
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout(
                self.options.rpc_timeout,
                f(self.provider.clone()),
            )
            .await
            {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => classify(op, &e),
                Err(_) => ChainError::transient(
                    op,
                    format!("no answer within {:?}", self.options.rpc_timeout),
                ),
            };
            if result.class() == ErrorClass::Unavailable {
                self.stale_nonce.store(true, Ordering::Relaxed);
            }
            if result.class() != ErrorClass::Transient || attempt >= self.options.attempts {
                return Err(result);
            }
            let pause = self.retry_pause(attempt);
            tracing::warn!(op, attempt, error = %result, ?pause, "transient chain error; retrying");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// Signs and sends a transaction to `to` (`None`: create) with `data`, managing the
    /// nonce. Returns once the node accepted it.
    pub(super) async fn send(
        &self,
        op: &'static str,
        to: Option<H160>,
        data: Bytes,
    ) -> Result<TxHash> {
        let mut nonce_slot = self.nonce.lock().await;
        if self.stale_nonce.swap(false, Ordering::Relaxed) {
            *nonce_slot = None;
        }
        let mut attempt = 1;
        loop {
            match self.try_send(op, to, data.clone(), &mut nonce_slot).await {
                Ok(tx) => return Ok(tx),
                Err(e) => {
                    // The node may or may not have taken it: read the nonce again next time.
                    *nonce_slot = None;
                    if e.class() != ErrorClass::Transient || attempt >= self.options.attempts {
                        return Err(e);
                    }
                    let pause = self.retry_pause(attempt);
                    tracing::warn!(op, attempt, error = %e, ?pause, "send failed transiently; resyncing the nonce and retrying");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn try_send(
        &self,
        op: &'static str,
        to: Option<H160>,
        data: Bytes,
        nonce_slot: &mut Option<U256>,
    ) -> Result<TxHash> {
        let from = to_h160(self.minter.address());
        let mut req = Eip1559TransactionRequest::new()
            .from(from)
            .data(data)
            .chain_id(self.chain_id);
        if let Some(to) = to {
            req = req.to(to);
        }
        let mut tx: TypedTransaction = req.into();
        let estimate_tx = tx.clone();
        let gas = self
            .rpc(op, |p| {
                let tx = estimate_tx.clone();
                async move { p.estimate_gas(&tx, None).await }
            })
            .await?;
        tx.set_gas(gas * 6 / 5);
        let (max_fee, tip) = self
            .rpc(op, |p| async move { p.estimate_eip1559_fees(None).await })
            .await?;
        if let TypedTransaction::Eip1559(inner) = &mut tx {
            inner.max_fee_per_gas = Some(max_fee);
            inner.max_priority_fee_per_gas = Some(tip);
        }
        let nonce = match *nonce_slot {
            Some(n) => n,
            None => {
                let n = self
                    .rpc(op, |p| async move {
                        p.get_transaction_count(from, Some(BlockId::Number(BlockNumber::Pending)))
                            .await
                    })
                    .await?;
                tracing::debug!(op, nonce = %n, "nonce read from the node");
                n
            }
        };
        tx.set_nonce(nonce);
        let raw = self.minter.sign(op, &tx).await?;
        let hash = match tokio::time::timeout(
            self.options.rpc_timeout,
            self.provider.send_raw_transaction(raw),
        )
        .await
        {
            Ok(Ok(pending)) => pending.tx_hash(),
            Ok(Err(e)) => return Err(classify(op, &e)),
            Err(_) => {
                return Err(ChainError::transient(
                    op,
                    format!("no answer within {:?}", self.options.rpc_timeout),
                ))
            }
        };
        *nonce_slot = Some(nonce + 1);
        let tx = TxHash(hash.0);
        tracing::info!(op, %tx, nonce = %nonce, "transaction sent");
        Ok(tx)
    }
}
