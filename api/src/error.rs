//! Errors as clients see them: a status and `{"error": {"code", "message"}}`, where the
//! message names the field and what was expected. Internal failures are logged with their
//! cause and answered with a generic message (no internals, no secrets leave the node).

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// A `Result` whose error is an API error.
pub(crate) type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The error body of every non-2xx response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A machine-readable code and a human-readable message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `payload_too_large`, `rate_limited`, `unavailable`,
    /// `internal`.
    pub code: String,
    /// What was wrong, naming the field and the expectation.
    pub message: String,
}

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request is malformed or a field is invalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no or an invalid credential.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: a valid credential that may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405: the path exists but does not answer this method (the caller adds `Allow`).
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
        )
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413: the body is too large.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 429: too many requests.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
    }

    /// 503: a dependency is down; retry later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500: logs `cause` (which may carry internals) and answers a generic message.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context} failed; see the node's log"),
        )
    }
}

impl ApiError {
    /// 500 for a stored row the API will not serve: column `column` of the `table` row
    /// `key` holds `value`, which is not one the API knows (written by hand, by another
    /// release, by a bad migration). Logged at error level with the row's key and the value;
    /// answered with neither (the key can name a user, the value is anything).
    pub(crate) fn corrupt_row(table: &str, key: &str, column: &str, value: &str) -> Self {
        tracing::error!(
            table,
            key,
            column,
            value = %merit_messages::quote_untrusted(value),
            "a stored row is corrupt: its {column} is not a value merit knows; not served"
        );
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("a stored row is corrupt ({table}.{column}); see the node's log"),
        )
    }
}

/// A conversion that cannot fail (a row → DTO `From`, seen as `TryFrom`) never is one.
impl From<std::convert::Infallible> for ApiError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
            },
        })
    }
}

impl From<merit_storage::sea_orm::DbErr> for ApiError {
    fn from(e: merit_storage::sea_orm::DbErr) -> Self {
        Self::database(&e)
    }
}

/// A store error: a stored value that cannot be read back is a 500 (retrying will not
/// mend it; the log names it), anything else the database failing, a 503.
impl From<merit_storage::StorageError> for ApiError {
    fn from(e: merit_storage::StorageError) -> Self {
        if e.is_corrupt() {
            Self::internal("reading a stored row", &e)
        } else {
            Self::database(&e)
        }
    }
}

impl ApiError {
    /// 503 for a database failure. The database's own text (which can quote stored
    /// values, names of tables and hosts) is logged, never answered.
    pub(crate) fn database(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "a database call failed");
        Self::unavailable("the database did not answer; see the node's log")
    }

    /// 503 for another dependency (`what`: "the broker", "the node registry", ...) that
    /// failed. Its error text (which can hold hostnames, URLs with keys, SQL) is logged,
    /// never answered.
    pub(crate) fn dependency(what: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "{what} failed");
        Self::unavailable(format!("{what} did not answer; see the node's log"))
    }
}

#[cfg(test)]
mod database_errors {
    use super::*;

    #[test]
    fn a_database_error_answers_without_the_database_s_text() {
        let cause = merit_storage::sea_orm::DbErr::Custom(
            "duplicate key value violates unique constraint \"users_pkey\": Key (address)=(0xsecret)"
                .into(),
        );
        let e = ApiError::from(cause);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!e.message.contains("0xsecret"), "{}", e.message);
        assert!(!e.message.contains("users_pkey"), "{}", e.message);
        assert!(e.message.contains("database"), "{}", e.message);
    }

    #[test]
    fn a_dependency_error_answers_what_failed_without_its_text() {
        let cause = "connection refused: amqp://merit:hunter2@broker.internal:5672/%2f";
        let e = ApiError::dependency("the broker", &cause);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "unavailable");
        assert_eq!(e.message, "the broker did not answer; see the node's log");
    }

    #[test]
    fn a_corrupt_stored_value_is_a_500_without_the_value_and_an_outage_a_503() {
        let cause = "0xsecret".parse::<i64>().expect_err("not a number");
        let e = ApiError::from(merit_storage::StorageError::corrupt("users.weight", cause));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code, "internal");
        assert!(!e.message.contains("0xsecret"), "{}", e.message);
        assert!(!e.message.contains("users.weight"), "{}", e.message);
        let down = merit_storage::StorageError::Db(merit_storage::sea_orm::DbErr::Conn(
            merit_storage::sea_orm::RuntimeErr::Internal("refused".into()),
        ));
        assert_eq!(ApiError::from(down).status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
