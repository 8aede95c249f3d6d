//! Poison messages are dead-lettered with their reasons while their neighbours are
//! processed.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use merit_mailbox::{Outgoing, RabbitTransport, Transport};
use merit_messages::{Address, Envelope, VoteChoice};
use merit_storage::{
    entities::{actor, user},
    sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait},
    Store,
};

use crate::{
    common::{self, eventually, run_in_system, start_node, wallet},
    harness::world,
};

pub(crate) fn vote(voter: Address, proposal: &str) -> Envelope {
    common::vote_cast("dlq-test", proposal, voter, VoteChoice::For)
}

/// A user whose stored snapshot is unreadable: every turn for it fails.
async fn plant_corrupt_snapshot(store: &Store, user: Address) {
    actor::Entity::insert(actor::ActiveModel {
        kind: Set("user".into()),
        key: Set(user.to_string()),
        version: Set(1),
        state: Set(serde_json::json!({"votes_cast": "not a number"})),
        updated_at: Set(Utc::now()),
    })
    .exec(store.db())
    .await
    .expect("plant a corrupt snapshot");
}

/// A proposal's creation and 50 good votes on it, with three poison messages among them:
/// a vote by `poisoned`, bad JSON and an unknown event type.
fn votes_with_poison(poisoned: Address) -> Vec<Outgoing> {
    let good: Vec<Envelope> = (0..50).map(|i| vote(wallet(i), "p-1")).collect();
    let created = common::open_proposal("p-1");
    let mut out = vec![Outgoing::from_envelope(&created)];
    out.extend(good[..25].iter().map(Outgoing::from_envelope));
    out.push(Outgoing::from_envelope(&vote(poisoned, "p-1")));
    // Routed like a creation, which the proposal shards take.
    let mut bad_json = Outgoing::from_envelope(&created);
    bad_json.body = Bytes::from_static(b"{\"id\": oops");
    bad_json.message_id = "bad-json".into();
    out.push(bad_json);
    let mut unknown = Outgoing::from_envelope(&good[1]);
    unknown.routing_key = "governance.vote.exploded".into();
    unknown.message_id = "unknown-type".into();
    out.push(unknown);
    out.extend(good[25..].iter().map(Outgoing::from_envelope));
    out
}

/// The three dead letters carry their reasons: one malformed, one unknown type, and the
/// poisoned turn's handler error after its three attempts.
async fn check_dead_letters_carry_their_reasons(transport: &RabbitTransport, store: &Store) {
    let dead = common::all_dead_letters(transport, store).await;
    let classes: Vec<&str> = dead.iter().map(|d| d.reason_class.as_str()).collect();
    assert_eq!(
        classes.iter().filter(|c| **c == "malformed").count(),
        1,
        "{classes:?}"
    );
    assert!(classes.contains(&"unknown_type"), "{classes:?}");
    let handler = dead
        .iter()
        .find(|d| d.reason_class == "handler_error")
        .expect("handler error dead letter");
    assert!(
        handler.reason.contains("unreadable"),
        "reason names the failure: {}",
        handler.reason
    );
    assert_eq!(handler.attempts, 3, "dead-lettered after max_attempts");
}

/// Malformed messages and a message whose handler keeps failing go to the dead-letter
/// queue with their reasons; the messages around them are applied.
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn poison_messages_are_dead_lettered_with_reasons_while_neighbours_are_processed() {
    run_in_system(async {
        let (db, store, vhost, transport) = world(2).await;
        let poisoned = wallet(999);
        plant_corrupt_snapshot(&store, poisoned).await;
        let node = start_node("dlq", 2, store.clone(), transport.clone()).await;
        transport
            .publish(votes_with_poison(poisoned))
            .await
            .expect("publish");

        let db_conn = store.db().clone();
        // 50 voters (their vote.recorded) and the creator.
        eventually(60, "the good votes are applied", || {
            let db_conn = db_conn.clone();
            async move { user::Entity::find().count(&db_conn).await.expect("count") == 51 }
        })
        .await;
        let (t, s) = (transport.clone(), store.clone());
        // Bad JSON is refused by the proposal shard it reached; the unknown type by the
        // unrouted mover; the poisoned turn after its attempts.
        eventually(60, "three dead letters", || {
            let (t, s) = (t.clone(), s.clone());
            async move { common::all_dead_letters(t.as_ref(), &s).await.len() >= 3 }
        })
        .await;
        check_dead_letters_carry_their_reasons(&transport, &store).await;
        let status = node.status();
        let users = status
            .registries
            .iter()
            .find(|r| r.kind == "user")
            .expect("user registry");
        assert!(
            users.retries >= 2,
            "the poisoned turn was retried: {users:?}"
        );
        node.shutdown(Duration::from_secs(5)).await;
        vhost.delete();
        db.cleanup().await;
    });
}
