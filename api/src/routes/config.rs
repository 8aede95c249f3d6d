//! The dynamic config (tiers, limits, rules) for operators: current, versions, one version,
//! diff, change (with dry run), rollback. Changes are validated by the config center; a
//! refused document is a 400 naming its JSON path, and nothing is written.

use actix_web::{get, post, web, HttpResponse};
use merit_actors::center::{CenterError, MAX_AUTHOR_CHARS, MAX_REASON_CHARS};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::Admin,
    error::{ApiError, ErrorBody, Result},
    pagination::{page_of, PageQuery},
    state::ApiState,
};

/// A version and its document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConfigDto {
    /// Version (0: the built-in document).
    pub version: u64,
    /// `{tiers, limits, rules}`.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
}

/// A stored version without its document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VersionDto {
    /// Version number.
    pub version: u64,
    /// Who made the change.
    pub author: String,
    /// Why.
    pub reason: String,
    /// When a rollback, the version it restored.
    pub rollback_of: Option<u64>,
    /// Stored at.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<merit_actors::center::VersionInfo> for VersionDto {
    fn from(v: merit_actors::center::VersionInfo) -> Self {
        Self {
            version: v.version,
            author: v.author,
            reason: v.reason,
            rollback_of: v.rollback_of,
            created_at: v.created_at,
        }
    }
}

page_of!(VersionPage, VersionDto, "config versions");

/// A proposed change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeConfig {
    /// The whole new document `{tiers, limits, rules}`.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
    /// Who makes it (1-100 characters, not blank).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub author: String,
    /// Why (1-500 characters, not blank).
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub reason: String,
    /// Only report what the rules would unlock for stored users; write nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A rollback.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rollback {
    /// The version to restore (0: the built-in document).
    #[serde(deserialize_with = "crate::routes::whole_u64")]
    pub version: u64,
    /// Who makes it (1-100 characters, not blank).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub author: String,
    /// Why (1-500 characters, not blank).
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "[^\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    )]
    pub reason: String,
}

/// Two versions to compare.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DiffQuery {
    /// From this version.
    pub from: u64,
    /// To this version.
    pub to: u64,
}

pub(crate) fn center_error(e: CenterError) -> ApiError {
    match e {
        CenterError::Invalid(e) => ApiError::bad_request(e.to_string()),
        CenterError::NotFound(v) => {
            ApiError::not_found(format!("config version {v} does not exist"))
        }
        e @ CenterError::Conflict => ApiError::conflict(e.to_string()),
        CenterError::BadInput(m) => ApiError::bad_request(m),
        CenterError::Storage(e) => ApiError::from(e),
    }
}

/// `field` holds 1-`max` characters and is not blank (the center's rule for author and
/// reason).
fn check_text(field: &str, value: &str, max: usize) -> Result<()> {
    let n = value.chars().count();
    if value.trim().is_empty() || n > max {
        return Err(ApiError::bad_request(format!(
            "{field}: {n} characters: expected 1..={max}, not blank"
        )));
    }
    Ok(())
}

