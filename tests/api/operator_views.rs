//! The operators' side of the proposal flow: its mint saga, a dead letter listed,
//! inspected, replayed and discarded, nodes, overview and the chain sync, and `/metrics`.

use merit_mailbox::{Outgoing, Transport};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    common,
    harness::{assert_error, assert_gets_refused, assert_post_refused, Rest},
};

/// The achievement's mint saga: completed, its steps, not retried, bad ids refused.
pub(crate) async fn check_the_mint_saga_is_listed_and_not_retried(ctx: &Rest) {
    let (api, adm) = (&ctx.api, ctx.adm());
    let (status, sagas) = api.get("/api/v1/sagas?state=completed", Some(adm)).await;
    assert_eq!(status, StatusCode::OK, "{sagas}");
    assert_eq!(sagas["total"], 1);
    let saga_id = sagas["items"][0]["id"]
        .as_str()
        .expect("saga id")
        .to_string();
    let (status, saga) = api
        .get(&format!("/api/v1/sagas/{saga_id}"), Some(adm))
        .await;
    assert_eq!(status, StatusCode::OK);
    let steps: Vec<&str> = saga["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(steps, ["reserve", "mint", "register", "confirm"]);
    let retry = format!("/api/v1/sagas/{saga_id}/retry");
    let conflict = StatusCode::CONFLICT;
    assert_post_refused(api, (&retry, adm), json!({}), conflict, "failed or stuck").await;
    let unknown = format!("/api/v1/sagas/{}", uuid::Uuid::new_v4());
    assert_gets_refused(
        api,
        &[
            (
                "/api/v1/sagas/not-a-uuid",
                Some(adm),
                StatusCode::BAD_REQUEST,
                "saga id",
            ),
            (&unknown, Some(adm), StatusCode::NOT_FOUND, "no such saga"),
            (
                "/api/v1/sagas?state=sleeping",
                Some(adm),
                StatusCode::BAD_REQUEST,
                "state",
            ),
        ],
    )
    .await;
}

/// Dead letters: a malformed message, listed, inspected, replayed (it fails again and
/// comes back under a new id), discarded.
pub(crate) async fn check_a_dead_letter_is_listed_inspected_and_replayed(ctx: &Rest) {
    let (api, adm) = (&ctx.api, ctx.adm());
    let producer = common::producer(&ctx.node.vhost, 2).await;
    let mut malformed = Outgoing::new("governance.vote.cast", "bad-1", &b"{not json"[..]);
    malformed
        .headers
        .insert("merit-proposal".to_string(), "api-p1".to_string());
    producer.publish(vec![malformed]).await.expect("publish");
    let dlq = api
        .until(30, "/api/v1/dlq", adm, |s, v| {
            s == StatusCode::OK && v["total"] == 1 && v["items"][0]["id"].is_string()
        })
        .await;
    let id = dlq["items"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{dlq}"))
        .to_string();
    assert_eq!(dlq["items"][0]["reason_class"], "malformed");
    let (status, one) = api.get(&format!("/api/v1/dlq/{id}"), Some(adm)).await;
    assert_eq!(
        (status, one["body"].as_str()),
        (StatusCode::OK, Some("{not json"))
    );
    let (status, _) = api
        .post(&format!("/api/v1/dlq/{id}/replay"), Some(adm), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let again = api
        .until(30, "/api/v1/dlq", adm, |_, v| {
            v["total"] == 1 && v["items"][0]["id"].is_string() && v["items"][0]["id"] != id.as_str()
        })
        .await;
    let id2 = again["items"][0]["id"].as_str().expect("id").to_string();
    check_dead_letters_are_discarded_once(ctx, &id, &id2).await;
}

/// `replayed` cannot be discarded, nor an unknown id; `waiting` can; users see none.
async fn check_dead_letters_are_discarded_once(ctx: &Rest, replayed: &str, waiting: &str) {
    let (api, adm) = (&ctx.api, Some(ctx.adm()));
    let delete = |id: String| async move {
        let path = format!("/api/v1/dlq/{id}");
        api.call(Method::DELETE, &path, adm, None).await
    };
    let conflict = StatusCode::CONFLICT;
    assert_error(&delete(replayed.into()).await, conflict, "already replayed");
    let missing = delete("no-such-id".into()).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "no such dead letter");
    assert_eq!(delete(waiting.into()).await.0, StatusCode::OK);
    api.until(30, "/api/v1/dlq", ctx.adm(), |_, v| v["total"] == 0)
        .await;
    let a = Some(ctx.a.as_str());
    assert_gets_refused(
        api,
        &[("/api/v1/dlq", a, StatusCode::FORBIDDEN, "operators only")],
    )
    .await;
}

/// Nodes, overview, the on-demand full sync.
pub(crate) async fn check_nodes_overview_and_chain_sync(ctx: &Rest) {
    let (api, adm) = (&ctx.api, Some(ctx.adm()));
    let (status, nodes) = api.get("/api/v1/nodes", adm).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(nodes["items"][0]["node_id"], "api-node");
    let (status, overview) = api.get("/api/v1/admin/overview", adm).await;
    assert_eq!(
        (status, overview["node_id"].as_str()),
        (StatusCode::OK, Some("api-node"))
    );
    let (status, report) = api.post("/api/v1/chain/sync", adm, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert!(report["checked"].as_u64() >= Some(1), "{report}");
    assert_eq!(report["drifted"], 0);
}

pub(crate) async fn check_metrics_name_every_series_and_count_per_route(ctx: &Rest) {
    let api = &ctx.api;
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "merit_resident_actors",
        "merit_mailbox_depth",
        "merit_dead_letters_stored{state=\"waiting\"}",
        "merit_sagas",
        "merit_outbox_pending",
        "merit_cache_hit_ratio",
        "merit_chain_checkpoint_lag_blocks",
        "merit_actor_turns_total",
        "merit_http_request_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "/metrics has {name}");
    }
    // Requests are counted per route template, never per raw path.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("merit_http_requests_total")
                && l.contains("route=\"/api/v1/proposals/{id}\"")
                && l.contains("status=\"200\"")),
        "per-route request counts:\n{metrics}"
    );
}
