//! The AchievementUnlock saga end to end against a real EVM node: `merit serve` as a
//! child process on RabbitMQ (a private vhost) and PostgreSQL (a fresh database), with
//! `MERIT_CHAIN_RPC_URL` pointing at an anvil of the test's own on a free port and the
//! achievement contract deployed by the test. A first proposal mints exactly one token; a
//! mint the contract refuses (minter role revoked) is compensated; a node SIGKILLed while
//! its mint waits for confirmations resumes it after a restart without minting again.

mod common;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use common::{
    anvil::{AbortOnDrop, Anvil},
    eventually, first_proposal_of, outbox_count, proposal_created_by, token_of, wallet, Backend,
    NodeProcess, TestDb, Vhost,
};
use merit_chain::{Chain, EthersChain, EthersOptions, TransferLog, TxStatus, ZERO_ADDRESS};
use merit_mailbox::{Outgoing, RabbitTransport, Topology, Transport};
use merit_messages::{Address, Envelope, TokenId, TxHash};
use merit_storage::{
    entities::{achievement, benefit, nft, outbox, saga, saga_step},
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    Store,
};

// ---------------------------------------------------------------------------------------
// the world of one test
// ---------------------------------------------------------------------------------------

/// `merit serve` killed if the test fails before stopping it.
struct Node(Option<NodeProcess>);

impl Node {
    fn kill(&mut self) {
        if let Some(node) = self.0.take() {
            node.kill();
        }
    }

