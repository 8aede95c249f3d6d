//! Harness: the rule documents proposed, the stored version count, and a center holding
//! two versions.

use merit_actors::center::ConfigCenter;
use merit_storage::{
    entities::config_version,
    sea_orm::{EntityTrait, PaginatorTrait},
    Store,
};
use merit_testkit::{Backend, TestDb};

const TIERS: &str = r#""tiers": { "bronze": { "title": "Bronze", "bonus_bps": 1000 },
                                   "gold": { "title": "Gold", "bonus_bps": 5000 } },
    "limits": { "max_multiplier_bps": 20000, "max_boosting_nfts": 3 }"#;

/// A document with rules `first-proposal` (1 proposal) and `voter` (`votes` votes).
pub(crate) fn doc(votes: u32) -> String {
    format!(
        r#"{{ {TIERS}, "rules": [
        {{ "id": "first-proposal", "tier": "bronze", "title": "First proposal",
           "when": {{ "count": {{ "activity": "proposal_created", "at_least": 1 }} }} }},
        {{ "id": "voter", "tier": "gold", "title": "Voter",
           "when": {{ "count": {{ "activity": "vote_cast", "at_least": {votes} }} }} }} ] }}"#
    )
}

/// How many config versions are stored.
pub(crate) async fn config_rows(store: &Store) -> u64 {
    config_version::Entity::find()
        .count(store.db())
        .await
        .expect("count")
}

/// A migrated database whose config center holds two versions by alice: `doc(first)` as
/// version 1 and `doc(second)` as version 2.
pub(crate) async fn two_versions(
    backend: Backend,
    first: u32,
    second: u32,
) -> (TestDb, Store, ConfigCenter) {
    let (db, store) = TestDb::migrated(backend).await;
    let center = ConfigCenter::new(store.clone());
    center
        .propose(doc(first).as_bytes(), "alice", "v1")
        .await
        .expect("v1");
    center
        .propose(doc(second).as_bytes(), "alice", "v2")
        .await
        .expect("v2");
    (db, store, center)
}
