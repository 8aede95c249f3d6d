//! The chain tests' helpers on top of `merit_testkit` (which owns the anvil harness and the
//! test databases): a migrated SQLite store, waiting for a transaction, the outbox rows.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::time::{Duration, Instant};

use merit_chain::{Chain, TxStatus};
use merit_messages::{Address, TokenId, TxHash};
use merit_storage::{
    entities::outbox,
    sea_orm::{EntityTrait, QueryOrder},
    Store,
};
#[allow(unused_imports)] // each test binary uses its own part of the harness
pub use merit_testkit::anvil::*;
use merit_testkit::{Backend, TestDb};

/// A migrated SQLite store of the test's own (kept alive by the returned guard).
pub async fn store() -> (Store, TestDb) {
    let (db, store) = TestDb::migrated(Backend::Sqlite).await;
    (store, db)
}

/// Waits until `tx` is mined in the canonical chain; asserts it succeeded.
pub async fn mined(chain: &dyn Chain, tx: &TxHash) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let TxStatus::Mined { receipt, .. } = chain.confirmations(tx).await.expect("status") {
            assert!(receipt.success, "{tx} reverted");
            return;
        }
        assert!(Instant::now() < deadline, "{tx} not mined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every outbox row, in commit order.
pub async fn outbox(store: &Store) -> Vec<outbox::Model> {
    outbox::Entity::find()
        .order_by_asc(outbox::Column::Id)
        .all(store.db())
        .await
        .expect("read outbox")
}

/// Mints token `n` to `to` for a new achievement and waits until it is mined.
pub async fn mint_mined(chain: &dyn Chain, to: Address, n: u64) -> TxHash {
    let tx = chain
        .mint(to, &token(n), uuid::Uuid::new_v4())
        .await
        .expect("mint");
    mined(chain, &tx).await;
    tx
}

pub fn token(n: u64) -> TokenId {
    TokenId::from(u128::from(n))
}
