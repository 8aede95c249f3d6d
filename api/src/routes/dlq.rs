//! The dead-letter queue for operators: list, inspect, replay, discard.

use actix_web::{delete, get, post, web, HttpResponse};
use merit_mailbox::DeadLetter;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    auth::Admin,
    error::{ApiError, ErrorBody, Result},
    pagination::{page_of, PageQuery},
    state::ApiState,
};

/// Dead letters read to find one by id or count them.
const SCAN_LIMIT: usize = 10_000;

/// A message merit gave up on.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterDto {
    /// Id, for replay and discard.
    pub id: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// `malformed`, `invalid_field`, `missing_field`, `unknown_type`, `unknown_version`,
    /// `oversized`, `key_mismatch`, `missing_key`, `type_mismatch`, `forbidden_type`,
    /// `handler_error`, `unrouted`.
    pub reason_class: String,
    /// What was wrong.
    pub reason: String,
    /// Handling attempts.
    pub attempts: u32,
    /// When it was dead-lettered.
    pub dead_lettered_at: String,
    /// The door it came in through (`producer`: `merit.events`; `merit`: merit's own
    /// exchange); a replay goes back through it.
    pub origin: String,
    /// The original body (lossy UTF-8): in a listing its first 2 KiB, in full from
    /// `GET /api/v1/dlq/{id}` (as stored: a body over 64 KiB is kept cut at 64 KiB).
    pub body: String,
    /// The original body's size in bytes.
    pub body_bytes: usize,
    /// Whether `body` is shorter than the original.
    pub body_truncated: bool,
}

/// Most body bytes a listing shows per dead letter.
const LISTED_BODY_BYTES: usize = 2_048;

impl DeadLetterDto {
    /// The dead letter with at most `max_body` bytes of its body.
    fn new(d: DeadLetter, max_body: usize) -> Self {
        let body_bytes = d.truncated_from.unwrap_or(d.body.len());
        let shown = &d.body[..d.body.len().min(max_body)];
        Self {
            id: d.id,
            routing_key: d.routing_key,
            reason_class: d.reason_class,
            reason: d.reason,
            attempts: d.attempts,
            dead_lettered_at: d.dead_lettered_at,
            origin: d.origin.as_str().to_string(),
            body: String::from_utf8_lossy(shown).into_owned(),
            body_bytes,
            body_truncated: shown.len() < body_bytes,
        }
    }
}

page_of!(DeadLetterPage, DeadLetterDto, "dead letters");

/// What an action did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterAction {
    /// The dead letter.
    pub id: String,
    /// `replayed` or `discarded`.
    pub action: String,
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("the broker did not answer: {e}"))
}

/// Dead letters, oldest first.
#[utoipa::path(get, path = "/api/v1/dlq", tag = "dlq",
    params(PageQuery),
    security(("admin" = [])),
    responses(
        (status = 200, description = "A page of dead letters", body = DeadLetterPage),
        (status = 400, description = "Bad page", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 503, description = "The broker is unavailable", body = ErrorBody),
    ))]
#[get("/dlq")]
pub(crate) async fn list_dead_letters(
    state: web::Data<ApiState>,
    _admin: Admin,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let window = page.window()?;
    let wanted = usize::try_from(window.offset() + window.page_size).unwrap_or(SCAN_LIMIT);
    let all = state
        .transport
        .dead_letters(wanted.min(SCAN_LIMIT))
        .await
        .map_err(unavailable)?;
    let total = dlq_total(&state).await.unwrap_or(all.len() as u64);
    let items = all
        .into_iter()
        .skip(usize::try_from(window.offset()).unwrap_or(usize::MAX))
        .map(|d| DeadLetterDto::new(d, LISTED_BODY_BYTES))
        .collect();
    Ok(HttpResponse::Ok().json(DeadLetterPage::new(items, window, total)))
}

/// How many dead letters wait (the DLQ's depth).
pub(crate) async fn dlq_total(state: &ApiState) -> Option<u64> {
    dlq_depth(&state.transport.queue_depths().await.ok()?)
}

/// The DLQ's depth among queue depths already read.
pub(crate) fn dlq_depth(depths: &[(String, u64)]) -> Option<u64> {
    depths
        .iter()
        .find(|(name, _)| name.ends_with("merit.dlq"))
        .map(|(_, n)| *n)
}

/// One dead letter with its body.
#[utoipa::path(get, path = "/api/v1/dlq/{id}", tag = "dlq",
    params(("id" = String, Path, format = Uuid, description = "Dead letter id (a UUID)")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The dead letter", body = DeadLetterDto),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such dead letter", body = ErrorBody),
        (status = 503, description = "The broker is unavailable", body = ErrorBody),
    ))]
#[get("/dlq/{id}")]
pub(crate) async fn get_dead_letter(
    state: web::Data<ApiState>,
    _admin: Admin,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    let found = state
        .transport
        .dead_letters(SCAN_LIMIT)
        .await
        .map_err(unavailable)?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Ok().json(DeadLetterDto::new(found, usize::MAX)))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "dead letter {}: no such dead letter",
        merit_messages::quote_untrusted(id)
    ))
}

/// What an operator does with a dead letter.
#[derive(Debug, Clone, Copy)]
enum Settle {
    Replay,
    Discard,
}

/// Replays or discards dead letter `id`: 404 when there is none, the action otherwise.
async fn settle(state: &ApiState, id: String, how: Settle) -> Result<HttpResponse> {
    let done = match how {
        Settle::Replay => state.transport.replay_dead_letter(&id).await,
        Settle::Discard => state.transport.discard_dead_letter(&id).await,
    }
    .map_err(unavailable)?;
    if !done {
        return Err(not_found(&id));
    }
    let action = match how {
        Settle::Replay => "replayed",
        Settle::Discard => "discarded",
    };
    metrics::counter!("merit_dead_letters_settled_total", "action" => action).increment(1);
    tracing::info!(dead_letter = %id, action, "dead letter settled by an operator");
    Ok(HttpResponse::Ok().json(DeadLetterAction {
        id,
        action: action.to_string(),
    }))
}

/// Republishes a dead letter with its original routing key, headers and ids, and removes
/// it (the inboxes make a replay of an applied event harmless).
#[utoipa::path(post, path = "/api/v1/dlq/{id}/replay", tag = "dlq",
    params(("id" = String, Path, format = Uuid, description = "Dead letter id (a UUID)")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Replayed", body = DeadLetterAction),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such dead letter", body = ErrorBody),
        (status = 503, description = "The broker is unavailable", body = ErrorBody),
    ))]
#[post("/dlq/{id}/replay")]
pub(crate) async fn replay_dead_letter(
    state: web::Data<ApiState>,
    _admin: Admin,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    settle(&state, path.into_inner(), Settle::Replay).await
}

/// Removes a dead letter for good.
#[utoipa::path(delete, path = "/api/v1/dlq/{id}", tag = "dlq",
    params(("id" = String, Path, format = Uuid, description = "Dead letter id (a UUID)")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Discarded", body = DeadLetterAction),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such dead letter", body = ErrorBody),
        (status = 503, description = "The broker is unavailable", body = ErrorBody),
    ))]
#[delete("/dlq/{id}")]
pub(crate) async fn discard_dead_letter(
    state: web::Data<ApiState>,
    _admin: Admin,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    settle(&state, path.into_inner(), Settle::Discard).await
}
