//! Credentials: a missing, forged or expired one is a 401; a user token on an operator
//! endpoint, the admin token where a user must act and a user reading another user's data
//! are 403s; each with a JSON body saying what is wrong.

use crate::common::*;

#[actix_web::test]
async fn v1_without_a_credential_is_401_missing_credential() {
    let h = Harness::start("anonymous-node").await;
    let app = app!(&h.state);
    let me = format!("/api/v1/users/{}", wallet(1));
    for path in [
        me.as_str(),
        "/api/v1/proposals",
        "/api/v1/nodes",
        "/api/v1/dlq",
    ] {
        send(&app, get(path, None).to_request()).await.assert_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing credential",
        );
    }
    send(
        &app,
        post("/api/v1/proposals", None, &proposal("p")).to_request(),
    )
    .await
    .assert_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing credential",
    );
    // Another scheme than Bearer is no credential either.
    let basic = get(&me, None).insert_header((header::AUTHORIZATION, "Basic YWxpY2U6cHc="));
    send(&app, basic.to_request()).await.assert_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing credential",
    );
    h.stop().await;
}

#[actix_web::test]
async fn a_forged_malformed_or_unsigned_token_is_401_invalid_bearer_token() {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let h = Harness::start("forged-node").await;
    let app = app!(&h.state);
    let alice = wallet(1);
    let me = format!("/api/v1/users/{alice}");
    let other_secret = merit_api::sign(
        b"another secret entirely, 32 bytes!",
        &alice.to_string(),
        60,
    );
    // Alice's genuine token with its claims swapped for Bob's: the signature no longer fits.
    let genuine = h.user(&alice);
    let parts: Vec<&str> = genuine.split('.').collect();
    let bob_claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"sub":"{}","exp":{}}}"#,
        wallet(2),
        chrono::Utc::now().timestamp() + 3600
    ));
    let swapped = format!("{}.{bob_claims}.{}", parts[0], parts[2]);
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        parts[1]
    );
    let not_a_wallet = merit_api::sign(h.jwt_secret.as_bytes(), "alice", 60);
    let near_admin = &h.admin[..h.admin.len() - 1];
    for (token, why) in [
        (other_secret.as_str(), "bad signature"),
        (swapped.as_str(), "bad signature"),
        (unsigned.as_str(), "HS256"),
        (not_a_wallet.as_str(), "subject is not a wallet address"),
        ("not-a-token", "not a JWT"),
        (near_admin, "not a JWT"),
    ] {
        send(&app, get(&me, Some(token)).to_request())
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "unauthorized", why);
    }
    h.stop().await;
}

#[actix_web::test]
async fn an_expired_token_is_401_saying_expired() {
    let h = Harness::start("expired-node").await;
    let app = app!(&h.state);
    let alice = wallet(1);
    let expired = merit_api::sign(h.jwt_secret.as_bytes(), &alice.to_string(), -3600);
    send(
        &app,
        get(&format!("/api/v1/users/{alice}"), Some(&expired)).to_request(),
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "unauthorized", "expired");
    h.stop().await;
}

#[actix_web::test]
async fn a_user_token_on_an_operator_endpoint_is_403_operators_only() {
    let h = Harness::start("operator-node").await;
    let app = app!(&h.state);
    let alice = h.user(&wallet(1));
    for path in [
        "/api/v1/nodes",
        "/api/v1/dlq",
        "/api/v1/config",
        "/api/v1/sagas",
        "/api/v1/admin/overview",
    ] {
        send(&app, get(path, Some(&alice)).to_request())
            .await
            .assert_error(StatusCode::FORBIDDEN, "forbidden", "operators only");
    }
    // The same endpoint answers the admin token: the 403 is about who asks.
    let answer = send(&app, get("/api/v1/nodes", Some(&h.admin)).to_request()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(answer.json["items"].is_array(), "{}", answer.text);
    h.stop().await;
}

#[actix_web::test]
async fn a_user_reading_another_users_data_is_403_and_their_own_is_not() {
    let h = Harness::start("own-data-node").await;
    let app = app!(&h.state);
    let (alice, bob) = (wallet(1), wallet(2));
    let token = h.user(&alice);
    for tail in ["", "/achievements", "/nfts", "/notifications"] {
        send(
            &app,
            get(&format!("/api/v1/users/{bob}{tail}"), Some(&token)).to_request(),
        )
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden", "own subject's data");
    }
    // Her own log: empty, but hers to read.
    let answer = send(
        &app,
        get(
            &format!("/api/v1/users/{alice}/notifications"),
            Some(&token),
        )
        .to_request(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["last_seq"], 0, "{}", answer.text);
    // Herself, unseen by merit: 404, not 403.
    send(
        &app,
        get(&format!("/api/v1/users/{alice}"), Some(&token)).to_request(),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found", "no event");
    h.stop().await;
}

#[actix_web::test]
async fn the_admin_token_where_a_user_must_act_is_403() {
    let h = Harness::start("acting-node").await;
    let app = app!(&h.state);
    let admin = Some(h.admin.as_str());
    send(
        &app,
        post("/api/v1/proposals", admin, &proposal("p")).to_request(),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden", "user token");
    let vote = json!({"choice": "for"});
    send(
        &app,
        post("/api/v1/proposals/p/votes", admin, &vote).to_request(),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden", "user token");
    h.stop().await;
}
