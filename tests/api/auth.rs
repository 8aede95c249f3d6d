//! Missing, forged and expired credentials, another user's data, an operator path and
//! out-of-range pages: each refused, naming what is wrong.

use reqwest::StatusCode;

use crate::harness::{assert_gets_refused, Rest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn bad_credentials_and_out_of_range_pages_are_refused_naming_what_is_wrong() {
    let ctx = Rest::start("api-auth.log").await;
    let (api, a, adm) = (&ctx.api, ctx.a.as_str(), ctx.adm());
    let me = ctx.me();
    let alice = ctx.alice.to_string();
    let forged = merit_api::sign(b"another secret entirely, 32 bytes!", &alice, 60);
    let expired = merit_api::sign(ctx.node.jwt.as_bytes(), &alice, -3600);
    assert_gets_refused(
        api,
        &[
            (&me, None, StatusCode::UNAUTHORIZED, "missing credential"),
            (
                &me,
                Some("not-a-token"),
                StatusCode::UNAUTHORIZED,
                "invalid bearer token",
            ),
            (&me, Some(&forged), StatusCode::UNAUTHORIZED, "signature"),
            (&me, Some(&expired), StatusCode::UNAUTHORIZED, "expired"),
            (
                "/api/v1/nodes",
                Some(a),
                StatusCode::FORBIDDEN,
                "operators only",
            ),
            (
                "/api/v1/users/0x123",
                Some(adm),
                StatusCode::BAD_REQUEST,
                "address",
            ),
            (&me, Some(adm), StatusCode::NOT_FOUND, "no event"),
        ],
    )
    .await;
    assert_gets_refused(
        api,
        &[
            (
                "/api/v1/proposals?page=0",
                Some(a),
                StatusCode::BAD_REQUEST,
                "page",
            ),
            (
                "/api/v1/proposals?page_size=501",
                Some(a),
                StatusCode::BAD_REQUEST,
                "page_size",
            ),
            (
                "/api/v1/proposals?page=x",
                Some(a),
                StatusCode::BAD_REQUEST,
                "query",
            ),
        ],
    )
    .await;
    ctx.node.finish().await;
}