    fn stop(&mut self) {
        if let Some(node) = self.0.take() {
            let status = node.stop();
            assert!(status.success(), "merit serve exited with {status}");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

struct World {
    anvil: Anvil,
    db: Option<TestDb>,
    store: Store,
    vhost: Option<Vhost>,
    publisher: RabbitTransport,
    /// The deployer's (and merit's) view of the contract: admin and minter.
    admin: EthersChain,
    /// A bystander's read-only view of the same contract, connected separately.
    reader: EthersChain,
    log: PathBuf,
    envs: Vec<(String, String)>,
    /// Mines blocks in the background, if the test asked for it.
    miner: Option<AbortOnDrop>,
}

impl World {
    async fn new(name: &str, block_time: Option<u64>, confirmations: u64) -> Self {
        common::init_crypto();
        let anvil = Anvil::start(block_time);
        let (admin, reader) = anvil.deploy().await;
        // `merit serve` signs with the config's minter key (no MERIT_MINTER_KEY is set):
        // it must be the deployer's, which holds MINTER_ROLE and the admin role.
        let settings = merit_config::Settings::load(
            merit_config::LoadOptions::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
                .var("MERIT_ENV", "test"),
        )
        .expect("the test settings")
        .settings;
        let merit = EthersChain::connect(
            &anvil.url(),
            admin.contract(),
            settings
                .minter
                .key()
                .expect("the test settings' minter is the development key"),
            EthersOptions::default(),
        )
        .await
        .expect("connect with merit's key");
        assert_eq!(
            merit.minter(),
            admin.minter(),
            "merit's default minter key is the deployer's"
        );
        let (db, store) = TestDb::migrated(Backend::Postgres).await;
        let vhost = Vhost::create();
        let publisher = RabbitTransport::connect(
            &vhost.url,
            Topology {
                prefix: String::new(),
                shards: 2,
            },
        )
        .await
        .expect("connect the publisher");
        publisher.declare().await.expect("declare the topology");
        let log = common::artefacts().join(format!("chain-saga-{name}-{}.log", vhost.name));
        let envs = vec![
            ("MERIT_DATABASE_URL".to_string(), db.url.clone()),
            ("MERIT_AMQP_URL".into(), vhost.url.clone()),
            ("MERIT_CHAIN_RPC_URL".into(), anvil.url()),
            (
                "MERIT_CHAIN_CONTRACT_ADDRESS".into(),
                admin.contract().to_string(),
            ),
            (
                "MERIT_CHAIN_CONFIRMATIONS".into(),
                confirmations.to_string(),
            ),
            ("MERIT_CHAIN_POLL_INTERVAL_MS".into(), "100".into()),
            ("MERIT_MAILBOX_SHARDS".into(), "2".into()),
            ("MERIT_NODE_ID".into(), format!("chain-saga-{name}")),
        ];
        Self {
            anvil,
            db: Some(db),
            store,
            vhost: Some(vhost),
            publisher,
            admin,
            reader,
            log,
            envs,
            miner: None,
        }
    }

    fn spawn_node(&self) -> NodeProcess {
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        NodeProcess::spawn(&envs, &self.log)
    }

    async fn publish_first_proposal(&self, creator: Address, id: &str) {
        self.publisher
            .publish(vec![Outgoing::from_envelope(&created_by(creator, id))])
            .await
            .expect("publish governance.proposal.created");
    }

    /// Waits until `user`'s "first-proposal" achievement is in `state`.
    async fn achievement_in(&self, user: Address, state: &str, secs: u64) -> achievement::Model {
        let what = format!(
            "{user}'s achievement is {state} (node log: {})",
            self.log.display()
        );
        eventually(secs, &what, || {
            let store = self.store.clone();
            async move {
                first_proposal_of(&store, user)
                    .await
                    .is_some_and(|a| a.state == state)
            }
        })
        .await;
        first_proposal_of(&self.store, user)
            .await
            .expect("the achievement row")
    }

    /// Waits until `user`'s benefits list `token` (bronze) at 11000 bps.
    async fn wait_benefits_list(&self, user: Address, token: &TokenId, secs: u64) {
        let what = format!(
            "{user}'s benefits list {token} at 11000 bps (log: {})",
            self.log.display()
        );
        eventually(secs, &what, || {
            let (store, token) = (self.store.clone(), token.clone());
            async move {
                benefits_of(&store, user).await.is_some_and(|b| {
                    b.multiplier_bps == 11_000 && lists_token(&b, &token, "bronze")
                })
            }
        })
        .await;
    }

    /// Every Transfer log of the contract for `token`, from genesis to the head.
    async fn transfers_of(&self, token: &TokenId) -> Vec<TransferLog> {
        let head = self.reader.head_block().await.expect("head");
        self.reader
            .logs(0, head)
            .await
            .expect("Transfer logs")
            .into_iter()
            .filter(|l| &l.token_id == token)
            .collect()
    }

    async fn outbox_count(&self, routing_key: &str) -> usize {
        outbox_count(&self.store, routing_key).await
    }

    async fn sagas(&self) -> Vec<saga::Model> {
        saga::Entity::find()
            .all(self.store.db())
            .await
            .expect("sagas")
    }

    async fn mint_step(&self) -> Option<saga_step::Model> {
        saga_step::Entity::find()
            .filter(saga_step::Column::Name.eq("mint"))
            .one(self.store.db())
            .await
            .expect("saga_steps")
    }

    async fn cleanup(mut self) {
        drop(self.miner.take());
        self.store.close().await.expect("close the store");
        if let Some(vhost) = self.vhost.take() {
            vhost.delete();
        }
        if let Some(db) = self.db.take() {
            db.cleanup().await;
        }
    }
}

fn created_by(creator: Address, id: &str) -> Envelope {
    proposal_created_by("chain-saga-test", creator, id)
}

/// Waits until `tx` is mined and checks it succeeded.
async fn mined(chain: &EthersChain, tx: &TxHash) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let TxStatus::Mined { receipt, .. } = chain.confirmations(tx).await.expect("status") {
            assert!(receipt.success, "{tx} reverted");
            return;
        }
        assert!(Instant::now() < deadline, "{tx} not mined in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------

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
    let what = format!("the saga is compensated (log: {})", world.log.display());
    eventually(30, &what, || async {
        world.sagas().await.iter().any(|s| s.state == "compensated")
    })
    .await;
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

/// `user`'s benefits row, if the UserActor wrote one.
async fn benefits_of(store: &Store, user: Address) -> Option<benefit::Model> {
    benefit::Entity::find_by_id(user.to_string())
        .one(store.db())
        .await
        .expect("benefits")
}

/// Whether `benefits` lists `token` with `tier` (`boosting_nfts` is `[[token, tier], ...]`).
fn lists_token(benefits: &benefit::Model, token: &TokenId, tier: &str) -> bool {
    benefits.boosting_nfts.as_array().is_some_and(|a| {
        a.iter().any(|t| {
            t.get(0).and_then(|v| v.as_str()) == Some(token.as_str())
                && t.get(1).and_then(|v| v.as_str()) == Some(tier)
        })
    })
}

/// Sends `transferFrom(from, to, token)` to the contract as `from`, a test wallet without a
/// key: anvil impersonates it and funds it for the gas. Returns the transaction.
async fn transfer_on_chain(world: &World, from: Address, to: Address, token: &TokenId) -> TxHash {
    let anvil = &world.anvil;
    anvil
        .rpc(
            "anvil_impersonateAccount",
            serde_json::json!([from.to_string()]),
        )
        .await;
    // 1 ether for the gas.
    anvil
        .rpc(
            "anvil_setBalance",
            serde_json::json!([from.to_string(), "0xde0b6b3a7640000"]),
        )
        .await;
    let word = |a: Address| format!("{:0>64}", hex_of(&a.0));
    let id: u128 = token
        .as_str()
        .parse()
        .expect("merit's token ids fit in u128");
    // transferFrom(address,address,uint256)
    let data = format!("0x23b872dd{}{}{id:064x}", word(from), word(to));
    let tx = anvil
        .rpc(
            "eth_sendTransaction",
            serde_json::json!([{
                "from": from.to_string(),
                "to": world.admin.contract().to_string(),
                "data": data,
                "gas": "0x30d40",
            }]),
        )
        .await;
    anvil
        .rpc(
            "anvil_stopImpersonatingAccount",
            serde_json::json!([from.to_string()]),
        )
        .await;
    tx.as_str()
        .expect("a transaction hash")
        .parse()
        .expect("a transaction hash")
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_transfer_made_directly_on_chain_reaches_the_new_owners_benefits() {
    let confirmations = 2;
    let world = World::new("direct-transfer", Some(1), confirmations).await;
    let mut node = Node(Some(world.spawn_node()));
    let (holder, new_owner) = (wallet(404), wallet(405));

    // The holder's first proposal mints "first-proposal" (bronze) to it through the saga.
    world.publish_first_proposal(holder, "p-direct").await;
    let row = world.achievement_in(holder, "minted", 60).await;
    let token = token_of(&row);
    assert_eq!(row.tier, "bronze");
    world.wait_benefits_list(holder, &token, 60).await;

    // The holder gives the token away on chain, without merit.
    let tx = transfer_on_chain(&world, holder, new_owner, &token).await;
    mined(&world.reader, &tx).await;
    assert_eq!(
        world.reader.owner_of(&token, None).await.expect("ownerOf"),
        Some(new_owner),
        "the chain moved the token"
    );
    world.anvil.mine(confirmations + 1).await;

    // merit follows: the new owner's benefits gain it, the old owner's lose it.
    world.wait_benefits_list(new_owner, &token, 60).await;
    let what = format!(
        "{holder}'s benefits drop to 10000 bps with no boosting NFTs (log: {})",
        world.log.display()
    );
    eventually(60, &what, || {
        let store = world.store.clone();
        async move {
            benefits_of(&store, holder).await.is_some_and(|b| {
                b.multiplier_bps == 10_000
                    && b.boosting_nfts.as_array().is_some_and(|a| a.is_empty())
            })
        }
    })
    .await;
    check_registered_to(&world, &token, new_owner, &tx).await;

    // More blocks and polls go by: still exactly one nft.transferred for the token.
    world.anvil.mine(confirmations + 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    check_transferred_once(&world, &token, holder, new_owner).await;

    node.stop();
    world.cleanup().await;
}

/// The NftActor has `token` at `new_owner`, moved by `tx`, the second of its transfers.
async fn check_registered_to(world: &World, token: &TokenId, new_owner: Address, tx: &TxHash) {
    let stored = nft::Entity::find_by_id(token.to_string())
        .one(world.store.db())
        .await
        .expect("nfts")
        .expect("the token is registered");
    assert_eq!(stored.owner, Some(new_owner.to_string()), "{stored:?}");
    assert!(!stored.burned);
    assert_eq!(stored.tier.as_deref(), Some("bronze"));
    let transfers = world.transfers_of(token).await;
    assert_eq!(transfers.len(), 2, "a mint and a transfer: {transfers:?}");
    assert_eq!(&transfers[1].tx_hash, tx);
    assert_eq!(stored.last_block as u64, transfers[1].block);
}

/// One `nft.transferred` for `token`, to `new_owner`, after one `nft.minted`; the benefits
/// of `holder` and `new_owner` say so.
async fn check_transferred_once(
    world: &World,
    token: &TokenId,
    holder: Address,
    new_owner: Address,
) {
    let transferred: Vec<serde_json::Value> = outbox::Entity::find()
        .filter(outbox::Column::RoutingKey.eq("nft.transferred"))
        .all(world.store.db())
        .await
        .expect("outbox")
        .iter()
        .map(|r| serde_json::from_str(&r.payload).expect("an envelope"))
        .filter(|e: &serde_json::Value| e["payload"]["token"].as_str() == Some(token.as_str()))
        .collect();
    assert_eq!(
        transferred.len(),
        1,
        "one nft.transferred for the token: {transferred:?}"
    );
    assert_eq!(
        transferred[0]["payload"]["to"].as_str(),
        Some(new_owner.to_string().as_str())
    );
    assert_eq!(world.outbox_count("nft.minted").await, 1);
    let holder_benefits = benefits_of(&world.store, holder).await.expect("benefits");
    assert_eq!(
        holder_benefits.multiplier_bps, 10_000,
        "{holder_benefits:?}"
    );
    let owner_benefits = benefits_of(&world.store, new_owner)
        .await
        .expect("benefits");
    assert_eq!(owner_benefits.multiplier_bps, 11_000, "{owner_benefits:?}");
}
