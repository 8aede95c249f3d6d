//! The open pages: `/health`, `/ready`, `/openapi.json`; an unknown path (404) and a known
//! path asked with another method (405, `Allow`); no secret in any response body.

use crate::common::*;

#[actix_web::test]
async fn health_is_200_alive_naming_the_node() {
    let h = Harness::start("health-node").await;
    let app = app!(&h.state);
    let answer = send(&app, get("/health", None).to_request()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json["status"], "alive", "{}", answer.text);
    assert_eq!(answer.json["node_id"], "health-node", "{}", answer.text);
    h.stop().await;
}

#[actix_web::test]
async fn openapi_json_is_the_openapi_document_of_the_v1_routes() {
    let h = Harness::start("openapi-node").await;
    let app = app!(&h.state);
    let answer = send(&app, get("/openapi.json", None).to_request()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    let version = answer.json["openapi"].as_str().unwrap_or_default();
    assert!(
        version.starts_with('3'),
        "an OpenAPI 3 document: {version:?}"
    );
    for path in [
        "/api/v1/proposals",
        "/api/v1/proposals/{id}/votes",
        "/api/v1/users/{address}",
    ] {
        assert!(
            answer.json["paths"][path].is_object(),
            "the document lists {path}"
        );
    }
    h.stop().await;
}

#[actix_web::test]
async fn an_unknown_path_is_404_with_a_json_error_body() {
    let h = Harness::start("unknown-node").await;
    let app = app!(&h.state);
    // With the admin token too: a missing route is not an authentication matter.
    for token in [None, Some(h.admin.as_str())] {
        for path in ["/api/v1/nothing-here", "/no/such/page"] {
            send(&app, get(path, token).to_request())
                .await
                .assert_error(StatusCode::NOT_FOUND, "not_found", "no route");
        }
    }
    h.stop().await;
}

#[actix_web::test]
async fn a_known_path_asked_with_another_method_is_405_with_allow_and_a_json_body() {
    let h = Harness::start("method-node").await;
    let app = app!(&h.state);
    let req = with_token(test::TestRequest::delete().uri("/api/v1/proposals"), None);
    let answer = send(&app, req.to_request()).await;
    answer.assert_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path answers",
    );
    let allow = answer.allow.expect("a 405 carries Allow");
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "GET and POST /api/v1/proposals are routes: Allow {allow:?}"
    );
    let answer = send(&app, post("/health", None, &json!({})).to_request()).await;
    answer.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "GET");
    assert_eq!(answer.allow.as_deref(), Some("GET"));
    h.stop().await;
}

#[actix_web::test]
async fn ready_is_200_in_process_naming_the_broker_not_rabbitmq() {
    let h = Harness::start("ready-node").await;
    let app = app!(&h.state);
    // The consumers start as the node does; the snapshot is at most a second old.
    let ready = until(
        &app,
        || get("/ready", None).to_request(),
        20,
        |r| r.status == StatusCode::OK,
    )
    .await;
    let names: Vec<&str> = ready.json["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&"broker"), "{}", ready.text);
    assert!(names.contains(&"database"), "{}", ready.text);
    assert!(!names.contains(&"rabbitmq"), "{}", ready.text);
    assert_eq!(ready.json["failing"], json!([]), "{}", ready.text);
    h.stop().await;
}

#[actix_web::test]
async fn no_response_body_contains_the_admin_token_or_the_jwt_secret() {
    let h = Harness::start("secret-node").await;
    let app = app!(&h.state);
    let user = h.user(&wallet(7));
    let admin = h.admin.as_str();
    let near_admin = format!("{admin}x");
    let mut seen = Vec::new();
    for (path, token) in [
        ("/health", None),
        ("/ready", None),
        ("/metrics", None),
        ("/openapi.json", None),
        ("/dashboard", None),
        ("/api/v1/admin/overview", Some(admin)),
        ("/api/v1/nodes", Some(admin)),
        ("/api/v1/config", Some(admin)),
        ("/api/v1/config/versions", Some(admin)),
        ("/api/v1/sagas", Some(admin)),
        ("/api/v1/dlq", Some(admin)),
        ("/api/v1/proposals", Some(user.as_str())),
        ("/api/v1/nodes", Some(user.as_str())),
        ("/api/v1/nodes", Some(near_admin.as_str())),
        ("/api/v1/nodes", Some(&admin[..admin.len() - 1])),
        // The secret itself presented as a token is not echoed back.
        ("/api/v1/nodes", Some(h.jwt_secret.as_str())),
        ("/api/v1/users/0xnot", Some(admin)),
    ] {
        let answer = send(&app, get(path, token).to_request()).await;
        // Every request was answered, and the operator ones with real data (so a secret
        // in that data would be seen).
        assert!(!answer.text.is_empty(), "GET {path}: an empty body");
        if token == Some(admin) && path.ends_with("overview") {
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            assert_eq!(answer.json["node_id"], "secret-node", "{}", answer.text);
        }
        seen.push(format!("GET {path} {} {}", answer.status, answer.text));
    }
    let ticket = send(
        &app,
        post("/api/v1/admin/stream-ticket", Some(admin), &json!({})).to_request(),
    )
    .await;
    assert_eq!(ticket.status, StatusCode::OK, "{}", ticket.text);
    assert!(ticket.json["ticket"].is_string(), "{}", ticket.text);
    seen.push(ticket.text);
    for (name, secret) in [
        ("admin token", admin),
        ("JWT secret", h.jwt_secret.as_str()),
    ] {
        for body in &seen {
            assert!(
                !body.contains(secret),
                "the {name} appears in a response: {body}"
            );
        }
    }
    h.stop().await;
}
