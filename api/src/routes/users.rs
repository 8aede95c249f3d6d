//! A user's own data: counters, achievements with their states, held NFTs, benefits and
//! the notification log. A user token reads only its own subject; the admin token any.

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use merit_storage::{
    column::{to_i64, to_u64},
    entities::{
        achievement::{self, AchievementState},
        benefit, nft, notification, user,
    },
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::Caller,
    error::{ApiError, ErrorBody, Result},
    pagination::{fetch, page_of, PageQuery},
    routes::{address, int64, nfts::NftDto},
    spelled,
    state::ApiState,
};

/// A user's benefits: their vote weight multiplier and what makes it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BenefitsDto {
    /// Vote weight multiplier in basis points (10000 = 1x).
    pub multiplier_bps: u64,
    /// `[token id, tier]` pairs of the NFTs counted.
    #[schema(value_type = Vec<Vec<String>>)]
    pub boosting_nfts: serde_json::Value,
    /// Dynamic config version it was computed under.
    pub config_version: u64,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<benefit::Model> for BenefitsDto {
    fn from(b: benefit::Model) -> Self {
        Self {
            multiplier_bps: to_u64(b.multiplier_bps),
            boosting_nfts: b.boosting_nfts,
            config_version: to_u64(b.config_version),
            updated_at: b.updated_at,
        }
    }
}

/// A user.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserDto {
    /// Lowercase 0x address.
    pub address: String,
    /// Proposals created.
    pub proposals_created: u64,
    /// Votes counted.
    pub votes_cast: u64,
    /// Further counters (`proposals_passed`, `nfts_held`, `longest_streak`).
    #[schema(value_type = Object)]
    pub counters: serde_json::Value,
    /// First event seen.
    pub first_seen_at: DateTime<Utc>,
    /// Latest event seen.
    pub last_active_at: DateTime<Utc>,
    /// Current benefits (none before the user's first NFT change).
    pub benefits: Option<BenefitsDto>,
    /// The last `seq` of the user's notification log (0: none yet).
    pub last_notification_seq: u64,
}

/// An achievement and where its mint stands.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AchievementDto {
    /// Deterministic id (UUID).
    pub id: String,
    /// The rule met.
    pub rule: String,
    /// Config version the rule was evaluated under.
    pub rule_version: u64,
    /// NFT tier it mints.
    pub tier: String,
    /// Token id (uint256 decimal).
    pub token: Option<String>,
    /// Where it and its mint stand.
    #[serde(serialize_with = "spelled::serialize")]
    #[schema(value_type = spelled::AchievementStateName)]
    pub state: AchievementState,
    /// Why it failed.
    pub reason: Option<String>,
    /// The saga minting it.
    pub saga_id: Option<String>,
    /// Unlocked at.
    pub created_at: DateTime<Utc>,
    /// Last state change.
    pub updated_at: DateTime<Utc>,
}

/// The row as served; a state outside [`AchievementState`] is a corrupt row (a 500).
impl TryFrom<achievement::Model> for AchievementDto {
    type Error = ApiError;

    fn try_from(a: achievement::Model) -> Result<Self> {
        let state = spelled::stored("achievements", &a.id, "state", &a.state)?;
        Ok(Self {
            id: a.id,
            rule: a.rule_id,
            rule_version: to_u64(a.rule_version),
            tier: a.tier,
            token: a.token_id,
            state,
            reason: a.reason,
            saga_id: a.saga_id,
            created_at: a.created_at,
            updated_at: a.updated_at,
        })
    }
}

/// One entry of a user's notification log.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NotificationDto {
    /// Position in the user's log, from 1, without gaps.
    pub seq: u64,
    /// The event reported.
    pub event_id: String,
    /// The event type: `achievement.unlocked`, `achievement.minted`, `achievement.failed`,
    /// `governance.vote.recorded`, `governance.proposal.closed`, `governance.proposal.result`,
    /// `user.benefits.changed`.
    pub kind: String,
    /// The event's payload, as documented for its type.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// When the event occurred.
    pub at: DateTime<Utc>,
}

impl From<notification::Model> for NotificationDto {
    fn from(n: notification::Model) -> Self {
        Self {
            seq: to_u64(n.seq),
            event_id: n.event_id,
            kind: n.kind,
            payload: n.payload,
            at: n.created_at,
        }
    }
}

page_of!(AchievementPage, AchievementDto, "achievements");
page_of!(UserNftPage, NftDto, "NFTs");

/// A slice of the notification log.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NotificationLog {
    /// Entries with `seq` > `after`, in order.
    pub items: Vec<NotificationDto>,
    /// The `after` to ask with next time.
    pub next_after: u64,
    /// The last `seq` in the log now.
    pub last_seq: u64,
}

/// Where to read the log from.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// Entries after this `seq` (default 0: from the start).
    pub after: Option<u64>,
    /// At most this many, 1-500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
}

/// Which achievements.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AchievementQuery {
    /// Only in this state; another value is a 400.
    #[param(value_type = Option<spelled::AchievementStateName>, inline)]
    pub state: Option<String>,
}

pub(crate) async fn last_seq(state: &ApiState, user: &str) -> Result<u64> {
    let last = notification::Entity::find()
        .filter(notification::Column::User.eq(user))
        .order_by_desc(notification::Column::Seq)
        .one(state.store.db())
        .await?;
    Ok(last.map_or(0, |n| to_u64(n.seq)))
}

