//! The supervisor dashboard: one embedded page (no build step, no external assets) at
//! `/dashboard`, and its live feed at `/dashboard/events` (Server-Sent Events, one
//! overview every two seconds). The page holds no data; everything it shows comes from
//! the admin API with the operator's token, which the page keeps in session storage.

use std::time::Duration;

use actix_web::{get, web, HttpRequest, HttpResponse};
use futures::stream;

use crate::{
    auth::Caller,
    error::{ApiError, Result},
    routes::admin::overview,
    state::ApiState,
};

const PAGE: &str = include_str!("../assets/dashboard.html");
/// How often the live feed sends an overview.
const FEED_EVERY: Duration = Duration::from_secs(2);

/// The dashboard page.
#[get("/dashboard")]
pub(crate) async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
        ))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Cache-Control", "no-store"))
        .body(PAGE)
}

/// The live feed: `event: overview` with the overview JSON every two seconds.
#[get("/dashboard/events")]
pub(crate) async fn events(state: web::Data<ApiState>, req: HttpRequest) -> Result<HttpResponse> {
    match Caller::from_request_with(&req, true)? {
        Caller::Admin => {}
        Caller::User(_) => return Err(ApiError::forbidden("operators only: use the admin token")),
    }
    let state = state.into_inner();
    let feed = stream::unfold((state, true), |(state, first)| async move {
        if !first {
            tokio::time::sleep(FEED_EVERY).await;
        }
        let body = serde_json::to_string(&overview(&state).await).unwrap_or_default();
        let frame = web::Bytes::from(format!("event: overview\ndata: {body}\n\n"));
        Some((Ok::<_, actix_web::Error>(frame), (state, false)))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(feed))
}
