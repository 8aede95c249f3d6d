//! The AchievementUnlock saga end to end, in process: a node over RabbitMQ and
//! PostgreSQL, the embedded dev chain with its miner, the Transfer-log listener, and the
//! saga executor. A rule met by governance behaviour mints exactly one NFT, which comes
//! back through the listener into the user's benefits; a mint the chain refuses (minter
//! role revoked) is compensated: no token, achievement failed, an event says so.

mod common;

use std::{sync::Arc, time::Duration};

use common::{
    eventually, first_proposal_of, outbox_count, proposal_created_by, run_in_system, token_of,
    wallet, Backend, TestDb, Vhost,
};
use merit_actors::unlock::{start_pending_unlocks, unlock_saga, UnlockDeps};
use merit_chain::{Chain, DevChain, Listener, ListenerConfig};
use merit_mailbox::{Outgoing, RabbitTransport, Topology, Transport};
use merit_messages::{Address, Envelope};
use merit_sagas::{ExecutorOptions, SagaExecutor, SagaRegistry};
use merit_storage::{
    entities::{benefit, nft, saga, saga_step},
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    Store,
};
use merit_supervisors::Node;
use tokio::sync::watch;

fn created_by(creator: Address, id: &str) -> Envelope {
    proposal_created_by("unlock-test", creator, id)
}

/// Waits until `user`'s first-proposal achievement is minted.
async fn wait_minted(store: &Store, user: Address, secs: u64) {
    wait_achievement(store, user, "minted", secs).await;
}

/// Waits until `user`'s first-proposal achievement is in `state`.
async fn wait_achievement(store: &Store, user: Address, state: &'static str, secs: u64) {
    let s = store.clone();
    let what = format!("{user}'s achievement is {state}");
    eventually(secs, &what, || {
        let s = s.clone();
        async move {
            first_proposal_of(&s, user)
                .await
                .is_some_and(|a| a.state == state)
        }
    })
    .await;
}

/// Waits until the mint step has sent its transaction and awaits its confirmations.
async fn mint_sent(store: &Store) {
    let s = store.clone();
    eventually(60, "the mint is awaiting confirmations", || {
        let s = s.clone();
        async move {
            saga_step::Entity::find()
                .filter(saga_step::Column::Name.eq("mint"))
                .one(s.db())
                .await
                .expect("steps")
                .is_some_and(|step| step.state == "awaiting" && step.output.is_some())
        }
    })
    .await;
}

