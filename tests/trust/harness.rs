//! Harness: a real node with its producer, broker users and API.

use std::time::Duration;

use chrono::Utc;
use merit_mailbox::{DeadLetter, Outgoing, Transport};
use merit_messages::{Envelope, Origin, ProposalCreated};
use merit_storage::{
    entities::{achievement, proposal},
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    Store,
};
use serde_json::Value;

use crate::common::{self, ServedNode};

pub(crate) const WAIT: u64 = 60;

pub(crate) struct Node {
    pub(crate) served: ServedNode,
    pub(crate) http: reqwest::Client,
    pub(crate) store: Store,
    pub(crate) producer: merit_mailbox::RabbitTransport,
}

impl Node {
    pub(crate) async fn start(name: &str) -> Self {
        let (db, vhost) = common::served_pg_and_vhost().await;
        let producer = common::declared_transport(&vhost.url, 2).await;
        let log = common::artefacts().join(format!("trust-{name}-{}.log", vhost.name));
        let extra = [("MERIT_MAILBOX_SHARDS", "2")];
        let served = ServedNode::spawn_on(db, vhost, name, log, &extra);
        println!("node log: {}", served.log.display());
        common::wait_ready(&served.base, 60).await;
        let store = served.db.connect().await;
        Self {
            served,
            http: reqwest::Client::new(),
            store,
            producer,
        }
    }

    /// Publishes `env` as an outside producer does: to `merit.events`, whatever its type.
    pub(crate) async fn publish_as_producer(&self, envs: &[Envelope]) {
        self.producer
            .publish(
                envs.iter()
                    .map(|e| Outgoing::from_envelope(e).through(Origin::Producer))
                    .collect(),
            )
            .await
            .expect("confirmed");
    }

    pub(crate) async fn get_admin(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.served.base))
            .bearer_auth(&self.served.admin)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }

    pub(crate) async fn status(&self, id: &str) -> Option<String> {
        proposal::Entity::find_by_id(id.to_string())
            .one(self.store.db())
            .await
            .expect("proposals")
            .map(|p| p.status)
    }

    pub(crate) async fn achievements_of(&self, user: &merit_messages::Address) -> Vec<String> {
        achievement::Entity::find()
            .filter(achievement::Column::User.eq(user.to_string()))
            .all(self.store.db())
            .await
            .expect("achievements")
            .into_iter()
            .map(|a| a.rule_id)
            .collect()
    }

    pub(crate) async fn dead_letters(&self, n: usize) -> Vec<DeadLetter> {
        let mut dls = Vec::new();
        for _ in 0..(WAIT * 5) {
            dls = common::all_dead_letters(&self.producer, &self.store).await;
            if dls.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        dls
    }

    pub(crate) async fn finish(self) {
        let ServedNode {
            process, vhost, db, ..
        } = self.served;
        drop(process);
        vhost.delete();
        db.cleanup().await;
    }
}

pub(crate) fn created(id: &str, creator: u32, window_secs: i64) -> ProposalCreated {
    let now = Utc::now();
    ProposalCreated {
        proposal: id.parse().expect("proposal id"),
        creator: common::wallet(creator),
        title: format!("Proposal {id}"),
        description: String::new(),
        starts_at: now - chrono::Duration::seconds(1),
        ends_at: now + chrono::Duration::seconds(window_secs),
        quorum: 1,
        threshold_bps: 5_000,
    }
}
