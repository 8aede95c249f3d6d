//! Bad input is a 400 naming the field (a wallet address, a filter value, a vote choice,
//! a voting window, an unknown body field, malformed JSON); a body over the limit a 413.

use crate::common::*;

#[actix_web::test]
async fn a_malformed_wallet_address_is_400_naming_the_address() {
    let h = Harness::start("address-node").await;
    let app = app!(&h.state);
    let alice = h.user(&wallet(1));
    for (path, token) in [
        ("/api/v1/users/0x123", h.admin.as_str()),
        ("/api/v1/users/not-a-wallet/nfts", alice.as_str()),
        ("/api/v1/proposals?creator=0xzz", alice.as_str()),
    ] {
        send(&app, get(path, Some(token)).to_request())
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request", "address");
    }
    h.stop().await;
}

#[actix_web::test]
async fn an_unknown_status_or_state_filter_is_400_naming_the_field_and_the_values() {
    let h = Harness::start("filter-node").await;
    let app = app!(&h.state);
    let alice = wallet(1);
    let token = h.user(&alice);
    let achievements = format!("/api/v1/users/{alice}/achievements?state=sleeping");
    for (path, field, allowed) in [
        (
            "/api/v1/proposals?status=sleeping",
            "status",
            "pending, active, succeeded, defeated, executed, cancelled",
        ),
        (
            achievements.as_str(),
            "state",
            "unlocked, reserved, minted, failed",
        ),
    ] {
        let answer = send(&app, get(path, Some(&token)).to_request()).await;
        answer.assert_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("{field}: "),
        );
        answer.assert_error(StatusCode::BAD_REQUEST, "bad_request", "sleeping");
        answer.assert_error(StatusCode::BAD_REQUEST, "bad_request", allowed);
    }
    // A known value still filters (nothing matches yet).
    for path in [
        "/api/v1/proposals?status=active".to_string(),
        format!("/api/v1/users/{alice}/achievements?state=minted"),
    ] {
        let answer = send(&app, get(&path, Some(&token)).to_request()).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text);
        assert_eq!(answer.json["total"], 0, "{path}: {}", answer.text);
    }
    h.stop().await;
}

#[actix_web::test]
async fn a_vote_choice_outside_for_against_abstain_is_400_naming_choice() {
    let h = Harness::start("choice-node").await;
    let app = app!(&h.state);
    let bob = h.user(&wallet(2));
    let answer = send(
        &app,
        post(
            "/api/v1/proposals/p/votes",
            Some(&bob),
            &json!({"choice": "maybe"}),
        )
        .to_request(),
    )
    .await;
    answer.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "choice: \"maybe\" is not one of for, against, abstain",
    );
    send(
        &app,
        post("/api/v1/proposals/p/votes", Some(&bob), &json!({})).to_request(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad_request", "choice");
    h.stop().await;
}

#[actix_web::test]
async fn a_body_over_the_size_limit_is_413() {
    let h = Harness::start("large-node").await;
    let app = app!(&h.state);
    let alice = h.user(&wallet(1));
    let limit = h.state.options.max_body_bytes;
    let mut huge = proposal("p-huge");
    huge["description"] = json!("x".repeat(limit + 1024));
    send(
        &app,
        post("/api/v1/proposals", Some(&alice), &huge).to_request(),
    )
    .await
    .assert_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("larger than {limit} bytes"),
    );
    let reason = json!({"choice": "for", "reason": "y".repeat(limit)});
    send(
        &app,
        post("/api/v1/proposals/p/votes", Some(&alice), &reason).to_request(),
    )
    .await
    .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "body");
    h.stop().await;
}

#[actix_web::test]
async fn malformed_json_or_another_content_type_is_400_naming_the_body() {
    let h = Harness::start("json-node").await;
    let app = app!(&h.state);
    let alice = h.user(&wallet(1));
    let truncated = with_token(
        test::TestRequest::post().uri("/api/v1/proposals"),
        Some(&alice),
    )
    .insert_header((header::CONTENT_TYPE, "application/json"))
    .set_payload(r#"{"proposal": "p-1", "title": "#);
    send(&app, truncated.to_request()).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "body:",
    );
    let text = with_token(
        test::TestRequest::post().uri("/api/v1/proposals"),
        Some(&alice),
    )
    .insert_header((header::CONTENT_TYPE, "text/plain"))
    .set_payload(proposal("p-1").to_string());
    send(&app, text.to_request()).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "Content-Type: application/json",
    );
    // A struct written as an array is refused as its schema refuses it.
    send(
        &app,
        post("/api/v1/proposals", Some(&alice), &json!([])).to_request(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad_request", "expected struct");
    h.stop().await;
}

#[actix_web::test]
async fn an_invalid_proposal_field_is_400_naming_the_field() {
    let h = Harness::start("fields-node").await;
    let app = app!(&h.state);
    let alice = h.user(&wallet(1));
    let mut unknown = proposal("p-1");
    unknown["colour"] = json!("red");
    let mut backwards = proposal("p-1");
    backwards["ends_at"] = json!(chrono::Utc::now() - chrono::Duration::days(1));
    for (body, field) in [(unknown, "colour"), (backwards, "ends_at")] {
        send(
            &app,
            post("/api/v1/proposals", Some(&alice), &body).to_request(),
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request", field);
    }
    let key = post("/api/v1/proposals", Some(&alice), &proposal("p-1"))
        .insert_header(("Idempotency-Key", "not-a-uuid"));
    send(&app, key.to_request()).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "Idempotency-Key",
    );
    send(
        &app,
        get("/api/v1/proposals?page=0", Some(&alice)).to_request(),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad_request", "page");
    h.stop().await;
}
