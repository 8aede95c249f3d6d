//! Sagas for operators: filter by state and kind, one saga's timeline, retry.

use actix_web::{get, post, web, HttpResponse};
use chrono::{DateTime, Utc};
use merit_sagas::{
    SagaError, SagaFilter, SagaId, SagaState, SagaSummary, SagaView, StepState, StepView,
};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::Admin,
    error::{ApiError, ErrorBody, Result},
    pagination::PageQuery,
    spelled,
    state::ApiState,
};

/// One saga, without its steps (as `merit_sagas::SagaSummary` serialises).
#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct SagaDto {
    /// Id (UUID).
    #[schema(format = Uuid)]
    pub id: String,
    /// Kind, e.g. `achievement_unlock`.
    pub kind: String,
    /// Where it stands.
    #[serde(serialize_with = "spelled::serialize")]
    #[schema(value_type = spelled::SagaStateName)]
    pub state: SagaState,
    /// The step being run or compensated (-1: compensation is through).
    pub current_step: i32,
    /// The request that started it.
    pub correlation_id: String,
    /// The last error (a step's failure, a compensation's, or why it could not run).
    pub last_error: Option<String>,
    /// Started.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Not driven before this (backoff, re-poll).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The node driving it, if any.
    pub lease_owner: Option<String>,
    /// Until when that node holds it.
    pub lease_until: Option<DateTime<Utc>>,
}

impl From<SagaSummary> for SagaDto {
    fn from(s: SagaSummary) -> Self {
        // Every field named: one added to the summary does not compile until it is here.
        let SagaSummary {
            id,
            kind,
            state,
            current_step,
            correlation_id,
            last_error,
            created_at,
            updated_at,
            next_attempt_at,
            lease_owner,
            lease_until,
        } = s;
        Self {
            id: id.to_string(),
            kind,
            state,
            current_step,
            correlation_id,
            last_error,
            created_at,
            updated_at,
            next_attempt_at,
            lease_owner,
            lease_until,
        }
    }
}

/// One step of a saga's timeline (as `merit_sagas::StepView` serialises).
#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct SagaStepDto {
    /// Index (0-based).
    pub index: usize,
    /// Name, e.g. `mint`.
    pub name: String,
    /// Where it stands.
    #[serde(serialize_with = "spelled::serialize")]
    #[schema(value_type = spelled::StepStateName)]
    pub state: StepState,
    /// Attempts of the action.
    pub attempts: u32,
    /// Attempts of the compensation.
    pub compensation_attempts: u32,
    /// Last error of either.
    pub last_error: Option<String>,
    /// The action's output (final if done, the last pending report otherwise): any JSON
    /// the step wrote.
    pub output: Option<Value>,
    /// The compensation's last pending report: any JSON the compensation wrote.
    pub compensation_output: Option<Value>,
    /// First attempt.
    pub started_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Next retry or re-poll.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl From<StepView> for SagaStepDto {
    fn from(s: StepView) -> Self {
        // Every field named: one added to the view does not compile until it is here.
        let StepView {
            index,
            name,
            state,
            attempts,
            compensation_attempts,
            last_error,
            output,
            compensation_output,
            started_at,
            updated_at,
            next_attempt_at,
        } = s;
        Self {
            index,
            name,
            state,
            attempts,
            compensation_attempts,
            last_error,
            output,
            compensation_output,
            started_at,
            updated_at,
            next_attempt_at,
        }
    }
}

/// One saga with its data and its steps in order: the timeline (as `merit_sagas::SagaView`
/// serialises).
#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct SagaDetailDto {
    /// The saga.
    #[serde(flatten)]
    pub saga: SagaDto,
    /// Its data (per kind; for `achievement_unlock` the achievement and what was minted).
    #[schema(value_type = Object)]
    pub data: Value,
    /// Its steps, in order.
    pub steps: Vec<SagaStepDto>,
}

impl From<SagaView> for SagaDetailDto {
    fn from(v: SagaView) -> Self {
        let SagaView { saga, data, steps } = v;
        Self {
            saga: saga.into(),
            data,
            steps: steps.into_iter().map(SagaStepDto::from).collect(),
        }
    }
}

/// A page of sagas, most recently changed first.
#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct SagaListPage {
    /// Sagas.
    pub items: Vec<SagaDto>,
    /// This page, from 1.
    pub page: u64,
    /// Page size used.
    pub page_size: u64,
    /// How many match in all.
    pub total: u64,
}

/// Which sagas.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SagaQuery {
    /// Only in this state; another value is a 400.
    #[param(value_type = Option<spelled::SagaStateName>, inline)]
    pub state: Option<String>,
    /// Saga kind, e.g. `achievement_unlock`.
    pub kind: Option<String>,
    /// Only sagas of this correlation id (the operation they belong to).
    pub correlation_id: Option<String>,
}

fn executor(state: &ApiState) -> Result<&merit_sagas::SagaExecutor> {
    state
        .sagas
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this node runs no saga executor"))
}

fn saga_id(raw: &str) -> Result<SagaId> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "id: {} is not a saga id (a UUID)",
            merit_messages::quote_untrusted(raw)
        ))
    })
}

