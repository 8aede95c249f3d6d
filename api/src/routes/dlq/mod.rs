//! Dead letters for operators: list (filtered, paged by cursor), inspect, and replay or
//! discard one by id or many by filter (with a dry run that only counts). They are
//! served from the dead-letter table the recorder fills from `merit.dlq`.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use merit_storage::{DeadLetterFilter, DeadLetterState};
use merit_supervisors::dead_letters::{
    settle_dead_letter, settle_dead_letters, DeadLetterAction, Settled,
};

use crate::{
    auth::Admin,
    error::{ApiError, ErrorBody, Result},
    state::ApiState,
};

mod wire;

use wire::{
    bounded, filter_of, BulkOutcome, BulkRequest, DeadLetterActionDto, DeadLetterDto,
    DeadLetterList, DeadLetterQuery, LISTED_BODY_BYTES, MAX_BULK,
};

/// A settle's failure: the broker's is a 503 naming it, the store's as any store error (a
/// corrupt row a 500, an outage a 503).
fn unavailable(e: merit_supervisors::SupervisorError) -> ApiError {
    match e {
        merit_supervisors::SupervisorError::Mailbox(e) => ApiError::dependency("the broker", &e),
        merit_supervisors::SupervisorError::Storage(e) => ApiError::from(e),
        other => ApiError::database(&other),
    }
}

/// Dead letters in arrival order, filtered; page with `after` = the previous page's
/// `next_after` (stable while more arrive).
#[utoipa::path(get, path = "/api/v1/dlq", tag = "dlq",
    params(DeadLetterQuery),
    security(("admin" = [])),
    responses(
        (status = 200, description = "A page of dead letters", body = DeadLetterList),
        (status = 400, description = "Bad filter or page", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/dlq")]
pub(crate) async fn list_dead_letters(
    state: web::Data<ApiState>,
    _admin: Admin,
    query: web::Query<DeadLetterQuery>,
) -> Result<HttpResponse> {
    let (filter, after, page_size) = query.into_inner().parse()?;
    let rows = state.store.dead_letters(&filter, after, page_size).await?;
    let total = state.store.count_dead_letters(&filter).await?;
    let next_after = match rows.last() {
        Some(last) if rows.len() as u64 == page_size => Some(last.seq),
        _ => None,
    };
    let items = rows
        .into_iter()
        .map(|d| DeadLetterDto::new(d, LISTED_BODY_BYTES))
        .collect::<Result<_>>()?;
    Ok(HttpResponse::Ok().json(DeadLetterList {
        items,
        page_size,
        total,
        next_after,
    }))
}

/// How many dead letters wait to be replayed or discarded.
pub(crate) async fn dlq_total(state: &ApiState) -> Option<u64> {
    let waiting = DeadLetterFilter {
        state: Some(DeadLetterState::Waiting),
        ..DeadLetterFilter::default()
    };
    state.store.count_dead_letters(&waiting).await.ok()
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
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/dlq/{id}")]
pub(crate) async fn get_dead_letter(
    req: HttpRequest,
    state: web::Data<ApiState>,
    _admin: Admin,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    if is_bulk_path(&id) {
        return Ok(crate::no_route(req).await);
    }
    let found = state
        .store
        .dead_letter(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    Ok(HttpResponse::Ok().json(DeadLetterDto::new(found, usize::MAX)?))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "dead letter {}: no such dead letter",
        merit_messages::quote_untrusted(id)
    ))
}

/// Replays or discards dead letter `id`: 404 when there is none, 409 when it was already
/// settled, the action otherwise.
async fn settle(state: &ApiState, id: String, action: DeadLetterAction) -> Result<HttpResponse> {
    let settled = settle_dead_letter(&state.store, state.transport.as_ref(), &id, action)
        .await
        .map_err(unavailable)?;
    let name = match action {
        DeadLetterAction::Replay => "replayed",
        DeadLetterAction::Discard => "discarded",
    };
    match settled {
        Settled::Done => Ok(HttpResponse::Ok().json(DeadLetterActionDto {
            id,
            action: name.to_string(),
        })),
        Settled::NotFound => Err(not_found(&id)),
        Settled::Already(was) => Err(ApiError::conflict(format!(
            "dead letter {}: already {}",
            merit_messages::quote_untrusted(&id),
            was.as_str()
        ))),
    }
}

/// Republishes a dead letter with its original routing key, headers and ids, and removes
/// it (the inboxes make a replay of an applied event harmless).
#[utoipa::path(post, path = "/api/v1/dlq/{id}/replay", tag = "dlq",
    params(("id" = String, Path, format = Uuid, description = "Dead letter id (a UUID)")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Replayed", body = DeadLetterActionDto),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such dead letter", body = ErrorBody),
        (status = 409, description = "Already replayed or discarded", body = ErrorBody),
        (status = 503, description = "The broker or database is unavailable", body = ErrorBody),
    ))]
