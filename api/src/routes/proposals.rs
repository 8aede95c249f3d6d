//! Proposals and votes: reads from the projections, and creation / voting through the
//! API, which publishes the same envelopes any producer does (one path in: the API never
//! writes governance state itself; the ProposalActor decides).

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use merit_actors::ProposalStatus;
use merit_mailbox::Outgoing;
use merit_messages::{Envelope, VoteChoice};
use merit_storage::{
    column::to_u64,
    entities::{proposal, vote},
    sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::Caller,
    error::{ApiError, ErrorBody, Result},
    pagination::{fetch, page_of, PageQuery},
    routes::{address, whole_opt_u16, whole_u64},
    spelled,
    state::ApiState,
};

/// A proposal.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProposalDto {
    /// Id.
    pub id: String,
    /// Lowercase 0x creator.
    pub creator: String,
    /// Title.
    pub title: String,
    /// Body.
    pub description: String,
    /// Voting opens.
    pub starts_at: DateTime<Utc>,
    /// Voting closes.
    pub ends_at: DateTime<Utc>,
    /// Quorum in weight units.
    pub quorum: u64,
    /// Pass threshold in basis points.
    pub threshold_bps: u32,
    /// Where it is in its lifecycle.
    #[serde(serialize_with = "spelled::serialize")]
    #[schema(value_type = spelled::ProposalStatusName)]
    pub status: ProposalStatus,
    /// `{for_weight, against_weight, abstain_weight, voters, ...}`.
    #[schema(value_type = Object)]
    pub tally: serde_json::Value,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// The row as served; a status outside [`ProposalStatus`] is a corrupt row (a 500).
impl TryFrom<proposal::Model> for ProposalDto {
    type Error = ApiError;

    fn try_from(p: proposal::Model) -> Result<Self> {
        let status = spelled::stored("proposals", &p.id, "status", &p.status)?;
        Ok(Self {
            id: p.id,
            creator: p.creator,
            title: p.title,
            description: p.description,
            starts_at: p.starts_at,
            ends_at: p.ends_at,
            quorum: to_u64(p.quorum),
            threshold_bps: u32::try_from(p.threshold_bps).unwrap_or(0),
            status,
            tally: p.tally,
            created_at: p.created_at,
            updated_at: p.updated_at,
        })
    }
}

/// A counted vote.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VoteDto {
    /// Lowercase 0x voter.
    pub voter: String,
    /// How it was cast.
    #[serde(serialize_with = "spelled::serialize")]
    #[schema(value_type = spelled::VoteChoiceName)]
    pub choice: VoteChoice,
    /// Weight counted (1000 × multiplier).
    pub weight: u64,
    /// Token ids whose boost it used.
    #[schema(value_type = Vec<Object>)]
    pub boosts: serde_json::Value,
    /// The event that cast it.
    pub event_id: String,
    /// When it was cast.
    pub cast_at: DateTime<Utc>,
}

/// The row as served; a choice outside [`VoteChoice`] is a corrupt row (a 500).
impl TryFrom<vote::Model> for VoteDto {
    type Error = ApiError;

    fn try_from(v: vote::Model) -> Result<Self> {
        let key = format!("{}/{}", v.proposal_id, v.voter);
        let choice = spelled::stored("votes", &key, "choice", &v.choice)?;
        Ok(Self {
            voter: v.voter,
            choice,
            weight: to_u64(v.weight),
            boosts: v.boosts,
            event_id: v.event_id,
            cast_at: v.cast_at,
        })
    }
}

page_of!(ProposalPage, ProposalDto, "proposals");
page_of!(VotePage, VoteDto, "votes");

/// Which proposals.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProposalQuery {
    /// Only in this status; another value is a 400.
    #[param(value_type = Option<spelled::ProposalStatusName>, inline)]
    pub status: Option<String>,
    /// Only created by this 0x address (40 hex digits in one case, or mixed case with a
    /// valid EIP-55 checksum).
    #[param(pattern = "^0[xX]([0-9a-f]{40}|[0-9A-F]{40})$")]
    pub creator: Option<String>,
}

