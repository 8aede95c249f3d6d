//! The chain adapter against a real anvil and a SQLite store: one anvil and one database
//! per test, so the tests run in parallel.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use ethers::providers::Middleware;
use merit_chain::{
    full_sync, load_checkpoint, Chain, ErrorClass, EthersChain, Listener, ListenerConfig, Minter,
    REPAIR_LOG_INDEX,
};
use merit_config::Secret;
use merit_messages::{Envelope, Event, EventId};
use merit_storage::{
    entities::{chain_checkpoint, nft},
    sea_orm::{ActiveValue::Set, EntityTrait},
    Store,
};
use merit_testkit::TestDb;
use uuid::Uuid;

fn config(confirmations: u64) -> ListenerConfig {
    ListenerConfig {
        confirmations,
        batch_blocks: 50,
        poll_interval: Duration::from_millis(50),
        max_reorg_depth: 16,
        start_block: 0,
    }
}

/// Polls until the listener reached the safe head.
async fn catch_up(listener: &Listener) -> u64 {
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
async fn anvil_store_chain() -> (Anvil, Store, TestDb, Arc<EthersChain>) {
    let anvil = Anvil::start(None);
    let (store, db) = store().await;
    let chain = Arc::new(anvil.deploy_fast().await);
    (anvil, store, db, chain)
}

fn decode(row: &merit_storage::entities::outbox::Model) -> Envelope {
    Envelope::decode(row.payload.as_bytes()).expect("outbox payload is a valid envelope")
}

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

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_minter_whose_role_was_revoked_gets_a_permanent_error() {
    let anvil = Anvil::start(None);
    let admin = anvil.deploy_fast().await;
    let minter = EthersChain::connect(&anvil.url(), admin.contract(), &key(1), fast_options())
        .await
        .expect("connect");
    let grant = admin.set_minter(account(1), true).await.expect("grant");
    mined(&admin, &grant).await;
    let ok = minter
        .mint(account(2), &token(1), Uuid::new_v4())
        .await
        .expect("mint with the role");
    mined(&minter, &ok).await;

    let revoke = admin.set_minter(account(1), false).await.expect("revoke");
    mined(&admin, &revoke).await;
    let err = minter
        .mint(account(2), &token(2), Uuid::new_v4())
        .await
        .expect_err("mint without the role");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(
        err.to_string().contains("AccessControlUnauthorizedAccount"),
        "{err}"
    );
    // A second mint of an existing token is refused as permanent too.
    let exists = admin
        .mint(account(2), &token(1), Uuid::new_v4())
        .await
        .expect_err("token exists");
    assert_eq!(exists.class(), ErrorClass::Permanent, "{exists}");
    // The key never shows.
    let secret_hex = ACCOUNTS[1].1.trim_start_matches("0x");
    for text in [err.to_string(), format!("{err:?}"), format!("{minter:?}")] {
        assert!(!text.contains(secret_hex), "key leaked in {text}");
    }
}

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn an_unreachable_node_is_unavailable_and_the_adapter_recovers_after_a_restart() {
    let mut anvil = Anvil::start(None);
    let chain = anvil.deploy_fast().await;
    let contract = chain.contract();
    mint_mined(&chain, account(1), 1).await;

    anvil.kill();
    let down = chain.head_block().await.expect_err("node is down");
    assert_eq!(down.class(), ErrorClass::Unavailable, "{down}");
    let mint = chain
        .mint(account(1), &token(2), Uuid::new_v4())
        .await
        .expect_err("node is down");
    assert_eq!(mint.class(), ErrorClass::Unavailable, "{mint}");

    // Back on the same port, with a fresh chain: redeploying from the same key at nonce 0
    // yields the same contract address, and the adapter's nonce is read again.
    let anvil = Anvil::start_on(anvil.port);
    let redeployed = anvil.deploy_fast().await;
    assert_eq!(redeployed.contract(), contract);
    let again = chain
        .mint(account(1), &token(2), Uuid::new_v4())
        .await
        .expect("mint after restart");
    mined(&chain, &again).await;
    assert_eq!(
        chain.owner_of(&token(2), None).await.expect("owner"),
        Some(account(1))
    );
}

/// The attack on a compensation: merit reads the owner (the user, A), then A's transfer to
/// B is mined, then merit burns for A. The burn must leave B's token alone and say why.
#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_burn_after_the_token_changed_hands_leaves_the_new_holder_s_token_alone() {
    let anvil = Anvil::start(None);
    let chain = anvil.deploy_fast().await;
    mint_mined(&chain, account(1), 11).await;
    // The compensation's owner check passes: A still holds it.
    assert_eq!(
        chain.owner_of(&token(11), None).await.expect("owner"),
        Some(account(1))
    );
    // A passes it to B (mined) before merit's burn.
    anvil
        .transfer_from(chain.contract(), account(1), account(2), 11)
        .await;
    let err = chain
        .burn(&token(11), account(1))
        .await
        .expect_err("a burn for A must be refused once B holds the token");
    assert_eq!(err.owner_changed(), Some(Some(account(2))), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert_eq!(
        chain.owner_of(&token(11), None).await.expect("owner"),
        Some(account(2)),
        "B's token was burned by a compensation meant for A"
    );

    // The contract itself refuses, not only the adapter's gas estimate: a burnFrom for A
    // sent by the minter with a fixed gas limit (no estimate) is mined and reverts.
    let raw = anvil
        .send_unchecked(
            account(0),
            chain.contract(),
            burn_from_calldata(11, account(1)),
        )
        .await;
    let receipt = chain.receipt(&raw).await.expect("receipt").expect("mined");
    assert!(!receipt.success, "burnFrom for a former owner must revert");
    assert_eq!(
        chain.owner_of(&token(11), None).await.expect("owner"),
        Some(account(2))
    );

    // Burning from the holder merit expects works.
    let burn = chain.burn(&token(11), account(2)).await.expect("burn");
    mined(&chain, &burn).await;
    assert_eq!(chain.owner_of(&token(11), None).await.expect("owner"), None);
}

fn burn_from_calldata(token: u64, expected_owner: merit_messages::Address) -> Vec<u8> {
    let selector = &ethers::utils::id("burnFrom(uint256,address)")[..4];
    let args = ethers::abi::encode(&[
        ethers::abi::Token::Uint(token.into()),
        ethers::abi::Token::Address(ethers::types::H160(expected_owner.0)),
    ]);
    [selector, &args].concat()
}

/// A keystore for anvil's account `i`, encrypted with `password` in `dir` (ethers'
/// encrypt function: Web3 Secret Storage v3, as geth writes it).
fn keystore(dir: &std::path::Path, i: usize, password: &str) -> std::path::PathBuf {
    let key = hex::decode(ACCOUNTS[i].1.trim_start_matches("0x")).expect("hex key");
    ethers::signers::LocalWallet::encrypt_keystore(
        dir,
        &mut ethers::core::rand::thread_rng(),
        key,
        password,
        Some("minter.json"),
    )
    .expect("encrypt the keystore");
    dir.join("minter.json")
}

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_keystore_minter_decrypts_and_mints_and_a_wrong_password_is_refused_clearly() {
    let anvil = Anvil::start(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let password = "keystore-pw-S3CRET";
    let path = keystore(dir.path(), 0, password);

    let minter = Minter::from_keystore(&path, &Secret::new(password))
        .await
        .expect("decrypt the keystore");
    assert_eq!(minter.address(), account(0));
    assert!(!format!("{minter:?}").contains(ACCOUNTS[0].1.trim_start_matches("0x")));
    let chain = EthersChain::deploy_with(&anvil.url(), minter, fast_options())
        .await
        .expect("deploy signed by the keystore's key");
    mint_mined(&chain, account(1), 1).await;
    assert_eq!(
        chain.owner_of(&token(1), None).await.expect("owner"),
        Some(account(1))
    );

    let wrong = "not-the-password-S3CRET";
    let err = Minter::from_keystore(&path, &Secret::new(wrong))
        .await
        .expect_err("a wrong password");
    assert_eq!(err.class(), ErrorClass::Permanent);
    let text = format!("{err} {err:?}");
    assert!(text.contains("wrong password"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    for secret in [wrong, password, ACCOUNTS[0].1.trim_start_matches("0x")] {
        assert!(!text.contains(secret), "secret in {text}");
    }

    let missing = dir.path().join("nope.json");
    let err = Minter::from_keystore(&missing, &Secret::new(password))
        .await
        .expect_err("no such file");
    assert!(err.to_string().contains("cannot read it"), "{err}");
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"not\": \"a keystore\"}").expect("write");
    let err = Minter::from_keystore(&garbage, &Secret::new(password))
        .await
        .expect_err("not a keystore");
    assert!(
        err.to_string().contains("not a valid JSON keystore"),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn an_external_signer_signs_the_mints_and_the_key_never_enters_merit() {
    // anvil plays the signer (it signs for its unlocked dev accounts) and the chain.
    let anvil = Anvil::start(None);
    let admin = anvil.deploy_fast().await;
    let minter = Minter::external(&anvil.url(), account(1))
        .await
        .expect("the signer holds account 1");
    assert_eq!(minter.kind(), "external signer");
    let grant = admin.set_minter(account(1), true).await.expect("grant");
    mined(&admin, &grant).await;
    let chain = EthersChain::connect_with(&anvil.url(), admin.contract(), minter, fast_options())
        .await
        .expect("connect");
    assert_eq!(chain.minter(), account(1));
    for n in 1..=2 {
        let tx = chain
            .mint(account(2), &token(n), Uuid::new_v4())
            .await
            .expect("mint signed by the external signer");
        mined(&chain, &tx).await;
        let onchain = anvil
            .provider()
            .get_transaction(ethers::types::H256(tx.0))
            .await
            .expect("get tx")
            .expect("tx exists");
        assert_eq!(onchain.from.0, account(1).0, "signed by the minter address");
    }
    assert_eq!(
        chain.owner_of(&token(2), None).await.expect("owner"),
        Some(account(2))
    );
    // The compensation path works through the signer too, with the owner check.
    let burn = chain.burn(&token(2), account(2)).await.expect("burn");
    mined(&chain, &burn).await;
    assert_eq!(chain.owner_of(&token(2), None).await.expect("owner"), None);
}

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn an_unreachable_signer_or_one_without_the_address_fails_the_start_clearly() {
    let port = merit_testkit::free_port();
    // Nothing listens there any more; the URL carries a password that must not show.
    let url = format!("http://merit:S3CRET-pw@127.0.0.1:{port}");
    let err = Minter::external(&url, account(1))
        .await
        .expect_err("unreachable signer");
    assert_eq!(err.class(), ErrorClass::Unavailable, "{err}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("external signer is unreachable"), "{text}");
    assert!(!text.contains("S3CRET"), "{text}");

    let anvil = Anvil::start(None);
    let stranger: merit_messages::Address = "0x1111111111111111111111111111111111111111"
        .parse()
        .expect("address");
    let err = Minter::external(&anvil.url(), stranger)
        .await
        .expect_err("anvil does not hold that address");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(
        err.to_string().contains(
            "does not hold the minter address 0x1111111111111111111111111111111111111111"
        ),
        "{err}"
    );
}
