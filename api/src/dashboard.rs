//! The supervisor dashboard: one embedded page (no build step, no external assets) at
//! `/dashboard`, and its live feed at `/dashboard/events` (Server-Sent Events: an overview
//! at once and every two seconds, the last 15 minutes' samples right after the first, and
//! each new sample every five; see [`crate::history`]). The page holds no data; everything it shows comes from
//! the admin API with the operator's token, which the page keeps in session storage and
//! sends only as a bearer header. The feed, which a browser's `EventSource` opens without
//! headers, takes a short-lived single-use ticket (`POST /api/v1/admin/stream-ticket`)
//! instead: the admin token never appears in a URL.

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use futures::stream;
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::{
    error::{ApiError, Result},
    routes::admin::overview,
    state::ApiState,
    tickets::Refused,
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

/// The feed's query.
#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    ticket: Option<String>,
}

/// The live feed: `event: overview` with the overview JSON every two seconds. Opened with
/// `?ticket=` from `POST /api/v1/admin/stream-ticket` (valid 30 s, once, on this node).
#[get("/dashboard/events")]
pub(crate) async fn events(
    state: web::Data<ApiState>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse> {
    let ticket = query.into_inner().ticket.ok_or_else(|| {
        ApiError::unauthorized(
            "missing ticket: POST /api/v1/admin/stream-ticket with the admin bearer token, \
             then open /dashboard/events?ticket=<ticket> (the admin token is not accepted in \
             a URL)",
        )
    })?;
    state.guards.tickets.redeem(&ticket).map_err(|why| {
        ApiError::unauthorized(match why {
            Refused::Expired => "ticket expired: ask for a new one (tickets live 30 s)",
            Refused::Unknown => {
                "ticket unknown or already used: tickets are single-use and valid only on the \
                 node that issued them"
            }
        })
    })?;
    let state = state.into_inner();
    let samples = state.guards.history.subscribe();
    // First an overview (at once), then the history, then overviews and samples as they come.
    let history = Some(frame(
        "history",
        &serde_json::to_string(&state.guards.history.all()).unwrap_or_default(),
    ));
    let feed = stream::unfold(
        (state, samples, tokio::time::Instant::now(), history),
        |(state, mut samples, next_overview, mut history)| async move {
            if next_overview > tokio::time::Instant::now() {
                if let Some(history) = history.take() {
                    return Some((Ok(history), (state, samples, next_overview, None)));
                }
            }
            let frame = tokio::select! {
                _ = tokio::time::sleep_until(next_overview) => {
                    let body = serde_json::to_string(&overview(&state).await).unwrap_or_default();
                    let next = tokio::time::Instant::now() + FEED_EVERY;
                    return Some((Ok(frame("overview", &body)), (state, samples, next, history)));
                }
                sample = samples.recv() => match sample {
                    Ok(sample) => frame("sample", &serde_json::to_string(&*sample).unwrap_or_default()),
                    // A slow reader missed samples: resend the whole history.
                    Err(broadcast::error::RecvError::Lagged(_)) => frame(
                        "history",
                        &serde_json::to_string(&state.guards.history.all()).unwrap_or_default(),
                    ),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            Some((
                Ok::<_, actix_web::Error>(frame),
                (state, samples, next_overview, history),
            ))
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(feed))
}

/// One Server-Sent Events frame.
fn frame(event: &str, data: &str) -> web::Bytes {
    web::Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}
