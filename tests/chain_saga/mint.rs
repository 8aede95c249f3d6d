//! Unlock → mint: exactly one token per unlock (on every kind of chain and minter), a
//! reverted mint compensated, a node killed mid-mint resumed without a second mint.

use std::time::Duration;

use merit_chain::{Chain, TxStatus, ZERO_ADDRESS};
use merit_messages::{Address, TxHash};
use merit_storage::{entities::nft, sea_orm::EntityTrait};

use crate::{
    common::{eventually, first_proposal_of, token_of, wallet},
    world::{mined, Node, World},
};

/// A first proposal by `user` → "first-proposal" (bronze) unlocks → exactly one token on
/// chain, registered, in the user's benefits, the saga completed.
async fn unlock_mints_exactly_one_token(world: World, user: Address) {
    let minter = world.admin.minter();
    let sent_before = world.anvil.nonce(minter).await;
    let mut node = Node(Some(world.spawn_node()));
    world.publish_first_proposal(user, "p-mint").await;
    let row = world.achievement_in(user, "minted", 60).await;
    let token = token_of(&row);
    assert_eq!(row.tier, "bronze");
    assert!(row.reason.is_none(), "a minted achievement has no failure");

    // The chain: the token exists, is the user's, and was minted exactly once.
    assert_eq!(
        world.reader.owner_of(&token, None).await.expect("ownerOf"),
        Some(user),
        "ownerOf(token) is the user"
    );
    let transfers = world.transfers_of(&token).await;
    assert_eq!(
        transfers.len(),
        1,
        "exactly one Transfer for the token: {transfers:?}"
    );
    assert_eq!(transfers[0].from, ZERO_ADDRESS, "it is a mint");
    assert_eq!(transfers[0].to, user);
    assert_eq!(
        world.anvil.nonce(minter).await,
        sent_before + 1,
        "merit sent exactly one transaction"
    );
    assert_eq!(
        transfers[0].achievement_id.map(|a| a.to_string()),
        Some(row.id.clone()),
        "the mint names the achievement"
    );

    // merit's side: the NftActor registered it with the achievement's tier, the user's
    // benefits count it, the saga completed, and every event was written once.
    let stored = nft::Entity::find_by_id(token.to_string())
        .one(world.store.db())
        .await
        .expect("nfts")
        .expect("the NftActor registered the token");
    assert_eq!(stored.owner, Some(user.to_string()));
    assert_eq!(stored.tier.as_deref(), Some("bronze"));
    assert!(!stored.burned);
    assert_eq!(stored.last_block as u64, transfers[0].block);
    world.wait_benefits_list(user, &token, 30).await;
    // The saga may record its completion after the achievement reads minted and the
    // benefits list the token (seen under load): wait for it rather than race it.
    world.wait_saga("completed", 30).await;
    let sagas = world.sagas().await;
    assert_eq!(sagas.len(), 1, "one saga for one unlock");
    assert_eq!(sagas[0].state, "completed");
    assert_eq!(row.saga_id.as_deref(), Some(sagas[0].id.as_str()));
    assert_eq!(world.outbox_count("nft.minted").await, 1);
    assert_eq!(world.outbox_count("achievement.minted").await, 1);
    assert_eq!(world.outbox_count("achievement.failed").await, 0);

    node.stop();
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn an_unlock_mints_exactly_one_token_on_chain() {
    // A block every second, as on a real chain: the mint waits in the mempool first.
    let world = World::new("mint", Some(1), 2).await;
    unlock_mints_exactly_one_token(world, wallet(101)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn an_unlock_mints_exactly_one_token_on_an_automining_chain() {
    // Each transaction is mined as it is sent; the test adds blocks for confirmations.
    let mut world = World::new("automine", None, 2).await;
    world.miner = Some(world.anvil.keep_mining(Duration::from_millis(300)));
    unlock_mints_exactly_one_token(world, wallet(111)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_keystore_minter_mints_through_merit_serve() {
    // The deployer's key (anvil's first) in an encrypted keystore, its password in a file:
    // merit decrypts it at start and signs the mint with it.
    let dir = tempfile::tempdir().expect("tmp");
    let password = dir.path().join("keystore-password");
    std::fs::write(&password, "merit-test-keystore-password\n").expect("write");
    let mut world = World::new("keystore", None, 2).await;
    world.miner = Some(world.anvil.keep_mining(Duration::from_millis(300)));
    world.envs.push((
        "MERIT_MINTER_KEYSTORE".into(),
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/anvil-0-keystore.json"
        )
        .into(),
    ));
    world.envs.push((
        "MERIT_MINTER_KEYSTORE_PASSWORD_FILE".into(),
        password.display().to_string(),
    ));
    let log = world.log.clone();
    unlock_mints_exactly_one_token(world, wallet(121)).await;
    assert_minter_kind(&log, "keystore");
}

/// The node's log says which minter it started with (so a fallback to the development
/// key, the same account, would not pass unnoticed).
fn assert_minter_kind(log: &std::path::Path, kind: &str) {
    let text = std::fs::read_to_string(log).expect("the node log");
    let line = text
        .lines()
        .find(|l| l.contains("minter ready"))
        .unwrap_or_else(|| panic!("no 'minter ready' line in {}", log.display()));
    assert!(line.contains(&format!("\"{kind}\"")), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn an_external_signer_signs_merits_mints() {
    // anvil signs for the deployer (eth_signTransaction): the key never enters merit.
    let mut world = World::new("signer", None, 2).await;
    world.miner = Some(world.anvil.keep_mining(Duration::from_millis(300)));
    let signer = world.anvil.url();
    let address = world.admin.minter().to_string();
    world.envs.push(("MERIT_MINTER_SIGNER_URL".into(), signer));
    world.envs.push(("MERIT_MINTER_ADDRESS".into(), address));
    let log = world.log.clone();
    unlock_mints_exactly_one_token(world, wallet(131)).await;
    assert_minter_kind(&log, "external signer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_reverted_mint_is_compensated() {
    let world = World::new("revert", Some(1), 2).await;
    // merit signs with the deployer's key: take its minter role away (it stays admin).
    let tx = world
        .admin
        .set_minter(world.admin.minter(), false)
        .await
        .expect("revoke MINTER_ROLE");
    mined(&world.admin, &tx).await;
    let mut node = Node(Some(world.spawn_node()));

    let user = wallet(202);
    world.publish_first_proposal(user, "p-revert").await;
    let row = world.achievement_in(user, "failed", 60).await;
    let token = token_of(&row);
    assert!(
        row.reason.as_deref().is_some_and(|r| !r.is_empty()),
        "the failure has a reason: {row:?}"
    );
    assert_eq!(
        world.reader.owner_of(&token, None).await.expect("ownerOf"),
        None,
        "no token on chain"
    );
    assert!(
        world.transfers_of(&token).await.is_empty(),
        "no Transfer log for the token"
    );
    world.wait_saga("compensated", 30).await;
    let sagas = world.sagas().await;
    assert_eq!(sagas.len(), 1, "one saga for one unlock");
    let mint = world.mint_step().await.expect("the mint step");
    assert_eq!(mint.state, "failed", "the mint failed for good: {mint:?}");
    assert!(mint.last_error.is_some(), "with the chain's error");
    assert_eq!(world.outbox_count("achievement.failed").await, 1);
    assert_eq!(world.outbox_count("achievement.minted").await, 0);
    assert_eq!(world.outbox_count("nft.minted").await, 0);
    assert!(
        nft::Entity::find_by_id(token.to_string())
            .one(world.store.db())
            .await
            .expect("nfts")
            .is_none(),
        "no NFT registered"
    );

    node.stop();
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_node_killed_between_mint_and_confirmation_resumes_without_a_second_mint() {
    // Automine only: the mint gets one block and no more until the test mines them.
    let confirmations = 5;
    let world = World::new("kill", None, confirmations).await;
    let minter = world.admin.minter();
    let sent_before = world.anvil.nonce(minter).await;
    let mut node = Node(Some(world.spawn_node()));

    let user = wallet(303);
    world.publish_first_proposal(user, "p-kill").await;
    let what = format!(
        "the mint is sent and awaiting confirmations (log: {})",
        world.log.display()
    );
    let w = &world;
    eventually(60, &what, move || async move {
        w.mint_step().await.is_some_and(|s| {
            s.state == "awaiting"
                && s.output
                    .as_ref()
                    .is_some_and(|o| o.get("tx").is_some_and(|t| t.is_string()))
        })
    })
    .await;
    node.kill();

    let step = world.mint_step().await.expect("the mint step");
    let tx: TxHash = step.output.as_ref().expect("output")["tx"]
        .as_str()
        .expect("tx")
        .parse()
        .expect("a tx hash");
    let row = first_proposal_of(&world.store, user)
        .await
        .expect("the achievement");
    assert_eq!(row.state, "reserved", "not minted before the kill");
    let token = token_of(&row);
    match world.reader.confirmations(&tx).await.expect("status") {
        TxStatus::Mined {
            receipt,
            confirmations: c,
        } => {
            assert!(receipt.success, "the mint succeeded");
            assert!(c < confirmations, "not yet final when killed ({c})");
        }
        TxStatus::NotMined => panic!("the mint {tx} is not mined (automine)"),
    }
    assert_eq!(
        world.outbox_count("nft.minted").await,
        0,
        "the listener has not read the mint yet (below the confirmation depth)"
    );

    // The confirmations arrive while no node runs; the restarted node finishes the saga.
    world.anvil.mine(confirmations + 1).await;
    let mut node = Node(Some(world.spawn_node()));
    let row = world.achievement_in(user, "minted", 60).await;
    assert_eq!(token_of(&row), token, "the same token");

    let transfers = world.transfers_of(&token).await;
    assert_eq!(
        transfers.len(),
        1,
        "exactly one Transfer for the token: {transfers:?}"
    );
    assert_eq!(transfers[0].from, ZERO_ADDRESS);
    assert_eq!(transfers[0].to, user);
    assert_eq!(transfers[0].tx_hash, tx, "the mint sent before the kill");
    assert_eq!(
        world.anvil.nonce(minter).await,
        sent_before + 1,
        "merit sent exactly one transaction (no second mint, not even a reverted one)"
    );
    assert_eq!(
        world.reader.owner_of(&token, None).await.expect("ownerOf"),
        Some(user)
    );
    assert_eq!(world.outbox_count("nft.minted").await, 1);
    assert_eq!(world.outbox_count("achievement.minted").await, 1);
    let sagas = world.sagas().await;
    assert_eq!(sagas.len(), 1);
    assert_eq!(sagas[0].state, "completed");
    let step = world.mint_step().await.expect("the mint step");
    assert_eq!(step.state, "done");

    node.stop();
    world.cleanup().await;
}
