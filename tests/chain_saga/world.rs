//! The world of one test: its database, vhost, anvil and contract, and `merit serve`.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use merit_chain::{Chain, EthersChain, EthersOptions, TransferLog, TxStatus};
use merit_mailbox::{Outgoing, RabbitTransport, Topology, Transport};
use merit_messages::{Address, Envelope, TokenId, TxHash};
use merit_storage::{
    entities::{achievement, saga, saga_step},
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    Store,
};

use crate::{
    common::{
        self,
        anvil::{AbortOnDrop, Anvil},
        eventually, first_proposal_of, outbox_count, proposal_created_by, Backend, NodeProcess,
        TestDb, Vhost,
    },
    transfer::{benefits_of, lists_token},
};

/// `merit serve` killed if the test fails before stopping it.
pub(crate) struct Node(pub(crate) Option<NodeProcess>);

impl Node {
    pub(crate) fn kill(&mut self) {
        if let Some(node) = self.0.take() {
            node.kill();
        }
    }

    pub(crate) fn stop(&mut self) {
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

pub(crate) struct World {
    pub(crate) anvil: Anvil,
    pub(crate) db: Option<TestDb>,
    pub(crate) store: Store,
    pub(crate) vhost: Option<Vhost>,
    pub(crate) publisher: RabbitTransport,
    /// The deployer's (and merit's) view of the contract: admin and minter.
    pub(crate) admin: EthersChain,
    /// A bystander's read-only view of the same contract, connected separately.
    pub(crate) reader: EthersChain,
    pub(crate) log: PathBuf,
    pub(crate) envs: Vec<(String, String)>,
    /// Mines blocks in the background, if the test asked for it.
    pub(crate) miner: Option<AbortOnDrop>,
}

impl World {
    pub(crate) async fn new(name: &str, block_time: Option<u64>, confirmations: u64) -> Self {
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

    pub(crate) fn spawn_node(&self) -> NodeProcess {
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        NodeProcess::spawn(&envs, &self.log)
    }

    pub(crate) async fn publish_first_proposal(&self, creator: Address, id: &str) {
        self.publisher
            .publish(vec![Outgoing::from_envelope(&created_by(creator, id))])
            .await
            .expect("publish governance.proposal.created");
    }

    /// Waits until `user`'s "first-proposal" achievement is in `state`.
    pub(crate) async fn achievement_in(
        &self,
        user: Address,
        state: &str,
        secs: u64,
    ) -> achievement::Model {
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
    pub(crate) async fn wait_benefits_list(&self, user: Address, token: &TokenId, secs: u64) {
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
    pub(crate) async fn transfers_of(&self, token: &TokenId) -> Vec<TransferLog> {
        let head = self.reader.head_block().await.expect("head");
        self.reader
            .logs(0, head)
            .await
            .expect("Transfer logs")
            .into_iter()
            .filter(|l| &l.token_id == token)
            .collect()
    }

    pub(crate) async fn outbox_count(&self, routing_key: &str) -> usize {
        outbox_count(&self.store, routing_key).await
    }

    /// Waits until a saga reaches `state` (the node's log is named in a failure).
    pub(crate) async fn wait_saga(&self, state: &str, secs: u64) {
        let what = format!("the saga is {state} (log: {})", self.log.display());
        eventually(secs, &what, || async {
            self.sagas().await.iter().any(|s| s.state == state)
        })
        .await;
    }

    pub(crate) async fn sagas(&self) -> Vec<saga::Model> {
        saga::Entity::find()
            .all(self.store.db())
            .await
            .expect("sagas")
    }

    pub(crate) async fn mint_step(&self) -> Option<saga_step::Model> {
        saga_step::Entity::find()
            .filter(saga_step::Column::Name.eq("mint"))
            .one(self.store.db())
            .await
            .expect("saga_steps")
    }

    pub(crate) async fn cleanup(mut self) {
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
pub(crate) async fn mined(chain: &EthersChain, tx: &TxHash) {
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
