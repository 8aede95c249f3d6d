//! The AchievementUnlock saga end to end, in process: a node over RabbitMQ and
//! PostgreSQL, the embedded dev chain with its miner, the Transfer-log listener, and the
//! saga executor. A rule met by governance behaviour mints exactly one NFT, which comes
//! back through the listener into the user's benefits; a mint the chain refuses (minter
//! role revoked) is compensated: no token, achievement failed, an event says so.

mod common;

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use common::{eventually, node_options, run_in_system, services, wallet, Backend, TestDb, Vhost};
use merit_chain::{Chain, DevChain, Listener, ListenerConfig};
use merit_mailbox::{Outgoing, RabbitTransport, Topology, Transport};
use merit_messages::{Address, Envelope, ProposalCreated, TokenId};
use merit_sagas::{
    unlock::{start_pending_unlocks, unlock_saga, UnlockDeps},
    ExecutorOptions, SagaExecutor, SagaRegistry,
};
use merit_storage::{
    entities::{achievement, benefit, nft, outbox, saga},
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    Store,
};
use merit_supervisors::Node;
use tokio::sync::watch;

fn created_by(creator: Address, id: &str) -> Envelope {
    let now = Utc::now();
    Envelope::new(
        "unlock-test",
        ProposalCreated {
            proposal: id.parse().expect("id"),
            creator,
            title: "A proposal".into(),
            description: String::new(),
            starts_at: now,
            ends_at: now + chrono::Duration::days(1),
            quorum: 1,
            threshold_bps: 5_000,
        },
    )
}

async fn achievement_of(store: &Store, user: Address) -> Option<achievement::Model> {
    achievement::Entity::find()
        .filter(achievement::Column::User.eq(user.to_string()))
        .filter(achievement::Column::RuleId.eq("first-proposal"))
        .one(store.db())
        .await
        .expect("achievements")
}

async fn outbox_count(store: &Store, routing_key: &str) -> usize {
    outbox::Entity::find()
        .filter(outbox::Column::RoutingKey.eq(routing_key))
        .all(store.db())
        .await
        .expect("outbox")
        .len()
}

#[test]
fn an_unlock_mints_one_token_and_a_refused_mint_is_compensated() {
    run_in_system(async {
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
        let node = Node::start(
            node_options("unlock", 2),
            store.clone(),
            services("unlock"),
            transport.clone(),
        )
        .await
        .expect("node");

        let dev = Arc::new(DevChain::new(31337));
        let _miner = dev.spawn_miner(Duration::from_millis(50));
        let (stop_tx, stop) = watch::channel(false);
        let stopped = |mut stop: watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let listener = Listener::new(
            store.clone(),
            dev.clone(),
            ListenerConfig {
                confirmations: 2,
                poll_interval: Duration::from_millis(50),
                ..ListenerConfig::default()
            },
        );
        let listening = tokio::spawn(listener.run(stopped(stop.clone())));
        let mut registry = SagaRegistry::new();
        registry
            .register(unlock_saga(UnlockDeps {
                store: store.clone(),
                chain: dev.clone(),
                confirmations: 2,
                poll: Duration::from_millis(50),
            }))
            .expect("register");
        let executor = SagaExecutor::new(
            store.clone(),
            registry,
            ExecutorOptions {
                node_id: "unlock".into(),
                poll_interval: Duration::from_millis(100),
                ..ExecutorOptions::default()
            },
        );
        let running = {
            let executor = executor.clone();
            let stop = stop.clone();
            tokio::spawn(async move { executor.run(stopped(stop)).await })
        };
        let starter = {
            let (executor, store, mut stop) = (executor.clone(), store.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    start_pending_unlocks(&executor, &store, 100)
                        .await
                        .expect("start unlocks");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            })
        };

        // Happy path: a first proposal unlocks "first-proposal" (bronze) → one NFT.
        let alice = wallet(1);
        transport
            .publish(vec![Outgoing::from_envelope(&created_by(alice, "p-alice"))])
            .await
            .expect("publish");
        let s = store.clone();
        eventually(60, "alice's achievement is minted", || {
            let s = s.clone();
            async move {
                achievement_of(&s, alice)
                    .await
                    .is_some_and(|a| a.state == "minted")
            }
        })
        .await;
        let unlocked = achievement_of(&store, alice).await.expect("achievement");
        let token: TokenId = unlocked
            .token_id
            .as_deref()
            .expect("token id")
            .parse()
            .expect("token");
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

        // The chain refuses the next mint for good: the saga compensates.
        dev.set_minter_role(false);
        let bob = wallet(2);
        transport
            .publish(vec![Outgoing::from_envelope(&created_by(bob, "p-bob"))])
            .await
            .expect("publish");
        let s = store.clone();
        eventually(60, "bob's achievement is marked failed", || {
            let s = s.clone();
            async move {
                achievement_of(&s, bob)
                    .await
                    .is_some_and(|a| a.state == "failed")
            }
        })
        .await;
        let failed = achievement_of(&store, bob).await.expect("achievement");
        let token: TokenId = failed
            .token_id
            .as_deref()
            .expect("token id")
            .parse()
            .expect("token");
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

        let _ = stop_tx.send(true);
        let _ = starter.await;
        let _ = running.await;
        let _ = listening.await;
        node.shutdown(Duration::from_secs(5)).await;
        vhost.delete();
        db.cleanup().await;
    });
}