/// A node, the dev chain with its miner, the listener, the saga executor and the unlock
/// starter, as `merit serve` wires them, with the chain in the test's hands.
struct Rig {
    db: TestDb,
    store: Store,
    vhost: Vhost,
    transport: Arc<RabbitTransport>,
    node: Node,
    dev: Arc<DevChain>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl Rig {
    async fn start(name: &str, confirmations: u64, block_every: Duration) -> Self {
        let (db, store) = TestDb::migrated(Backend::Postgres).await;
        let vhost = Vhost::create();
        let topology = Topology {
            prefix: String::new(),
            shards: 2,
        };
        let transport = Arc::new(
            RabbitTransport::connect(&vhost.url, topology)
                .await
                .expect("connect"),
        );
        transport.declare().await.expect("declare");
        let node = common::start_node(name, 2, store.clone(), transport.clone()).await;
        let dev = Arc::new(DevChain::new(31337));
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = vec![dev.spawn_miner(block_every)];
        let listener = Listener::new(
            store.clone(),
            dev.clone(),
            ListenerConfig {
                confirmations,
                poll_interval: Duration::from_millis(50),
                ..ListenerConfig::default()
            },
        );
        tasks.push(tokio::spawn(listener.run(stopped(stop_rx.clone()))));
        tasks.extend(Self::spawn_sagas(
            name,
            &store,
            &dev,
            confirmations,
            stop_rx,
        ));
        Self {
            db,
            store,
            vhost,
            transport,
            node,
            dev,
            stop,
            tasks,
        }
    }

    /// The saga executor with the unlock saga, and the unlock starter, as `merit serve`
    /// runs them, until `stop_rx` says stop.
    fn spawn_sagas(
        name: &str,
        store: &Store,
        dev: &Arc<DevChain>,
        confirmations: u64,
        stop_rx: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let mut registry = SagaRegistry::new();
        registry
            .register(unlock_saga(UnlockDeps {
                store: store.clone(),
                chain: dev.clone(),
                confirmations,
                poll: Duration::from_millis(50),
            }))
            .expect("register");
        let executor = SagaExecutor::new(
            store.clone(),
            registry,
            ExecutorOptions {
                node_id: name.into(),
                poll_interval: Duration::from_millis(100),
                ..ExecutorOptions::default()
            },
        );
        {
            let (executor, stop) = (executor.clone(), stop_rx.clone());
            tasks.push(tokio::spawn(async move {
                executor.run(stopped(stop)).await.expect("executor");
            }));
        }
        {
            let (executor, store, mut stop) = (executor, store.clone(), stop_rx);
            tasks.push(tokio::spawn(async move {
                loop {
                    start_pending_unlocks(&executor, &store, 100)
                        .await
                        .expect("start unlocks");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }));
        }
        tasks
    }

    async fn publish(&self, envelope: &Envelope) {
        self.transport
            .publish(vec![Outgoing::from_envelope(envelope)])
            .await
            .expect("publish");
    }

    async fn finish(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
        self.node.shutdown(Duration::from_secs(5)).await;
        self.vhost.delete();
        self.db.cleanup().await;
    }
}

#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn an_unlock_mints_one_token_that_reaches_the_users_benefits() {
    run_in_system(async {
        let rig = Rig::start("unlock", 2, Duration::from_millis(50)).await;
        let (store, dev) = (rig.store.clone(), rig.dev.clone());

        // Happy path: a first proposal unlocks "first-proposal" (bronze) → one NFT.
        let alice = wallet(1);
        let created = created_by(alice, "p-alice");
        rig.publish(&created).await;
        wait_minted(&store, alice, 60).await;
        let unlocked = first_proposal_of(&store, alice).await.expect("achievement");
        // The unlock saga runs under the operation's correlation id: the proposal's.
        let correlation = created.correlation_id.to_string();
        assert_eq!(
            unlocked.correlation_id.as_deref(),
            Some(correlation.as_str())
        );
        let saga_row = saga::Entity::find_by_id(unlocked.saga_id.clone().expect("saga id"))
            .one(store.db())
            .await
            .expect("sagas")
            .expect("the unlock saga");
        assert_eq!(saga_row.correlation_id, correlation);
        let token = token_of(&unlocked);
        assert_eq!(
            dev.owner_of(&token, None).await.expect("owner"),
            Some(alice),
            "the token is on chain, owned by alice"
        );
        let stored = nft::Entity::find_by_id(token.to_string())
            .one(store.db())
            .await
            .expect("nfts")
            .expect("the NftActor registered the token");
        assert_eq!(stored.owner, Some(alice.to_string()));
        assert_eq!(
            stored.tier.as_deref(),
            Some("bronze"),
            "tier from the achievement"
        );
        let s = store.clone();
        eventually(30, "alice's benefits hold the token", || {
            let (s, token) = (s.clone(), token.to_string());
            async move {
                benefit::Entity::find_by_id(alice.to_string())
                    .one(s.db())
                    .await
                    .expect("benefits")
                    .is_some_and(|b| b.boosting_nfts.to_string().contains(&token))
            }
        })
        .await;
        let sagas = saga::Entity::find().all(store.db()).await.expect("sagas");
        assert_eq!(sagas.len(), 1, "one saga for one unlock");
        assert_eq!(sagas[0].state, "completed");
        assert_eq!(outbox_count(&store, "achievement.minted").await, 1);
        assert_eq!(
            outbox_count(&store, "nft.minted").await,
            1,
            "exactly one mint on chain"
        );
        rig.finish().await;
    });
}

#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn a_mint_the_chain_refuses_is_compensated() {
    run_in_system(async {
        let rig = Rig::start("unlock-refused", 2, Duration::from_millis(50)).await;
        let (store, dev) = (rig.store.clone(), rig.dev.clone());

        // The chain refuses the mint for good: the saga compensates.
        dev.set_minter_role(false);
        let bob = wallet(2);
        rig.publish(&created_by(bob, "p-bob")).await;
        wait_achievement(&store, bob, "failed", 60).await;
        let failed = first_proposal_of(&store, bob).await.expect("achievement");
        let token = token_of(&failed);
        assert_eq!(
            dev.owner_of(&token, None).await.expect("owner"),
            None,
            "no token"
        );
        assert!(failed.reason.is_some(), "the failure has a reason");
        assert_eq!(
            outbox_count(&store, "achievement.failed").await,
            1,
            "an event says so"
        );
        let s = store.clone();
        eventually(30, "bob's saga is compensated", || {
            let s = s.clone();
            async move {
                saga::Entity::find()
                    .filter(saga::Column::State.eq("compensated"))
                    .all(s.db())
                    .await
                    .expect("sagas")
                    .len()
                    == 1
            }
        })
        .await;

        rig.finish().await;
    });
}

/// A reorg drops the mint transaction before it has its confirmations: the mint step
/// sees it gone and mints again — the same token id, so never a second token — and the
/// listener, reading only confirmed blocks, never published the dropped one.
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn a_mint_dropped_by_a_reorg_is_redone_once() {
    run_in_system(async {
        let rig = Rig::start("reorg", 6, Duration::from_millis(300)).await;
        let (store, dev) = (rig.store.clone(), rig.dev.clone());
        let carol = wallet(3);
        rig.publish(&created_by(carol, "p-carol")).await;
        // Wait until the mint is sent (the step awaits its confirmations), then drop it.
        mint_sent(&store).await;
        let token = token_of(&first_proposal_of(&store, carol).await.expect("achievement"));
        let mined = dev.owner_of(&token, None).await.expect("owner");
        dev.reorg(3);
        let after = dev.owner_of(&token, None).await.expect("owner");
        assert_eq!(
            (mined, after),
            (Some(carol), None),
            "the mint was in a block, and the reorg dropped that block"
        );
        wait_minted(&store, carol, 90).await;
        assert_eq!(
            dev.owner_of(&token, None).await.expect("owner"),
            Some(carol),
            "the token exists once, owned by carol"
        );
        assert_eq!(
            outbox_count(&store, "nft.minted").await,
            1,
            "one mint reached merit"
        );
        rig.finish().await;
    });
}

