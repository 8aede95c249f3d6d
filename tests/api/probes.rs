//! The probes, the OpenAPI document, request ids (echoed or replaced, and logged), and an
//! unknown route.

use reqwest::StatusCode;

use crate::harness::{assert_error, Rest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn probes_the_openapi_document_request_ids_and_unknown_routes_answer() {
    let ctx = Rest::start("api-probes.log").await;
    check_probes_and_openapi(&ctx).await;
    check_request_ids_are_echoed_or_replaced_and_logged(&ctx).await;
    assert_error(
        &ctx.api.get("/api/v1/nothing-here", Some(ctx.adm())).await,
        StatusCode::NOT_FOUND,
        "no route",
    );
    ctx.node.finish().await;
}

async fn check_probes_and_openapi(ctx: &Rest) {
    let api = &ctx.api;
    let (status, health) = api.get("/health", None).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("alive"))
    );
    api.until(30, "/ready", ctx.adm(), |s, _| s == StatusCode::OK)
        .await;
    let (status, doc) = api.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/v1/users/{address}",
        "/api/v1/proposals/{id}/votes",
        "/api/v1/dlq/{id}/replay",
        "/ws",
    ] {
        assert!(doc["paths"][path].is_object(), "OpenAPI documents {path}");
    }
}

/// A request id: the caller's (a plain token) is echoed, anything else is replaced.
async fn check_request_ids_are_echoed_or_replaced_and_logged(ctx: &Rest) {
    let api = &ctx.api;
    for (sent, echoed) in [("trace-me-42", true), ("no spaces allowed", false)] {
        let answer = api
            .http
            .get(format!("{}/health", api.base))
            .header("X-Request-Id", sent)
            .send()
            .await
            .expect("health");
        let id = answer
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("every answer has a request id")
            .to_string();
        assert_eq!(id == sent, echoed, "{sent:?} -> {id:?}");
        let logged = std::fs::read_to_string(&ctx.node.log).expect("node log");
        assert!(logged.contains(&id), "the access log names request {id}");
    }
}
