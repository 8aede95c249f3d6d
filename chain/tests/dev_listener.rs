//! The listener and the full sync over the in-process DevChain: failure injection, deep
//! reorgs and concurrent listeners, which anvil cannot stage as precisely.

mod common;

use std::{sync::Arc, time::Duration};

use common::{outbox, store};
use merit_chain::{full_sync, Chain, DevChain, ErrorClass, Listener, ListenerConfig};
use merit_messages::{Address, TokenId};
use uuid::Uuid;

fn config(confirmations: u64) -> ListenerConfig {
    ListenerConfig {
        confirmations,
        batch_blocks: 4,
        poll_interval: Duration::from_millis(10),
        max_reorg_depth: 8,
        start_block: 0,
    }
}

async fn catch_up(listener: &Listener) {
    for _ in 0..100 {
        if listener.poll_once().await.expect("poll").caught_up {
            return;
        }
    }
    panic!("listener did not catch up");
}

fn user(b: u8) -> Address {
    Address([b; 20])
}

#[tokio::test]
async fn a_failed_poll_is_reported_in_the_status_and_the_next_one_recovers() {
    let (store, _dir) = store().await;
    let chain = Arc::new(DevChain::new(7));
    chain
        .mint(user(1), &TokenId::from(1u128), Uuid::new_v4())
        .await
        .expect("mint");
    let listener = Listener::new(store.clone(), chain.clone(), config(0));
    chain.fail_next(1, ErrorClass::Unavailable);
    let err = listener.poll_once().await.expect_err("injected outage");
    assert_eq!(err.class(), ErrorClass::Unavailable);
    assert!(listener.status().last_error.is_some());
    assert!(outbox(&store).await.is_empty());

    catch_up(&listener).await;
    let status = listener.status();
    assert_eq!(status.last_error, None);
    assert_eq!(status.events_written, 1);
    assert_eq!(status.lag, Some(0));
    assert_eq!(outbox(&store).await.len(), 1);
}

#[tokio::test]
async fn batches_are_bounded_and_logs_stay_in_chain_order() {
    let (store, _dir) = store().await;
    let chain = Arc::new(DevChain::new(7));
    let token = TokenId::from(2u128);
    chain
        .mint(user(1), &token, Uuid::new_v4())
        .await
        .expect("mint");
    for i in 1..8u8 {
        chain
            .transfer(user(i), user(i + 1), &token)
            .expect("transfer");
    }
    chain.burn(&token, user(8)).await.expect("burn");
    let listener = Listener::new(store.clone(), chain.clone(), config(0));
    let first = listener.poll_once().await.expect("poll");
    assert_eq!(first.blocks, 4, "at most batch_blocks per transaction");
    assert!(!first.caught_up);
    catch_up(&listener).await;
    let types: Vec<String> = outbox(&store)
        .await
        .into_iter()
        .map(|r| r.routing_key)
        .collect();
    let mut expected = vec!["nft.minted".to_string()];
    expected.extend(std::iter::repeat_n("nft.transferred".to_string(), 7));
    expected.push("nft.burned".into());
    assert_eq!(types, expected);
}

#[tokio::test]
async fn a_reorg_deeper_than_the_confirmations_rewinds_to_the_common_ancestor() {
    let (store, _dir) = store().await;
    let chain = Arc::new(DevChain::new(7));
    chain.mine(4);
    let listener = Listener::new(store.clone(), chain.clone(), config(1));
    catch_up(&listener).await;
    chain
        .mint(user(1), &TokenId::from(3u128), Uuid::new_v4())
        .await
        .expect("mint");
    chain.mine(1);
    catch_up(&listener).await;
    assert_eq!(outbox(&store).await.len(), 1);

    // The mint's block and the one after it are replaced: the checkpoint is orphaned.
    chain.reorg(2);
    chain
        .mint(user(2), &TokenId::from(3u128), Uuid::new_v4())
        .await
        .expect("mint again");
    chain.mine(1);
    catch_up(&listener).await;
    let status = listener.status();
    assert_eq!(status.reorgs, 1);
    let all = outbox(&store).await;
    assert_eq!(all.len(), 2, "the canonical mint is read after the rewind");
    assert!(all[1].payload.contains(&user(2).to_string()));
}