fn saga_error(e: SagaError) -> ApiError {
    match e {
        SagaError::NotFound { id } => ApiError::not_found(format!("saga {id}: no such saga")),
        e @ SagaError::InvalidState { .. } => ApiError::conflict(e.to_string()),
        e @ SagaError::UnknownKind { .. } => ApiError::conflict(e.to_string()),
        // A stored saga merit cannot read back: a 500 (retrying will not mend it).
        e @ (SagaError::UnknownState { .. } | SagaError::Data { .. }) => {
            ApiError::internal("reading a stored saga", &e)
        }
        SagaError::Storage(e) => ApiError::from(e),
        e => ApiError::dependency("the saga log", &e),
    }
}

/// Sagas, most recently changed first.
#[utoipa::path(get, path = "/api/v1/sagas", tag = "sagas",
    params(SagaQuery, PageQuery),
    security(("admin" = [])),
    responses(
        (status = 200, description = "A page of sagas", body = SagaListPage),
        (status = 400, description = "Bad state or page", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 503, description = "This node runs no saga executor, or the saga log is unavailable", body = ErrorBody),
    ))]
#[get("/sagas")]
pub(crate) async fn list_sagas(
    state: web::Data<ApiState>,
    _admin: Admin,
    query: web::Query<SagaQuery>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let window = page.window()?;
    let filter = SagaFilter {
        state: spelled::filter::<SagaState>("state", query.state.as_deref())?,
        kind: query.kind.clone(),
        correlation_id: query.correlation_id.clone(),
    };
    let listed = executor(&state)?
        .list(&filter, window.page - 1, window.page_size)
        .await
        .map_err(saga_error)?;
    Ok(HttpResponse::Ok().json(SagaListPage {
        items: listed.items.into_iter().map(SagaDto::from).collect(),
        page: window.page,
        page_size: window.page_size,
        total: listed.total,
    }))
}

/// One saga with its steps: the timeline.
#[utoipa::path(get, path = "/api/v1/sagas/{id}", tag = "sagas",
    params(("id" = String, Path, format = Uuid, description = "Saga id (UUID)")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The saga and its steps", body = SagaDetailDto),
        (status = 400, description = "Not a saga id", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such saga", body = ErrorBody),
        (status = 503, description = "This node runs no saga executor, or the saga log is unavailable", body = ErrorBody),
    ))]
#[get("/sagas/{id}")]
pub(crate) async fn get_saga(
    state: web::Data<ApiState>,
    _admin: Admin,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let id = saga_id(&path)?;
    let saga = executor(&state)?
        .get(id)
        .await
        .map_err(saga_error)?
        .ok_or_else(|| ApiError::not_found(format!("saga {id}: no such saga")))?;
    Ok(HttpResponse::Ok().json(SagaDetailDto::from(saga)))
}

/// Retries a `failed` or `stuck` saga (e.g. an achievement whose mint failed for good).
#[utoipa::path(post, path = "/api/v1/sagas/{id}/retry", tag = "sagas",
    params(("id" = String, Path, format = Uuid, description = "Saga id (UUID)")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "Resumed; the saga as it is now", body = SagaDetailDto),
        (status = 400, description = "Not a saga id", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such saga", body = ErrorBody),
        (status = 409, description = "Not failed or stuck", body = ErrorBody),
        (status = 503, description = "This node runs no saga executor, or the saga log is unavailable", body = ErrorBody),
    ))]
#[post("/sagas/{id}/retry")]
pub(crate) async fn retry_saga(
    state: web::Data<ApiState>,
    _admin: Admin,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let id = saga_id(&path)?;
    let saga = executor(&state)?.retry(id).await.map_err(saga_error)?;
    tracing::info!(saga_id = %id, "saga retried by an operator");
    Ok(HttpResponse::Ok().json(SagaDetailDto::from(saga)))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// The typed timeline answers what the saga crate's own view serialises, field for
    /// field, so the change of type changed the document, not the wire.
    #[test]
    fn the_timeline_dto_writes_the_view_s_json() {
        let at = Utc
            .with_ymd_and_hms(2026, 12, 5, 12, 0, 0)
            .single()
            .expect("a time");
        let view = SagaView {
            saga: SagaSummary {
                id: SagaId::derived("achievement_unlock", "a-1"),
                kind: "achievement_unlock".into(),
                state: SagaState::Compensating,
                current_step: 1,
                correlation_id: "c-1".into(),
                last_error: Some("mint reverted".into()),
                created_at: at,
                updated_at: at,
                next_attempt_at: Some(at),
                lease_owner: Some("node-a".into()),
                lease_until: None,
            },
            data: serde_json::json!({"achievement": "a-1"}),
            steps: vec![StepView {
                index: 0,
                name: "mint".into(),
                state: StepState::CompensationAwaiting,
                attempts: 2,
                compensation_attempts: 1,
                last_error: None,
                output: Some(serde_json::json!("0xabc")),
                compensation_output: None,
                started_at: Some(at),
                updated_at: at,
                next_attempt_at: None,
            }],
        };
        let expected = serde_json::to_value(&view).expect("the view serialises");
        let dto = serde_json::to_value(SagaDetailDto::from(view)).expect("the dto serialises");
        assert_eq!(dto, expected);
        assert_eq!(dto["steps"][0]["state"], "compensation_awaiting");
    }
}
