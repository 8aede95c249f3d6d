//! `full_sync`: a transfer the listener skipped is found as drift and repaired once.

use merit_chain::{full_sync, Chain, Listener, REPAIR_LOG_INDEX};
use merit_messages::Event;
use merit_storage::{
    entities::{chain_checkpoint, nft},
    sea_orm::{ActiveValue::Set, EntityTrait},
};

use crate::{
    common::*,
    harness::{anvil_store_chain, catch_up, config, decode},
};

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn full_sync_repairs_a_transfer_the_listener_skipped() {
    let (anvil, store, _db, chain) = anvil_store_chain().await;
    mint_mined(chain.as_ref(), account(1), 9).await;
    let listener = Listener::new(store.clone(), chain.clone(), config(0));
    catch_up(&listener).await;
    // What NftActor would have projected from the mint.
    let mint_block = chain.head_block().await.expect("head");
    nft::Entity::insert(nft::ActiveModel {
        token_id: Set("9".into()),
        owner: Set(Some(account(1).to_string())),
        tier: Set(None),
        achievement_id: Set(None),
        burned: Set(false),
        last_block: Set(i64::try_from(mint_block).expect("small")),
        last_log_index: Set(0),
        updated_at: Set(chrono::Utc::now()),
    })
    .exec(store.db())
    .await
    .expect("insert nft");

    let transfer = anvil
        .transfer_from(chain.contract(), account(1), account(2), 9)
        .await;
    mined(chain.as_ref(), &transfer).await;
    // Someone moved the checkpoint past the transfer: the listener never sees it.
    let head = chain.head_block().await.expect("head");
    let hash = chain.block_hash(head).await.expect("hash").expect("exists");
    chain_checkpoint::Entity::update(chain_checkpoint::ActiveModel {
        id: Set(listener.checkpoint_id().to_string()),
        block_number: Set(i64::try_from(head).expect("small")),
        block_hash: Set(hash.to_string()),
        updated_at: Set(chrono::Utc::now()),
    })
    .exec(store.db())
    .await
    .expect("move checkpoint");
    catch_up(&listener).await;
    assert_eq!(outbox(&store).await.len(), 1, "the transfer was skipped");

    let report = full_sync(&store, chain.as_ref(), 0)
        .await
        .expect("full sync");
    assert_eq!((report.checked, report.drifted, report.repaired), (1, 1, 1));
    assert_eq!(report.drifts[0].stored, Some(account(1)));
    assert_eq!(report.drifts[0].on_chain, Some(account(2)));
    let rows = outbox(&store).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].routing_key, "nft.transferred");
    assert_eq!(rows[1].event_id, report.drifts[0].repair.to_string());
    assert_eq!(rows[1].headers["merit-nft"], "9");
    let Event::NftTransferred(t) = decode(&rows[1]).event else {
        panic!("expected nft.transferred")
    };
    assert_eq!((t.from, t.to), (account(1), account(2)));
    assert_eq!(t.chain.position(), (head, REPAIR_LOG_INDEX));

    // The same sync again at the same block queues nothing new.
    let again = full_sync(&store, chain.as_ref(), 0)
        .await
        .expect("full sync");
    assert_eq!((again.drifted, again.repaired), (1, 0));
    assert_eq!(again.drifts[0].repair, report.drifts[0].repair);
}