/// The chain the mint went to is gone: a node's in-process chain restarts empty with it
/// (or an RPC node far behind answers), its head below the block the mint was sent at.
/// The transaction cannot be pending there, so the step sends it again at once rather
/// than waiting for the head to climb back past that block.
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn a_chain_restarted_below_the_mint_gets_the_mint_again_at_once() {
    run_in_system(async {
        let rig = Rig::start("reset", 6, Duration::from_millis(300)).await;
        let (store, dev) = (rig.store.clone(), rig.dev.clone());
        let sent_at = dev.mine(200);
        let erin = wallet(5);
        rig.publish(&created_by(erin, "p-erin")).await;
        mint_sent(&store).await;
        let token = token_of(&first_proposal_of(&store, erin).await.expect("achievement"));
        assert_eq!(dev.owner_of(&token, None).await.expect("owner"), Some(erin));
        dev.reset();
        assert_eq!(dev.owner_of(&token, None).await.expect("owner"), None);
        let (d, t) = (dev.clone(), token.clone());
        eventually(90, "the token is minted again on the fresh chain", || {
            let (d, t) = (d.clone(), t.clone());
            async move { d.owner_of(&t, None).await.ok().flatten() == Some(erin) }
        })
        .await;
        let head = dev.head_block().await.expect("head");
        assert!(
            head < sent_at,
            "minted again at block {head}, not before the head climbed back to {sent_at}"
        );
        rig.finish().await;
    });
}

/// The RPC endpoint is away for longer than the mint step's attempt budget: the step waits
/// without spending attempts (an exhausted budget would compensate instead), then mints
/// once when the endpoint answers again.
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn an_unreachable_chain_stalls_the_saga_and_it_resumes_with_one_mint() {
    run_in_system(async {
        let rig = Rig::start("outage", 2, Duration::from_millis(50)).await;
        let (store, dev) = (rig.store.clone(), rig.dev.clone());
        // More refused mint calls than the step's 5 attempts.
        dev.fail_next_on("mint", 7, merit_chain::ErrorClass::Unavailable);
        let dave = wallet(4);
        rig.publish(&created_by(dave, "p-dave")).await;
        wait_minted(&store, dave, 90).await;
        let token = token_of(&first_proposal_of(&store, dave).await.expect("achievement"));
        assert_eq!(dev.owner_of(&token, None).await.expect("owner"), Some(dave));
        assert_eq!(outbox_count(&store, "nft.minted").await, 1, "one mint");
        assert_eq!(
            outbox_count(&store, "achievement.failed").await,
            0,
            "not compensated"
        );
        let sagas = saga::Entity::find().all(store.db()).await.expect("sagas");
        assert_eq!(sagas.len(), 1);
        assert_eq!(sagas[0].state, "completed");
        rig.finish().await;
    });
}

/// The user passes the freshly minted token on before merit has seen it confirmed (their
/// right: it is theirs once mined). The saga still completes — the token exists, minted
/// for this achievement — and nothing is burned: merit never destroys what now belongs to
/// someone else.
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn a_token_traded_before_its_mint_is_confirmed_completes_the_unlock_without_a_burn() {
    run_in_system(async {
        let rig = Rig::start("traded", 6, Duration::from_millis(300)).await;
        let (store, dev) = (rig.store.clone(), rig.dev.clone());
        let dave = wallet(4);
        let erin = wallet(5);
        rig.publish(&created_by(dave, "p-dave")).await;
        mint_sent(&store).await;
        let token = token_of(&first_proposal_of(&store, dave).await.expect("achievement"));
        eventually(30, "the mint is mined", || {
            let (dev, token) = (dev.clone(), token.clone());
            async move { dev.owner_of(&token, None).await.ok().flatten() == Some(dave) }
        })
        .await;
        dev.transfer(dave, erin, &token)
            .expect("dave passes the token on");
        wait_minted(&store, dave, 90).await;
        assert_eq!(
            dev.owner_of(&token, None).await.expect("owner"),
            Some(erin),
            "the token lives on, at erin"
        );
        assert_eq!(outbox_count(&store, "achievement.failed").await, 0);
        let s = store.clone();
        eventually(30, "the NftActor has erin as the holder", || {
            let (s, token) = (s.clone(), token.to_string());
            async move {
                nft::Entity::find_by_id(token)
                    .one(s.db())
                    .await
                    .expect("nfts")
                    .is_some_and(|n| n.owner == Some(erin.to_string()) && !n.burned)
            }
        })
        .await;
        assert_eq!(
            outbox_count(&store, "nft.burned").await,
            0,
            "nothing burned"
        );
        rig.finish().await;
    });
}