/// Notifications of `user` after `after`, at most `limit`.
pub(crate) async fn read_log(
    state: &ApiState,
    user: &str,
    after: u64,
    limit: u64,
) -> Result<Vec<notification::Model>> {
    Ok(notification::Entity::find()
        .filter(notification::Column::User.eq(user))
        .filter(notification::Column::Seq.gt(to_i64(after)))
        .order_by_asc(notification::Column::Seq)
        .limit(limit)
        .all(state.store.db())
        .await?)
}

/// A user's counters and benefits.
#[utoipa::path(get, path = "/api/v1/users/{address}", tag = "users",
    params(("address" = String, Path, pattern = "^0[xX]([0-9a-f]{40}|[0-9A-F]{40})$", description = "0x wallet address: 40 hex digits in one case, or mixed case with a valid EIP-55 checksum (which a pattern cannot show)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserDto),
        (status = 400, description = "Not an address", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Another user's data", body = ErrorBody),
        (status = 404, description = "merit has seen no event of this user", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/users/{address}")]
pub(crate) async fn get_user(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let user = address(&path)?;
    caller.may_read(&user)?;
    let key = user.to_string();
    let Some(row) = user::Entity::find_by_id(key.clone())
        .one(state.store.db())
        .await?
    else {
        return Err(crate::error::ApiError::not_found(format!(
            "user {key}: merit has seen no event of this user"
        )));
    };
    let benefits = benefit::Entity::find_by_id(key.clone())
        .one(state.store.db())
        .await?;
    Ok(HttpResponse::Ok().json(UserDto {
        address: row.address,
        proposals_created: to_u64(row.proposals_created),
        votes_cast: to_u64(row.votes_cast),
        counters: row.counters,
        first_seen_at: row.first_seen_at,
        last_active_at: row.last_active_at,
        benefits: benefits.map(Into::into),
        last_notification_seq: last_seq(&state, &key).await?,
    }))
}

/// A user's achievements, newest first.
#[utoipa::path(get, path = "/api/v1/users/{address}/achievements", tag = "users",
    params(("address" = String, Path, pattern = "^0[xX]([0-9a-f]{40}|[0-9A-F]{40})$", description = "0x wallet address: 40 hex digits in one case, or mixed case with a valid EIP-55 checksum (which a pattern cannot show)"), PageQuery, AchievementQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of achievements", body = AchievementPage),
        (status = 400, description = "Bad address or page", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Another user's data", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/users/{address}/achievements")]
pub(crate) async fn user_achievements(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    page: web::Query<PageQuery>,
    filter: web::Query<AchievementQuery>,
) -> Result<HttpResponse> {
    let user = address(&path)?;
    caller.may_read(&user)?;
    let window = page.window()?;
    let wanted = spelled::filter::<AchievementState>("state", filter.state.as_deref())?;
    let mut query =
        achievement::Entity::find().filter(achievement::Column::User.eq(user.to_string()));
    if let Some(s) = wanted {
        query = query.filter(achievement::Column::State.eq(s));
    }
    let (items, total) = fetch(
        state.store.db(),
        query
            .order_by_desc(achievement::Column::CreatedAt)
            .order_by_asc(achievement::Column::Id),
        window,
    )
    .await?;
    Ok(HttpResponse::Ok().json(AchievementPage::new(items, window, total)))
}

/// The NFTs a user holds.
#[utoipa::path(get, path = "/api/v1/users/{address}/nfts", tag = "users",
    params(("address" = String, Path, pattern = "^0[xX]([0-9a-f]{40}|[0-9A-F]{40})$", description = "0x wallet address: 40 hex digits in one case, or mixed case with a valid EIP-55 checksum (which a pattern cannot show)"), PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of held NFTs", body = UserNftPage),
        (status = 400, description = "Bad address or page", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Another user's data", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/users/{address}/nfts")]
pub(crate) async fn user_nfts(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let user = address(&path)?;
    caller.may_read(&user)?;
    let window = page.window()?;
    let query = nft::Entity::find()
        .filter(nft::Column::Owner.eq(user.to_string()))
        .filter(nft::Column::Burned.eq(false));
    let (items, total) = fetch(
        state.store.db(),
        query.order_by_asc(nft::Column::TokenId),
        window,
    )
    .await?;
    Ok(HttpResponse::Ok().json(UserNftPage::new(items, window, total)))
}

/// A user's notification log after `after` (what a reconnecting client missed).
#[utoipa::path(get, path = "/api/v1/users/{address}/notifications", tag = "users",
    params(("address" = String, Path, pattern = "^0[xX]([0-9a-f]{40}|[0-9A-F]{40})$", description = "0x wallet address: 40 hex digits in one case, or mixed case with a valid EIP-55 checksum (which a pattern cannot show)"), LogQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Log entries in order", body = NotificationLog),
        (status = 400, description = "Bad address or limit", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Another user's data", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/users/{address}/notifications")]
pub(crate) async fn user_notifications(
    state: web::Data<ApiState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse> {
    let user = address(&path)?;
    caller.may_read(&user)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(crate::error::ApiError::bad_request(format!(
            "limit: {limit} is out of range (1-500)"
        )));
    }
    let after = int64("after", query.after.unwrap_or(0))?;
    let key = user.to_string();
    let items: Vec<NotificationDto> = read_log(&state, &key, after, limit)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let next_after = items.last().map_or(after, |n| n.seq);
    Ok(HttpResponse::Ok().json(NotificationLog {
        items,
        next_after,
        last_seq: last_seq(&state, &key).await?,
    }))
}
