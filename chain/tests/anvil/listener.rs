//! The listener: a mint and a transfer become outbox events once each, with chain-derived
//! ids, and changes made while it was stopped are backfilled in order.

use ethers::providers::Middleware;
use merit_chain::{load_checkpoint, Chain, Listener};
use merit_messages::{Event, EventId};
use merit_storage::{entities::chain_checkpoint, sea_orm::EntityTrait};
use uuid::Uuid;

use crate::{
    common::*,
    harness::{anvil_store_chain, catch_up, config, decode},
};

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_mint_is_recorded_once_as_nft_minted_with_the_chain_log_id() {
    let (anvil, store, _db, chain) = anvil_store_chain().await;
    let achievement = Uuid::new_v4();
    let tx = chain
        .mint(account(1), &token(7), achievement)
        .await
        .expect("mint");
    mined(chain.as_ref(), &tx).await;

    let listener = Listener::new(store.clone(), chain.clone(), config(0));
    assert_eq!(catch_up(&listener).await, 1);
    assert_eq!(
        catch_up(&listener).await,
        0,
        "a second poll finds nothing new"
    );

    let rows = outbox(&store).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].routing_key, "nft.minted");
    assert_eq!(rows[0].headers["merit-nft"], "7");
    // The Transfer log is the first of the mint's block (AchievementMinted follows it).
    assert_eq!(
        rows[0].event_id,
        EventId::from_chain_log(CHAIN_ID, &tx, 0).to_string()
    );
    let env = decode(&rows[0]);
    let Event::NftMinted(m) = &env.event else {
        panic!("expected nft.minted, got {:?}", env.event)
    };
    assert_eq!(m.to, account(1));
    assert_eq!(m.achievement_id, Some(achievement));
    assert_eq!(m.chain.tx_hash, tx);
    assert_eq!(env.source, "chain:31337");
    let block = anvil
        .provider()
        .get_block(m.chain.block_number)
        .await
        .expect("get block")
        .expect("block exists");
    assert_eq!(
        env.occurred_at.timestamp(),
        i64::try_from(block.timestamp.low_u64()).expect("small"),
        "occurred_at is the block time"
    );

    // Replaying from scratch (checkpoint lost) emits nothing new: ids are deterministic.
    chain_checkpoint::Entity::delete_by_id(listener.checkpoint_id().to_string())
        .exec(store.db())
        .await
        .expect("delete checkpoint");
    let replay = Listener::new(store.clone(), chain.clone(), config(0));
    assert_eq!(catch_up(&replay).await, 0);
    assert_eq!(outbox(&store).await.len(), 1);
    let status = replay.status();
    assert_eq!(status.lag, Some(0));
    assert_eq!(status.last_error, None);
}

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_holder_transfer_becomes_nft_transferred_after_the_mint() {
    let (anvil, store, _db, chain) = anvil_store_chain().await;
    mint_mined(chain.as_ref(), account(1), 1).await;
    let transfer = anvil
        .transfer_from(chain.contract(), account(1), account(2), 1)
        .await;

    let listener = Listener::new(store.clone(), chain.clone(), config(0));
    catch_up(&listener).await;
    let rows = outbox(&store).await;
    let types: Vec<&str> = rows.iter().map(|r| r.routing_key.as_str()).collect();
    assert_eq!(types, ["nft.minted", "nft.transferred"]);
    let Event::NftTransferred(t) = decode(&rows[1]).event else {
        panic!("expected nft.transferred")
    };
    assert_eq!((t.from, t.to), (account(1), account(2)));
    assert_eq!(t.chain.tx_hash, transfer);
    assert_eq!(
        rows[1].event_id,
        EventId::from_chain_log(CHAIN_ID, &transfer, t.chain.log_index).to_string()
    );
}

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn changes_made_while_the_listener_was_stopped_are_backfilled_in_order() {
    let (anvil, store, _db, chain) = anvil_store_chain().await;
    mint_mined(chain.as_ref(), account(1), 3).await;
    {
        let listener = Listener::new(store.clone(), chain.clone(), config(1));
        anvil.mine(1).await;
        catch_up(&listener).await;
        assert_eq!(outbox(&store).await.len(), 1);
    }
    // Stopped: a transfer and a burn happen, then a few blocks.
    anvil
        .transfer_from(chain.contract(), account(1), account(2), 3)
        .await;
    let burn = chain.burn(&token(3), account(2)).await.expect("burn");
    mined(chain.as_ref(), &burn).await;
    anvil.mine(3).await;

    let restarted = Listener::new(store.clone(), chain.clone(), config(1));
    assert_eq!(catch_up(&restarted).await, 2);
    let rows = outbox(&store).await;
    let types: Vec<&str> = rows.iter().map(|r| r.routing_key.as_str()).collect();
    assert_eq!(types, ["nft.minted", "nft.transferred", "nft.burned"]);
    let head = chain.head_block().await.expect("head");
    let cp = load_checkpoint(&store, restarted.checkpoint_id())
        .await
        .expect("checkpoint")
        .expect("stored");
    assert_eq!(cp.block, head - 1, "reads up to head - confirmations");
    assert_eq!(
        Some(cp.hash),
        chain.block_hash(cp.block).await.expect("hash")
    );
}
