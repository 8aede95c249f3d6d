//! What the tests write and read: votes, turns, user rows, counts of the tables.

use merit_messages::{ActorKind, Address, Envelope, VoteChoice};
use merit_storage::{
    entities::{self, user},
    sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait},
    OutboxMessage, StateWrite, Store, Turn, TurnOutcome, TxFuture,
};
use serde_json::json;

use crate::common;

pub(crate) fn vote(voter: u8) -> Envelope {
    let mut addr = [0u8; 20];
    addr[19] = voter;
    common::vote_cast("test", "p-1", Address(addr), VoteChoice::For)
}

pub(crate) fn turn(env: &Envelope, expected: i64, state: serde_json::Value) -> Turn {
    Turn {
        consumer: "user".into(),
        event_id: env.id,
        batched: Vec::new(),
        state: Some(StateWrite {
            kind: ActorKind::User,
            key: env.keys.user.expect("vote has a user").to_string(),
            expected_version: expected,
            state,
        }),
        outbox: vec![OutboxMessage::from_envelope(&env.caused(
            "echo",
            "test",
            env.event.clone(),
        ))],
    }
}

pub(crate) fn user_row(address: String) -> user::ActiveModel {
    let now = chrono::Utc::now();
    user::ActiveModel {
        address: Set(address),
        proposals_created: Set(0),
        votes_cast: Set(1),
        counters: Set(json!({})),
        first_seen_at: Set(now),
        last_active_at: Set(now),
    }
}

pub(crate) fn user_upsert() -> merit_storage::sea_orm::sea_query::OnConflict {
    merit_storage::sea_orm::sea_query::OnConflict::column(user::Column::Address)
        .update_column(user::Column::VotesCast)
        .to_owned()
}

pub(crate) fn upsert_user(
    address: String,
) -> impl for<'c> FnOnce(&'c merit_storage::sea_orm::DatabaseTransaction) -> TxFuture<'c, ()> + Send
{
    move |txn| {
        Box::pin(async move {
            user::Entity::insert(user_row(address))
                .on_conflict(user_upsert())
                .exec(txn)
                .await?;
            Ok(())
        })
    }
}

/// Rows of actors, inbox, outbox and users.
pub(crate) async fn counts(store: &Store) -> (u64, u64, u64, u64) {
    (
        rows::<entities::actor::Entity>(store, "actors").await,
        rows::<entities::inbox::Entity>(store, "inbox").await,
        rows::<entities::outbox::Entity>(store, "outbox").await,
        rows::<entities::user::Entity>(store, "users").await,
    )
}

/// How many rows entity `E`'s table holds (`what` names it in a failure).
async fn rows<E: EntityTrait>(store: &Store, what: &str) -> u64
where
    E::Model: Sync,
{
    E::find().count(store.db()).await.expect(what)
}

/// Every entity's table exists and has the columns its model reads.
pub(crate) async fn every_table_is_readable(store: &Store) {
    readable::<entities::actor::Entity>(store, "actors").await;
    readable::<entities::user::Entity>(store, "users").await;
    readable::<entities::achievement::Entity>(store, "achievements").await;
    readable::<entities::proposal::Entity>(store, "proposals").await;
    readable::<entities::vote::Entity>(store, "votes").await;
    readable::<entities::nft::Entity>(store, "nfts").await;
    readable::<entities::siwe_nonce::Entity>(store, "siwe_nonces").await;
    readable::<entities::notification::Entity>(store, "notifications").await;
    readable::<entities::node::Entity>(store, "nodes").await;
    readable::<entities::benefit::Entity>(store, "benefits").await;
    readable::<entities::inbox::Entity>(store, "inbox").await;
    readable::<entities::outbox::Entity>(store, "outbox").await;
    readable::<entities::saga::Entity>(store, "sagas").await;
    readable::<entities::saga_step::Entity>(store, "saga_steps").await;
    readable::<entities::config_version::Entity>(store, "config_versions").await;
    readable::<entities::chain_checkpoint::Entity>(store, "chain_checkpoints").await;
}

/// Reads every row of entity `E`'s table (`what` names it in a failure).
async fn readable<E: EntityTrait>(store: &Store, what: &str) {
    E::find().all(store.db()).await.expect(what);
}

/// Commits `env` as the first turn of its voter's actor (state `{"votes": 1}`, the user
/// row projected): it applies as version 1.
pub(crate) async fn commit_first_vote(store: &Store, env: &Envelope, what: &str) {
    let key = env.keys.user.expect("user").to_string();
    let outcome = store
        .commit_turn(turn(env, 0, json!({"votes": 1})), upsert_user(key))
        .await
        .expect(what);
    assert_eq!(outcome, TurnOutcome::Applied { version: Some(1) });
}

/// The stored snapshot of user actor `key`: (version, state).
pub(crate) async fn user_snapshot(store: &Store, key: &str) -> (i64, serde_json::Value) {
    store
        .load_actor(ActorKind::User, key)
        .await
        .expect("load")
        .expect("stored")
}
