//! What the dead-letter endpoints read and answer: the DTOs, the list query and bulk
//! request with their limits, and the filter they become.

use chrono::{DateTime, Utc};
use merit_storage::{DeadLetterFilter, DeadLetterRow, DeadLetterState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    error::{ApiError, Result},
    pagination::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE},
    spelled,
};

/// Most dead letters one bulk request settles; a larger set takes several requests
/// (`remaining` says how many are left).
pub(super) const MAX_BULK: u64 = 10_000;

/// Longest class or routing key a filter takes.
const MAX_FILTER_LEN: usize = 255;

/// A message merit gave up on.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterDto {
    /// Id, for replay and discard.
    pub id: String,
    /// Arrival order; `after` in a listing takes it.
    pub seq: i64,
    /// What became of it.
    #[serde(serialize_with = "spelled::serialize")]
    #[schema(value_type = spelled::DeadLetterStateName)]
    pub state: DeadLetterState,
    /// When it was replayed or discarded.
    pub settled_at: Option<DateTime<Utc>>,
    /// The queue it was taken from.
    pub source_queue: String,
    /// The original message id.
    pub message_id: Option<String>,
    /// The original correlation id: follow it in the logs and traces.
    pub correlation_id: Option<String>,
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
    pub dead_lettered_at: DateTime<Utc>,
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
pub(super) const LISTED_BODY_BYTES: usize = 2_048;

impl DeadLetterDto {
    /// The dead letter with at most `max_body` bytes of its body; a state outside
    /// [`DeadLetterState`] is a corrupt row (a 500).
    pub(super) fn new(d: DeadLetterRow, max_body: usize) -> Result<Self> {
        let state = spelled::stored("dead_letters", &d.id, "state", &d.state)?;
        let body_bytes = d
            .truncated_from
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(d.body.len());
        let shown = &d.body[..d.body.len().min(max_body)];
        Ok(Self {
            body: String::from_utf8_lossy(shown).into_owned(),
            body_truncated: shown.len() < body_bytes,
            body_bytes,
            id: d.id,
            seq: d.seq,
            state,
            settled_at: d.settled_at,
            source_queue: d.source_queue,
            message_id: d.message_id,
            correlation_id: d.correlation_id,
            routing_key: d.routing_key,
            reason_class: d.reason_class,
            reason: d.reason,
            attempts: u32::try_from(d.attempts).unwrap_or(0),
            dead_lettered_at: d.dead_lettered_at,
            origin: d.origin,
        })
    }
}

/// A page of dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterList {
    /// Dead letters in arrival order.
    pub items: Vec<DeadLetterDto>,
    /// The page size asked for.
    pub page_size: u64,
    /// How many dead letters match the filter in all.
    pub total: u64,
    /// Pass it as `after` for the next page; `null` on the last page.
    pub next_after: Option<i64>,
}

/// What an action did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterActionDto {
    /// The dead letter.
    pub id: String,
    /// `replayed` or `discarded`.
    pub action: String,
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeadLetterQuery {
    /// `waiting` (default), `replayed`, `discarded` or `all`.
    #[param(pattern = "^(waiting|replayed|discarded|all)?$")]
    pub state: Option<String>,
    /// Only this reason class.
    #[param(max_length = 255)]
    pub class: Option<String>,
    /// Only this routing key.
    #[param(max_length = 255)]
    pub routing_key: Option<String>,
    /// Only this correlation id.
    #[param(max_length = 255)]
    pub correlation_id: Option<String>,
    /// Dead-lettered at or after (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Dead-lettered before (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    /// Only dead letters after this `seq` (the previous page's `next_after`).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u64>,
}

/// Which waiting dead letters a bulk replay or discard covers (every one when no filter is
/// given), and whether to only count them: a request acts only when it says
/// `"dry_run": false`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkRequest {
    /// Only this reason class.
    #[schema(max_length = 255)]
    pub class: Option<String>,
    /// Only this routing key.
    #[schema(max_length = 255)]
    pub routing_key: Option<String>,
    /// Only this correlation id (one operation).
    #[schema(max_length = 255)]
    pub correlation_id: Option<String>,
    /// Dead-lettered at or after (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Dead-lettered before (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    /// Only count what would be settled (the default): send `false` to act.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub dry_run: bool,
    /// Most to settle in this request, 1-10000 (default 10000).
    #[schema(minimum = 1, maximum = 10_000)]
    #[serde(default, deserialize_with = "crate::routes::whole_opt_u64")]
    pub limit: Option<u64>,
}

fn yes() -> bool {
    true
}

/// What a bulk request did (or, in a dry run, would do).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BulkOutcome {
    /// `replay` or `discard`.
    pub action: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Waiting dead letters matching the filter before the request.
    pub matched: u64,
    /// How many it settled (0 in a dry run).
    pub settled: u64,
    /// Waiting dead letters matching the filter after it.
    pub remaining: u64,
}

/// A filter given empty (`?class=`, as an HTML form sends it) is no filter.
fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// `field`'s value, bounded; empty is absent.
pub(super) fn bounded(field: &str, value: Option<String>) -> Result<Option<String>> {
    match given(value) {
        Some(v) if v.len() > MAX_FILTER_LEN => Err(ApiError::bad_request(format!(
            "{field}: must be 1-{MAX_FILTER_LEN} bytes"
        ))),
        other => Ok(other),
    }
}

/// An RFC 3339 time (given empty, it is not one: a 400 like any other bad value).
fn instant(field: &str, value: Option<String>) -> Result<Option<DateTime<Utc>>> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(&v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "{field}: {} is not an RFC 3339 time (e.g. 2026-12-05T10:00:00Z)",
                        merit_messages::quote_untrusted(&v)
                    ))
                })
        })
        .transpose()
}

pub(super) fn filter_of(
    class: Option<String>,
    routing_key: Option<String>,
    since: Option<String>,
    until: Option<String>,
) -> Result<DeadLetterFilter> {
    Ok(DeadLetterFilter {
        state: None,
        correlation_id: None,
        reason_class: bounded("class", class)?,
        routing_key: bounded("routing_key", routing_key)?,
        since: instant("since", since)?,
        until: instant("until", until)?,
    })
}

impl DeadLetterQuery {
    pub(super) fn parse(self) -> Result<(DeadLetterFilter, i64, u64)> {
        let state = match given(self.state).as_deref() {
            None => Some(DeadLetterState::Waiting),
            Some("all") => None,
            Some(s) => Some(DeadLetterState::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "state: {} is not waiting, replayed, discarded or all",
                    merit_messages::quote_untrusted(s)
                ))
            })?),
        };
        let page_size = self.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(ApiError::bad_request(format!(
                "page_size: {page_size} is out of range (1-{MAX_PAGE_SIZE})"
            )));
        }
        let after = self.after.unwrap_or(0);
        if after < 0 {
            return Err(ApiError::bad_request("after: must be 0 or more"));
        }
        let filter = DeadLetterFilter {
            state,
            correlation_id: bounded("correlation_id", self.correlation_id)?,
            ..filter_of(self.class, self.routing_key, self.since, self.until)?
        };
        Ok((filter, after, page_size))
    }
}
