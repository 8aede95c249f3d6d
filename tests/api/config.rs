//! The config endpoints: bad documents refused; a change versioned, diffed and rolled
//! back.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{assert_gets_refused, assert_post_refused, Rest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn config_endpoints_change_diff_and_roll_back_and_refuse_bad_documents() {
    let ctx = Rest::start("api-config.log").await;
    let change = check_bad_config_documents_are_refused(&ctx).await;
    check_a_config_change_is_versioned_diffed_and_rolled_back(&ctx, change).await;
    ctx.node.finish().await;
}

/// Config: current, refused documents; returns a good change (fewer boosts).
async fn check_bad_config_documents_are_refused(ctx: &Rest) -> Value {
    let (api, adm) = (&ctx.api, ctx.adm());
    let (status, current) = api.get("/api/v1/config", Some(adm)).await;
    assert_eq!(
        (status, current["version"].as_u64()),
        (StatusCode::OK, Some(0))
    );
    let mut doc = current["document"].clone();
    doc["limits"]["max_boosting_nfts"] = json!(3);
    let change = json!({"document": doc, "author": "ops", "reason": "fewer boosts"});
    let mut broken = change.clone();
    broken["document"]["rules"][0]["when"] =
        json!({"count": {"activity": "dancing", "at_least": 1}});
    let (config, bad) = (("/api/v1/config", adm), StatusCode::BAD_REQUEST);
    assert_post_refused(api, config, broken, bad, "rules[0]").await;
    // A document, or a whole body, written as a JSON array: serde alone would read `[]` as
    // a document of defaults and store it (schemathesis found this).
    let mut as_array = change.clone();
    as_array["document"] = json!([]);
    assert_post_refused(api, config, as_array, bad, "expected struct").await;
    let positional = json!([0, "ops", "positional"]);
    let rollback = ("/api/v1/config/rollback", adm);
    assert_post_refused(api, rollback, positional, bad, "expected struct").await;
    change
}

/// A change, history, diff, rollback.
async fn check_a_config_change_is_versioned_diffed_and_rolled_back(ctx: &Rest, change: Value) {
    let (api, adm) = (&ctx.api, ctx.adm());
    let (status, v1) = api.post("/api/v1/config", Some(adm), change).await;
    assert_eq!(
        (status, v1["version"].as_u64()),
        (StatusCode::CREATED, Some(1)),
        "{v1}"
    );
    let (status, history) = api.get("/api/v1/config/versions", Some(adm)).await;
    assert_eq!(
        (status, history["total"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let (status, diff) = api.get("/api/v1/config/diff?from=0&to=1", Some(adm)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(diff.to_string().contains("max_boosting_nfts"), "{diff}");
    assert_gets_refused(
        api,
        &[
            (
                "/api/v1/config/diff?from=0",
                Some(adm),
                StatusCode::BAD_REQUEST,
                "to",
            ),
            (
                "/api/v1/config/versions/99",
                Some(adm),
                StatusCode::NOT_FOUND,
                "99",
            ),
        ],
    )
    .await;
    let rollback = "/api/v1/config/rollback";
    let (status, v2) = api
        .post(
            rollback,
            Some(adm),
            json!({"version": 0, "author": "ops", "reason": "undo"}),
        )
        .await;
    assert_eq!(
        (status, v2["rollback_of"].as_u64()),
        (StatusCode::CREATED, Some(0))
    );
    let unknown = json!({"version": 42, "author": "ops", "reason": "?"});
    assert_post_refused(api, (rollback, adm), unknown, StatusCode::NOT_FOUND, "42").await;
}