#[tokio::test]
async fn two_listeners_on_one_store_write_each_event_once() {
    let (store, _dir) = store().await;
    let chain = Arc::new(DevChain::new(7));
    for i in 0..6u128 {
        chain
            .mint(user(1), &TokenId::from(i), Uuid::new_v4())
            .await
            .expect("mint");
    }
    let a = Listener::new(store.clone(), chain.clone(), config(0));
    let b = Listener::new(store.clone(), chain.clone(), config(0));
    // Both race from the same (missing) checkpoint; the loser's batch is discarded.
    tokio::join!(catch_up(&a), catch_up(&b));
    assert_eq!(outbox(&store).await.len(), 6);
    let head = chain.head_block().await.expect("head");
    let cp = merit_chain::load_checkpoint(&store, a.checkpoint_id())
        .await
        .expect("checkpoint")
        .expect("stored");
    assert_eq!(cp.block, head);
    assert_eq!(a.status().events_written + b.status().events_written, 6);
}

#[tokio::test]
async fn a_running_listener_follows_the_head_until_shutdown() {
    let (store, _dir) = store().await;
    let chain = Arc::new(DevChain::new(7));
    let miner = chain.spawn_miner(Duration::from_millis(5));
    let listener = Listener::new(store.clone(), chain.clone(), config(2));
    let status = listener.status_handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(listener.run(async {
        let _ = stopped.await;
    }));
    chain
        .mint(user(1), &TokenId::from(1u128), Uuid::new_v4())
        .await
        .expect("mint");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while outbox(&store).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mint never recorded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(status.get().checkpoint.is_some());
    stop.send(()).expect("listener alive");
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("stops on shutdown")
        .expect("no panic");
    miner.abort();
}

#[tokio::test]
async fn full_sync_with_no_drift_reports_zero_and_writes_nothing() {
    let (store, _dir) = store().await;
    let chain = DevChain::new(7);
    let report = full_sync(&store, &chain, 0).await.expect("sync");
    assert_eq!((report.checked, report.drifted, report.repaired), (0, 0, 0));
    assert!(outbox(&store).await.is_empty());
    chain.fail_next(1, ErrorClass::Unavailable);
    let err = full_sync(&store, &chain, 0).await.expect_err("outage");
    assert_eq!(err.class(), ErrorClass::Unavailable);
}

#[tokio::test]
async fn a_failed_log_read_halves_the_batch_and_success_grows_it_back() {
    let (store, _dir) = store().await;
    let chain = Arc::new(DevChain::new(7));
    chain.mine(20);
    let listener = Listener::new(store.clone(), chain.clone(), config(0));
    chain.fail_next_on("logs", 1, ErrorClass::Transient);
    let err = listener.poll_once().await.expect_err("injected");
    assert_eq!(err.class(), ErrorClass::Transient);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        sizes.push(listener.poll_once().await.expect("poll").blocks);
    }
    assert_eq!(sizes, vec![2, 4, 4]);
}

#[tokio::test]
async fn full_sync_repairs_burns_and_unknown_owners_with_the_matching_event() {
    use merit_storage::{
        entities::nft,
        sea_orm::{ActiveValue::Set, EntityTrait},
    };
    let (store, _dir) = store().await;
    let chain = DevChain::new(7);
    let (burned, held) = (TokenId::from(1u128), TokenId::from(2u128));
    chain
        .mint(user(1), &burned, Uuid::new_v4())
        .await
        .expect("mint");
    chain
        .mint(user(2), &held, Uuid::new_v4())
        .await
        .expect("mint");
    chain.burn(&burned, user(1)).await.expect("burn");
    // The store missed both: it still holds token 1 and never saw token 2's owner.
    for (token, owner) in [(&burned, Some(user(1))), (&held, None)] {
        nft::Entity::insert(nft::ActiveModel {
            token_id: Set(token.to_string()),
            owner: Set(owner.map(|o| o.to_string())),
            tier: Set(None),
            achievement_id: Set(None),
            burned: Set(false),
            last_block: Set(0),
            last_log_index: Set(0),
            updated_at: Set(chrono::Utc::now()),
        })
        .exec(store.db())
        .await
        .expect("insert nft");
    }
    let report = full_sync(&store, &chain, 0).await.expect("sync");
    assert_eq!((report.checked, report.drifted, report.repaired), (2, 2, 2));
    let types: Vec<String> = outbox(&store)
        .await
        .into_iter()
        .map(|r| r.routing_key)
        .collect();
    assert_eq!(types, ["nft.burned", "nft.minted"]);
    assert_eq!(report.drifts[1].on_chain, Some(user(2)));
}