#[post("/dlq/{id}/replay")]
pub(crate) async fn replay_dead_letter(
    state: web::Data<ApiState>,
    _admin: Admin,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    settle(&state, path.into_inner(), DeadLetterAction::Replay).await
}

/// Marks a dead letter discarded (kept for the record, never replayed).
#[utoipa::path(delete, path = "/api/v1/dlq/{id}", tag = "dlq",
    params(("id" = String, Path, format = Uuid, description = "Dead letter id (a UUID)")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Discarded", body = DeadLetterActionDto),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such dead letter", body = ErrorBody),
        (status = 409, description = "Already replayed or discarded", body = ErrorBody),
        (status = 503, description = "The broker or database is unavailable", body = ErrorBody),
    ))]
#[delete("/dlq/{id}")]
pub(crate) async fn discard_dead_letter(
    req: HttpRequest,
    state: web::Data<ApiState>,
    _admin: Admin,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let id = path.into_inner();
    if is_bulk_path(&id) {
        return Ok(crate::no_route(req).await);
    }
    settle(&state, id, DeadLetterAction::Discard).await
}

/// `/dlq/replay` and `/dlq/discard` are the bulk actions (POST only). Read as `/dlq/{id}`
/// they would be a 404 for a dead letter of that name; they are a 405 with `Allow`.
fn is_bulk_path(id: &str) -> bool {
    id == "replay" || id == "discard"
}

/// Settles the waiting dead letters `req` covers with `action`, or only counts them.
async fn bulk(
    state: &ApiState,
    req: BulkRequest,
    action: DeadLetterAction,
) -> Result<HttpResponse> {
    let limit = req.limit.unwrap_or(MAX_BULK);
    if !(1..=MAX_BULK).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit: {limit} is out of range (1-{MAX_BULK})"
        )));
    }
    let filter = DeadLetterFilter {
        state: Some(DeadLetterState::Waiting),
        correlation_id: bounded("correlation_id", req.correlation_id)?,
        ..filter_of(req.class, req.routing_key, req.since, req.until)?
    };
    let matched = state.store.count_dead_letters(&filter).await?;
    let settled = if req.dry_run {
        0
    } else {
        settle_dead_letters(
            &state.store,
            state.transport.as_ref(),
            &filter,
            limit,
            action,
        )
        .await
        .map_err(unavailable)?
    };
    let remaining = if req.dry_run {
        matched
    } else {
        state.store.count_dead_letters(&filter).await?
    };
    let name = match action {
        DeadLetterAction::Replay => "replay",
        DeadLetterAction::Discard => "discard",
    };
    Ok(HttpResponse::Ok().json(BulkOutcome {
        action: name.to_string(),
        dry_run: req.dry_run,
        matched,
        settled,
        remaining,
    }))
}

/// Counts the waiting dead letters matching a filter (every one without a filter), or with
/// `"dry_run": false` replays them (at most `limit` per request, oldest first).
#[utoipa::path(post, path = "/api/v1/dlq/replay", tag = "dlq",
    request_body = BulkRequest,
    security(("admin" = [])),
    responses(
        (status = 200, description = "Replayed (or counted)", body = BulkOutcome),
        (status = 400, description = "Bad filter or limit", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 503, description = "The broker or database is unavailable", body = ErrorBody),
    ))]
#[post("/dlq/replay")]
pub(crate) async fn replay_dead_letters(
    state: web::Data<ApiState>,
    _admin: Admin,
    req: web::Json<BulkRequest>,
) -> Result<HttpResponse> {
    bulk(&state, req.into_inner(), DeadLetterAction::Replay).await
}

/// Counts the waiting dead letters matching a filter (every one without a filter), or with
/// `"dry_run": false` discards them (at most `limit` per request, oldest first).
#[utoipa::path(post, path = "/api/v1/dlq/discard", tag = "dlq",
    request_body = BulkRequest,
    security(("admin" = [])),
    responses(
        (status = 200, description = "Discarded (or counted)", body = BulkOutcome),
        (status = 400, description = "Bad filter or limit", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[post("/dlq/discard")]
pub(crate) async fn discard_dead_letters(
    state: web::Data<ApiState>,
    _admin: Admin,
    req: web::Json<BulkRequest>,
) -> Result<HttpResponse> {
    bulk(&state, req.into_inner(), DeadLetterAction::Discard).await
}
