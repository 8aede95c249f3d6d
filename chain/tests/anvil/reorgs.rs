//! Reorgs: one shallower than the confirmations publishes nothing; one below the
//! checkpoint rewinds the listener, which rereads the canonical chain.

use merit_chain::{Chain, Listener};
use merit_messages::EventId;

use crate::{
    common::*,
    harness::{anvil_store_chain, catch_up, config},
};

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_reorg_shallower_than_the_confirmations_produces_no_event() {
    let (anvil, store, _db, chain) = anvil_store_chain().await;
    anvil.mine(5).await;
    let listener = Listener::new(store.clone(), chain.clone(), config(3));
    catch_up(&listener).await;

    let snapshot = anvil.snapshot().await;
    let doomed = mint_mined(chain.as_ref(), account(1), 1).await;
    let doomed_block = chain
        .receipt(&doomed)
        .await
        .expect("receipt")
        .expect("mined");
    anvil.mine(1).await;
    catch_up(&listener).await;
    assert!(outbox(&store).await.is_empty(), "not confirmed yet");

    // The block with the mint is replaced by empty ones before it had 3 confirmations.
    anvil.revert(snapshot).await;
    anvil.mine(6).await;
    assert_ne!(
        chain.block_hash(doomed_block.block).await.expect("hash"),
        Some(doomed_block.block_hash)
    );
    catch_up(&listener).await;
    assert!(
        outbox(&store).await.is_empty(),
        "the dropped mint must not be published"
    );
    assert_eq!(chain.owner_of(&token(1), None).await.expect("owner"), None);
    assert_eq!(
        listener.status().reorgs,
        0,
        "nothing the listener read was reorged"
    );

    // Control: the same mint, now confirmed, is published.
    chain.resync_nonce().await;
    let kept = mint_mined(chain.as_ref(), account(1), 1).await;
    anvil.mine(3).await;
    catch_up(&listener).await;
    let rows = outbox(&store).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].event_id,
        EventId::from_chain_log(CHAIN_ID, &kept, 0).to_string()
    );
}

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_reorg_below_the_checkpoint_rewinds_and_rereads() {
    let (anvil, store, _db, chain) = anvil_store_chain().await;
    anvil.mine(3).await;
    let listener = Listener::new(store.clone(), chain.clone(), config(0));
    catch_up(&listener).await;
    let snapshot = anvil.snapshot().await;
    mint_mined(chain.as_ref(), account(1), 4).await;
    catch_up(&listener).await;
    assert_eq!(outbox(&store).await.len(), 1);

    // Deeper than the (zero) confirmations: the checkpoint block itself is replaced.
    anvil.revert(snapshot).await;
    chain.resync_nonce().await;
    let replacement = mint_mined(chain.as_ref(), account(2), 4).await;
    catch_up(&listener).await;
    assert_eq!(listener.status().reorgs, 1);
    let rows = outbox(&store).await;
    assert_eq!(rows.len(), 2, "the canonical mint is read after the rewind");
    assert_eq!(
        rows[1].event_id,
        EventId::from_chain_log(CHAIN_ID, &replacement, 0).to_string()
    );
}
