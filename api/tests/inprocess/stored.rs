//! A stored row whose state is outside its enum (written by hand, by a newer release, by a
//! bad migration) is never served: the row is a 500 saying a stored row is corrupt, in
//! the one JSON error body, whether it is asked for alone or in a list.

use merit_storage::{
    entities::{achievement, dead_letter, proposal, saga, vote},
    sea_orm::{
        ActiveValue::{NotSet, Set},
        EntityTrait,
    },
};

use crate::common::*;

fn proposal_row(id: &str, status: &str) -> proposal::ActiveModel {
    // Far in the future, so no deadline timer touches it during the test.
    let starts = chrono::Utc::now() + chrono::Duration::days(365);
    proposal::ActiveModel {
        id: Set(id.to_string()),
        creator: Set(wallet(1).to_string()),
        title: Set("Stored by hand".to_string()),
        description: Set(String::new()),
        starts_at: Set(starts),
        ends_at: Set(starts + chrono::Duration::days(3)),
        quorum: Set(1000),
        threshold_bps: Set(5000),
        status: Set(status.to_string()),
        tally: Set(json!({})),
        created_at: Set(chrono::Utc::now()),
        updated_at: Set(chrono::Utc::now()),
        deadlines_fired: Set(0),
    }
}

fn vote_row(proposal: &str, voter: u8, choice: &str) -> vote::ActiveModel {
    vote::ActiveModel {
        proposal_id: Set(proposal.to_string()),
        voter: Set(wallet(voter).to_string()),
        choice: Set(choice.to_string()),
        weight: Set(1000),
        boosts: Set(json!([])),
        event_id: Set(uuid::Uuid::new_v4().to_string()),
        cast_at: Set(chrono::Utc::now()),
    }
}

#[actix_web::test]
async fn a_stored_status_or_choice_outside_its_enum_is_a_500_saying_the_row_is_corrupt() {
    let h = Harness::start("corrupt-node").await;
    let db = h.state.store.db();
    proposal::Entity::insert(proposal_row("good", "pending"))
        .exec(db)
        .await
        .expect("insert a proposal");
    proposal::Entity::insert(proposal_row("bad", "sleeping"))
        .exec(db)
        .await
        .expect("insert a corrupt proposal");
    vote::Entity::insert(vote_row("good", 2, "maybe"))
        .exec(db)
        .await
        .expect("insert a corrupt vote");
    let app = app!(&h.state);
    let token = h.user(&wallet(3));
    // A good row is served as before.
    let good = send(
        &app,
        get("/api/v1/proposals/good", Some(&token)).to_request(),
    )
    .await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.text);
    assert_eq!(good.json["status"], "pending", "{}", good.text);
    for path in [
        "/api/v1/proposals/bad",
        "/api/v1/proposals",
        "/api/v1/proposals/good/votes",
    ] {
        let answer = send(&app, get(path, Some(&token)).to_request()).await;
        answer.assert_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a stored row is corrupt",
        );
        for value in ["sleeping", "maybe"] {
            assert!(
                !answer.text.contains(value),
                "{path}: the corrupt value is not served: {}",
                answer.text
            );
        }
    }
    // A filter that leaves the corrupt row out serves the rest.
    let pending = send(
        &app,
        get("/api/v1/proposals?status=pending", Some(&token)).to_request(),
    )
    .await;
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.text);
    assert_eq!(pending.json["total"], 1, "{}", pending.text);
    assert_eq!(pending.json["items"][0]["id"], "good", "{}", pending.text);
    h.stop().await;
}

#[actix_web::test]
async fn a_stored_achievement_or_dead_letter_state_outside_its_enum_is_a_500() {
    let h = Harness::start("corrupt-states-node").await;
    let db = h.state.store.db();
    let carol = wallet(3);
    let now = chrono::Utc::now();
    achievement::Entity::insert(achievement::ActiveModel {
        id: Set(uuid::Uuid::new_v4().to_string()),
        user: Set(carol.to_string()),
        rule_id: Set("first_vote".to_string()),
        rule_version: Set(1),
        tier: Set("bronze".to_string()),
        token_id: Set(None),
        state: Set("revoked".to_string()),
        saga_id: Set(None),
        correlation_id: Set(None),
        reason: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec(db)
    .await
    .expect("insert a corrupt achievement");
    let letter = uuid::Uuid::new_v4().to_string();
    dead_letter::Entity::insert(dead_letter::ActiveModel {
        seq: NotSet,
        id: Set(letter.clone()),
        routing_key: Set("governance.vote.cast".to_string()),
        reason_class: Set("malformed".to_string()),
        reason: Set("not JSON".to_string()),
        attempts: Set(1),
        body: Set(b"{".to_vec()),
        truncated_from: Set(None),
        origin: Set("producer".to_string()),
        source_queue: Set("merit.proposal.0".to_string()),
        message_id: Set(None),
        correlation_id: Set(None),
        headers: Set(json!({})),
        dead_lettered_at: Set(now),
        recorded_at: Set(now),
        state: Set("lost".to_string()),
        settled_at: Set(None),
    })
    .exec(db)
    .await
    .expect("insert a corrupt dead letter");
    let app = app!(&h.state);
    let user = h.user(&carol);
    let achievements = format!("/api/v1/users/{carol}/achievements");
    let one_letter = format!("/api/v1/dlq/{letter}");
    for (path, token) in [
        (achievements.as_str(), user.as_str()),
        ("/api/v1/dlq?state=all", h.admin.as_str()),
        (one_letter.as_str(), h.admin.as_str()),
    ] {
        let answer = send(&app, get(path, Some(token)).to_request()).await;
        answer.assert_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a stored row is corrupt",
        );
        assert!(!answer.text.contains("revoked") && !answer.text.contains("lost"));
    }
    // Listings that leave the corrupt rows out still answer.
    for (path, token) in [
        (format!("{achievements}?state=minted"), user.as_str()),
        ("/api/v1/dlq".to_string(), h.admin.as_str()),
    ] {
        let answer = send(&app, get(&path, Some(token)).to_request()).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text);
        assert_eq!(answer.json["total"], 0, "{path}: {}", answer.text);
    }
    h.stop().await;
}

/// A saga row whose state merit does not know is a 500, as the other rows are, not a 503
/// (which says "try again later": retrying will not mend a row), alone and in the list.
#[actix_web::test]
async fn a_stored_saga_state_outside_its_enum_is_a_500_not_an_outage() {
    let mut h = Harness::start("corrupt-saga-node").await;
    h.state.sagas = Some(merit_sagas::SagaExecutor::new(
        h.state.store.clone(),
        merit_sagas::SagaRegistry::new(),
        merit_sagas::ExecutorOptions::default(),
    ));
    let id = uuid::Uuid::new_v4().to_string();
    let now = chrono::Utc::now();
    saga::Entity::insert(saga::ActiveModel {
        id: Set(id.clone()),
        kind: Set("achievement_unlock".to_string()),
        state: Set("sleeping".to_string()),
        current_step: Set(0),
        data: Set(json!({})),
        correlation_id: Set("c-1".to_string()),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        lease_owner: Set(None),
        lease_until: Set(None),
        next_attempt_at: Set(None),
    })
    .exec(h.state.store.db())
    .await
    .expect("insert a corrupt saga");
    let app = app!(&h.state);
    for path in [format!("/api/v1/sagas/{id}"), "/api/v1/sagas".to_string()] {
        let answer = send(&app, get(&path, Some(&h.admin)).to_request()).await;
        answer.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "failed");
        assert!(!answer.text.contains("sleeping"), "{path}: {}", answer.text);
    }
    h.stop().await;
}