/// A new proposal; its creator is the token's subject.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateProposal {
    /// Id, 1-64 of `[A-Za-z0-9_.:-]`, unique.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub proposal: String,
    /// Title, 1-200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    /// Body, at most 8,000 characters.
    #[serde(default)]
    #[schema(max_length = 8000)]
    pub description: Option<String>,
    /// Voting opens (RFC 3339).
    pub starts_at: DateTime<Utc>,
    /// Voting closes; after `starts_at`.
    pub ends_at: DateTime<Utc>,
    /// Minimum total weight for a valid result.
    #[serde(deserialize_with = "whole_u64")]
    pub quorum: u64,
    /// Share of for / (for + against) needed to pass, basis points 1-10000 (default 5000).
    #[serde(default, deserialize_with = "whole_opt_u16")]
    #[schema(minimum = 1, maximum = 10000)]
    pub threshold_bps: Option<u16>,
}

/// A vote; the voter is the token's subject.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CastVote {
    /// How to vote.
    #[serde(
        serialize_with = "spelled::serialize",
        deserialize_with = "vote_choice"
    )]
    #[schema(value_type = spelled::VoteChoiceName)]
    pub choice: VoteChoice,
    /// Optional reason, at most 1,000 characters.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
}

/// `choice` of a [`CastVote`], with [`spelled::parse`]'s message when it is not one.
fn vote_choice<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<VoteChoice, D::Error> {
    spelled::deserialize("choice", deserializer)
}

/// What was published.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    /// The event id (the `Idempotency-Key` when one was sent).
    pub event_id: String,
    /// The event type published.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Correlation id of everything the event causes.
    pub correlation_id: String,
}

/// Proposals, newest first.
#[utoipa::path(get, path = "/api/v1/proposals", tag = "proposals",
    params(ProposalQuery, PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of proposals", body = ProposalPage),
        (status = 400, description = "Bad filter or page", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/proposals")]
pub(crate) async fn list_proposals(
    state: web::Data<ApiState>,
    _caller: Caller,
    filter: web::Query<ProposalQuery>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let window = page.window()?;
    let status = spelled::filter::<ProposalStatus>("status", filter.status.as_deref())?;
    let mut query = proposal::Entity::find();
    if let Some(status) = status {
        query = query.filter(proposal::Column::Status.eq(status.as_str()));
    }
    if let Some(creator) = &filter.creator {
        query = query.filter(proposal::Column::Creator.eq(address(creator)?.to_string()));
    }
    let (items, total) = fetch(
        state.store.db(),
        query
            .order_by_desc(proposal::Column::CreatedAt)
            .order_by_asc(proposal::Column::Id),
        window,
    )
    .await?;
    Ok(HttpResponse::Ok().json(ProposalPage::new(items, window, total)))
}

async fn find(state: &ApiState, id: &str) -> Result<proposal::Model> {
    proposal::Entity::find_by_id(id.to_string())
        .one(state.store.db())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "proposal {}: no such proposal",
                merit_messages::quote_untrusted(id)
            ))
        })
}

/// One proposal with its tally.
#[utoipa::path(get, path = "/api/v1/proposals/{id}", tag = "proposals",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "Proposal id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The proposal", body = ProposalDto),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 404, description = "No such proposal", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/proposals/{id}")]
pub(crate) async fn get_proposal(
    state: web::Data<ApiState>,
    _caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(ProposalDto::try_from(find(&state, &path).await?)?))
}

