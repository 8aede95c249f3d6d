//! A node recovers closed broker connections and sweeps its bookkeeping rows.

use std::time::Duration;

use chrono::Utc;
use merit_mailbox::{Outgoing, Transport};
use merit_messages::Envelope;
use merit_storage::sea_orm::{ActiveValue::Set, EntityTrait};
use merit_supervisors::Node;

use crate::{
    common::{self, eventually, node_options, run_in_system, services, start_node, wallet},
    harness::{rabbit, world},
    poison::vote,
};

#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn closed_broker_connections_recover_with_nothing_lost() {
    run_in_system(async {
        let (db, store, vhost, node_transport) = world(2).await;
        let node = start_node("recover", 2, store.clone(), node_transport.clone()).await;
        let producer = rabbit(&vhost, 2).await;
        common::publish_open_proposals(producer.as_ref(), 10).await;
        let votes: Vec<Envelope> = (0..4_000)
            .map(|i| vote(wallet(i % 400), &format!("p-{}", i / 400)))
            .collect();
        let mut closed = 0;
        for (i, chunk) in votes.chunks(500).enumerate() {
            // The producer retries a batch the outage interrupted; duplicates are absorbed.
            while producer
                .publish(chunk.iter().map(Outgoing::from_envelope).collect())
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if i % 3 == 1 {
                vhost.close_connections();
                closed += 1;
            }
        }
        let s = store.clone();
        eventually(
            120,
            "all 4,000 votes applied after the connections were closed",
            || {
                let s = s.clone();
                async move { common::votes_counted(&s).await >= 4_000 }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            common::votes_counted(&store).await,
            4_000,
            "nothing lost, nothing doubled"
        );
        assert!(closed >= 2);
        assert!(
            node_transport.is_connected().await,
            "the node's transport reconnected by itself"
        );
        node.shutdown(Duration::from_secs(5)).await;
        vhost.delete();
        db.cleanup().await;
    });
}

/// Every node runs the retention sweeper: an inbox row applied before the retention goes,
/// a fresh one stays, and the service shows in the node's status.
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn a_node_sweeps_bookkeeping_rows_past_their_retention() {
    use merit_storage::entities::inbox;
    run_in_system(async {
        let (db, store, vhost, transport) = world(1).await;
        let row = |id: &str, days_ago: i64| inbox::ActiveModel {
            consumer: Set("user".into()),
            event_id: Set(id.into()),
            processed_at: Set(Utc::now() - chrono::Duration::days(days_ago)),
        };
        inbox::Entity::insert_many([row("expired", 2), row("fresh", 0)])
            .exec(store.db())
            .await
            .expect("inbox rows");
        let mut options = node_options("sweep", 1);
        options.retention.inbox = Some(Duration::from_secs(86_400));
        options.sweep_interval = Duration::from_millis(200);
        let node = Node::start(options, store.clone(), services("sweep"), transport)
            .await
            .expect("node");
        let ids = |store: merit_storage::Store| async move {
            inbox::Entity::find()
                .all(store.db())
                .await
                .expect("inbox")
                .into_iter()
                .map(|r| r.event_id)
                .collect::<Vec<_>>()
        };
        let s = store.clone();
        eventually(30, "the expired inbox row is swept", || {
            let s = s.clone();
            async move { ids(s).await == ["fresh"] }
        })
        .await;
        assert!(node
            .status()
            .services
            .iter()
            .any(|s| s.name == "retention-sweeper"));
        node.shutdown(Duration::from_secs(5)).await;
        vhost.delete();
        store.close().await.expect("close");
        db.cleanup().await;
    });
}