/// The active config.
#[utoipa::path(get, path = "/api/v1/config", tag = "config",
    security(("admin" = [])),
    responses(
        (status = 200, description = "The latest version and its document", body = ConfigDto),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/config")]
pub(crate) async fn current_config(
    state: web::Data<ApiState>,
    _admin: Admin,
) -> Result<HttpResponse> {
    let config = state.center.current().await.map_err(center_error)?;
    Ok(HttpResponse::Ok().json(ConfigDto {
        version: config.version,
        document: config.to_document(),
    }))
}

/// Stored versions, newest first.
#[utoipa::path(get, path = "/api/v1/config/versions", tag = "config",
    params(PageQuery),
    security(("admin" = [])),
    responses(
        (status = 200, description = "A page of versions", body = VersionPage),
        (status = 400, description = "Bad page", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/config/versions")]
pub(crate) async fn config_versions(
    state: web::Data<ApiState>,
    _admin: Admin,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let window = page.window()?;
    let history = state
        .center
        .history(window.offset(), window.page_size)
        .await
        .map_err(center_error)?;
    let items = history.versions.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(VersionPage::new(items, window, history.total)))
}

/// One version with its document (0: the built-in one).
#[utoipa::path(get, path = "/api/v1/config/versions/{version}", tag = "config",
    params(("version" = u64, Path, description = "Version number")),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The version", body = ConfigDto),
        (status = 400, description = "Not a version number", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such version", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/config/versions/{version}")]
pub(crate) async fn config_version(
    state: web::Data<ApiState>,
    _admin: Admin,
    path: web::Path<u64>,
) -> Result<HttpResponse> {
    let version = path.into_inner();
    if version == 0 {
        let builtin = merit_config::DynamicConfig::builtin();
        return Ok(HttpResponse::Ok().json(ConfigDto {
            version: 0,
            document: builtin.to_document(),
        }));
    }
    let (_, config) = state
        .center
        .get(version)
        .await
        .map_err(center_error)?
        .ok_or_else(|| ApiError::not_found(format!("config version {version} does not exist")))?;
    Ok(HttpResponse::Ok().json(ConfigDto {
        version,
        document: config.to_document(),
    }))
}

/// What changed between two versions (tiers, limits, rules by id).
#[utoipa::path(get, path = "/api/v1/config/diff", tag = "config",
    params(DiffQuery),
    security(("admin" = [])),
    responses(
        (status = 200, description = "The differences", body = Object),
        (status = 400, description = "Missing or bad versions", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such version", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/config/diff")]
pub(crate) async fn config_diff(
    state: web::Data<ApiState>,
    _admin: Admin,
    query: web::Query<DiffQuery>,
) -> Result<HttpResponse> {
    let diff = state
        .center
        .diff(query.from, query.to)
        .await
        .map_err(center_error)?;
    Ok(HttpResponse::Ok().json(diff))
}

/// Validates and stores a new version (every node applies it within a second), or with
/// `dry_run` reports what its rules would unlock and writes nothing.
#[utoipa::path(post, path = "/api/v1/config", tag = "config",
    request_body = ChangeConfig,
    security(("admin" = [])),
    responses(
        (status = 200, description = "Dry run: per rule, the users it would newly unlock", body = Object),
        (status = 201, description = "Stored as the next version", body = VersionDto),
        (status = 400, description = "A refused document (its JSON path and why) or bad author/reason", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 409, description = "Lost the race for a version number repeatedly", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[post("/config")]
pub(crate) async fn change_config(
    state: web::Data<ApiState>,
    _admin: Admin,
    body: crate::body::Body<ChangeConfig>,
) -> Result<HttpResponse> {
    let document = serde_json::to_vec(&body.document).unwrap_or_default();
    if body.dry_run {
        // The center checks these when it stores; a dry run stores nothing, and the
        // request must mean the same either way.
        check_text("author", &body.author, MAX_AUTHOR_CHARS)?;
        check_text("reason", &body.reason, MAX_REASON_CHARS)?;
        let report = state
            .center
            .dry_run(&document, chrono::Utc::now())
            .await
            .map_err(center_error)?;
        return Ok(HttpResponse::Ok().json(report));
    }
    let info = state
        .center
        .propose(&document, &body.author, &body.reason)
        .await
        .map_err(center_error)?;
    tracing::info!(version = info.version, author = %info.author, "config changed through the API");
    Ok(HttpResponse::Created().json(VersionDto::from(info)))
}

/// Stores a new version equal to an earlier one.
#[utoipa::path(post, path = "/api/v1/config/rollback", tag = "config",
    request_body = Rollback,
    security(("admin" = [])),
    responses(
        (status = 201, description = "Stored as the next version", body = VersionDto),
        (status = 400, description = "Bad author or reason", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such version", body = ErrorBody),
        (status = 409, description = "Lost the race for a version number repeatedly", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[post("/config/rollback")]
pub(crate) async fn rollback_config(
    state: web::Data<ApiState>,
    _admin: Admin,
    body: crate::body::Body<Rollback>,
) -> Result<HttpResponse> {
    let info = state
        .center
        .rollback(body.version, &body.author, &body.reason)
        .await
        .map_err(center_error)?;
    tracing::info!(
        version = info.version,
        rollback_of = body.version,
        "config rolled back through the API"
    );
    Ok(HttpResponse::Created().json(VersionDto::from(info)))
}