/// A proposal's counted votes, in the order cast.
#[utoipa::path(get, path = "/api/v1/proposals/{id}/votes", tag = "proposals",
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "Proposal id"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of votes", body = VotePage),
        (status = 400, description = "Bad page", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 404, description = "No such proposal", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/proposals/{id}/votes")]
pub(crate) async fn proposal_votes(
    state: web::Data<ApiState>,
    _caller: Caller,
    path: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let window = page.window()?;
    let p = find(&state, &path).await?;
    let query = vote::Entity::find().filter(vote::Column::ProposalId.eq(p.id));
    let (items, total) = fetch(
        state.store.db(),
        query
            .order_by_asc(vote::Column::CastAt)
            .order_by_asc(vote::Column::Voter),
        window,
    )
    .await?;
    Ok(HttpResponse::Ok().json(VotePage::new(items, window, total)))
}

/// The event id. With an `Idempotency-Key` header (a UUID) it is
/// `uuid5(MERIT_NAMESPACE, "api:{subject}:{key}")`, so a retried request publishes the same
/// event (absorbed by the actors' inboxes) while no caller can choose the id itself: one
/// user's key can never claim an id another user's request, or merit, will use. Without
/// the header, a new random id.
fn event_id(req: &HttpRequest, subject: &str) -> Result<uuid::Uuid> {
    match req.headers().get("idempotency-key") {
        None => Ok(uuid::Uuid::new_v4()),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<uuid::Uuid>().ok())
            .map(|key| api_event_id(subject, key))
            .ok_or_else(|| ApiError::bad_request("Idempotency-Key: expected a UUID")),
    }
}

/// The id of the event a request by `subject` with idempotency key `key` publishes.
pub(crate) fn api_event_id(subject: &str, key: uuid::Uuid) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &merit_messages::MERIT_NAMESPACE,
        format!("api:{subject}:{key}").as_bytes(),
    )
}

/// Builds the envelope through the one strict decoder every producer's message passes,
/// and publishes it with confirms.
async fn publish(
    state: &ApiState,
    id: uuid::Uuid,
    event_type: &str,
    payload: serde_json::Value,
) -> Result<HttpResponse> {
    let wire = serde_json::json!({
        "id": id,
        "type": event_type,
        "version": 1,
        "source": "api",
        "occurred_at": Utc::now(),
        "payload": payload,
    });
    let envelope = Envelope::decode(wire.to_string().as_bytes()).map_err(|e| {
        // The request's body is the payload: its fields are named as the client sent them.
        let field = ["payload.", "$."]
            .iter()
            .find_map(|prefix| e.field.strip_prefix(prefix))
            .unwrap_or(&e.field);
        ApiError::bad_request(format!("{}: {field}: {}", e.kind, e.reason))
    })?;
    let mut message = Outgoing::from_envelope(&envelope);
    // The request's trace goes on with the event (see `merit_messages::trace`).
    message
        .headers
        .extend(merit_messages::trace::inject(&tracing::Span::current()));
    state
        .transport
        .publish(vec![message])
        .await
        .map_err(|e| ApiError::dependency("the broker", &e))?;
    metrics::counter!("merit_api_published_total", "type" => event_type.to_string()).increment(1);
    Ok(HttpResponse::Accepted().json(Accepted {
        event_id: envelope.id.to_string(),
        event_type: event_type.to_string(),
        correlation_id: envelope.correlation_id.to_string(),
    }))
}

/// Creates a proposal (published as `governance.proposal.created`; the creator is the
/// caller).
#[utoipa::path(post, path = "/api/v1/proposals", tag = "proposals",
    request_body = CreateProposal,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, format = Uuid, description = "UUID; a retry with the same key publishes the same event")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Published; the ProposalActor applies it", body = Accepted),
        (status = 400, description = "An invalid field", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not a user token", body = ErrorBody),
        (status = 409, description = "The proposal exists", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "The caller created max_proposals_per_day proposals in the last 24 hours", body = ErrorBody),
        (status = 503, description = "The database or the broker is unavailable", body = ErrorBody),
    ))]
