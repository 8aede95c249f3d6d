//! Proposal deadlines: an id cannot pre-claim one, and an emitted deadline leaves the
//! timer's scan.

use chrono::Utc;
use merit_messages::{Envelope, EventId};
use merit_storage::entities::proposal;
use serde_json::json;

use crate::{
    common::{self, Backend, TestDb},
    harness::{created, Node, WAIT},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn an_id_chosen_to_pre_claim_a_proposal_s_deadline_cannot_veto_it() {
    let node = Node::start("trust-ids").await;
    // A decoy creation whose id is the victim's close deadline, then the victim with a
    // short window. The deadline must still close it.
    let deadline = EventId::named("deadline:victim-1:close");
    let decoy = Envelope::with_id(
        deadline,
        "attacker",
        Utc::now(),
        created("decoy-1", 3, 3_600),
    );
    node.publish_as_producer(&[decoy]).await;
    common::eventually(WAIT, "the decoy exists", || async {
        node.status("decoy-1").await.is_some()
    })
    .await;
    node.publish_as_producer(&[Envelope::new("victim", created("victim-1", 4, 11))])
        .await;
    common::eventually(WAIT, "victim-1 closes at its deadline", || async {
        node.status("victim-1").await.as_deref() == Some("defeated")
    })
    .await;
    node.finish().await;
}

/// A deadline its actor never applies (refused, dead-lettered, or pre-claimed as before
/// the inbox namespaces) must not keep its proposal in the timer's scan: once emitted it
/// is marked, so 500 stuck proposals cannot starve every other proposal's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emitted_deadline_leaves_the_timer_s_scan_whether_or_not_it_is_applied() {
    use merit_storage::sea_orm::{ActiveValue::Set, EntityTrait};
    let (db, store) = TestDb::migrated(Backend::Sqlite).await;
    let now = Utc::now();
    let row = |id: &str, ends_secs_ago: i64| proposal::ActiveModel {
        id: Set(id.to_string()),
        creator: Set(common::wallet(1).to_string()),
        title: Set(id.to_string()),
        description: Set(String::new()),
        starts_at: Set(now - chrono::Duration::hours(1)),
        ends_at: Set(now - chrono::Duration::seconds(ends_secs_ago)),
        quorum: Set(1),
        threshold_bps: Set(5_000),
        status: Set("active".into()),
        tally: Set(json!({})),
        created_at: Set(now - chrono::Duration::hours(1)),
        updated_at: Set(now),
        deadlines_fired: merit_storage::sea_orm::ActiveValue::NotSet,
    };
    proposal::Entity::insert_many([row("stuck-1", 60), row("stuck-2", 50)])
        .exec(store.db())
        .await
        .expect("proposals");
    // No actor runs here: the projection stays `active`, as with a deadline its actor
    // never applied.
    assert_eq!(
        merit_supervisors::fire_due_deadlines(&store)
            .await
            .expect("tick"),
        2
    );
    assert_eq!(
        merit_supervisors::fire_due_deadlines(&store)
            .await
            .expect("tick"),
        0
    );
    assert!(
        store
            .due_proposals(Utc::now(), 500)
            .await
            .expect("due")
            .is_empty(),
        "emitted deadlines are no longer due"
    );
    // A later proposal's deadline is still found and fired.
    proposal::Entity::insert(row("fresh-1", 1))
        .exec(store.db())
        .await
        .expect("proposal");
    let due = store.due_proposals(Utc::now(), 1).await.expect("due");
    assert_eq!(
        due.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["fresh-1"]
    );
    assert_eq!(
        merit_supervisors::fire_due_deadlines(&store)
            .await
            .expect("tick"),
        1
    );
    // Each emitted once, in the outbox.
    let outbox = merit_storage::entities::outbox::Entity::find()
        .all(store.db())
        .await
        .expect("outbox");
    assert_eq!(outbox.len(), 3);
    db.cleanup().await;
}
