//! Harness: the listener's configuration, polling to the safe head, an anvil with a store
//! and a deployed contract, and an outbox row's envelope.

use std::{sync::Arc, time::Duration};

use merit_chain::{EthersChain, Listener, ListenerConfig};
use merit_messages::Envelope;
use merit_storage::Store;
use merit_testkit::TestDb;

use crate::common::*;

pub(crate) fn config(confirmations: u64) -> ListenerConfig {
    ListenerConfig {
        confirmations,
        batch_blocks: 50,
        poll_interval: Duration::from_millis(50),
        max_reorg_depth: 16,
        start_block: 0,
    }
}

/// Polls until the listener reached the safe head.
pub(crate) async fn catch_up(listener: &Listener) -> u64 {
    let mut events = 0;
    for _ in 0..100 {
        let outcome = listener.poll_once().await.expect("poll");
        events += outcome.events;
        if outcome.caught_up {
            return events;
        }
    }
    panic!("listener did not catch up");
}

/// An anvil, a store and the contract deployed on the anvil, for one test.
pub(crate) async fn anvil_store_chain() -> (Anvil, Store, TestDb, Arc<EthersChain>) {
    let anvil = Anvil::start(None);
    let (store, db) = store().await;
    let chain = Arc::new(anvil.deploy_fast().await);
    (anvil, store, db, chain)
}

pub(crate) fn decode(row: &merit_storage::entities::outbox::Model) -> Envelope {
    Envelope::decode(row.payload.as_bytes()).expect("outbox payload is a valid envelope")
}