#[post("/proposals")]
pub(crate) async fn create_proposal(
    state: web::Data<ApiState>,
    caller: Caller,
    req: HttpRequest,
    body: crate::body::Body<CreateProposal>,
) -> Result<HttpResponse> {
    let creator = caller.user()?;
    let id = event_id(&req, &creator.to_string())?;
    let body = body.into_inner();
    let limits = state
        .center
        .current()
        .await
        .map_err(crate::routes::config::center_error)?
        .limits;
    let now = Utc::now();
    if let Err((field, why)) = limits.check_proposal(body.starts_at, body.ends_at, body.quorum, now)
    {
        return Err(ApiError::bad_request(format!("{field}: {why}")));
    }
    let recent = proposal::Entity::find()
        .filter(proposal::Column::Creator.eq(creator.to_string()))
        .filter(proposal::Column::CreatedAt.gt(now - chrono::Duration::days(1)))
        .count(state.store.db())
        .await?;
    if recent >= u64::from(limits.max_proposals_per_day) {
        return Err(ApiError::rate_limited(format!(
            "{creator} created {recent} proposals in the last 24 hours: at most {} allowed",
            limits.max_proposals_per_day
        )));
    }
    if proposal::Entity::find_by_id(body.proposal.clone())
        .one(state.store.db())
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "proposal {}: exists already",
            merit_messages::quote_untrusted(&body.proposal)
        )));
    }
    let mut payload = serde_json::json!({
        "proposal": body.proposal,
        "creator": creator,
        "title": body.title,
        "description": body.description.unwrap_or_default(),
        "starts_at": body.starts_at,
        "ends_at": body.ends_at,
        "quorum": body.quorum,
    });
    if let Some(t) = body.threshold_bps {
        payload["threshold_bps"] = t.into();
    }
    publish(&state, id, "governance.proposal.created", payload).await
}

/// Casts the caller's vote (published as `governance.vote.cast`). The first vote is
/// final: a second one is refused here when already counted, and by the ProposalActor in
/// any case.
#[utoipa::path(post, path = "/api/v1/proposals/{id}/votes", tag = "proposals",
    request_body = CastVote,
    params(("id" = String, Path, pattern = "^[A-Za-z0-9_.:-]{1,64}$", description = "Proposal id"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, format = Uuid, description = "UUID; a retry with the same key publishes the same event")),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Published; the ProposalActor counts it if the vote is open", body = Accepted),
        (status = 400, description = "An invalid field", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not a user token", body = ErrorBody),
        (status = 404, description = "No such proposal", body = ErrorBody),
        (status = 409, description = "Closed, or the caller's vote is already counted", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "The database or the broker is unavailable", body = ErrorBody),
    ))]
#[post("/proposals/{id}/votes")]
pub(crate) async fn cast_vote(
    state: web::Data<ApiState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    body: crate::body::Body<CastVote>,
) -> Result<HttpResponse> {
    let voter = caller.user()?;
    let id = event_id(&req, &voter.to_string())?;
    // What is wrong with the request itself is said before what conflicts with the state
    // (its body, the choice included, was refused when it was read).
    let p = find(&state, &path).await?;
    // A status merit does not know (a newer release's) is left to the ProposalActor.
    if p.status
        .parse::<ProposalStatus>()
        .is_ok_and(|s| !s.is_open())
    {
        return Err(ApiError::conflict(format!(
            "proposal {}: voting is over ({})",
            p.id, p.status
        )));
    }
    if vote::Entity::find_by_id((p.id.clone(), voter.to_string()))
        .one(state.store.db())
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "proposal {}: {voter} has voted; the first vote is final",
            p.id
        )));
    }
    let body = body.into_inner();
    let mut payload = serde_json::json!({
        "proposal": p.id,
        "voter": voter,
        "choice": body.choice.as_str(),
    });
    if let Some(reason) = body.reason {
        payload["reason"] = reason.into();
    }
    publish(&state, id, "governance.vote.cast", payload).await
}
