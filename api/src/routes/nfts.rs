//! NFTs as merit knows them (the listener's view of the chain, in chain order).

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use merit_storage::{
    column::to_u64,
    entities::nft,
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::Caller,
    error::{ApiError, ErrorBody, Result},
    pagination::{fetch, page_of, PageQuery},
    routes::{address, token},
    state::ApiState,
};

/// An NFT.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NftDto {
    /// Token id (uint256 decimal).
    pub token: String,
    /// Lowercase 0x owner; none once burned.
    pub owner: Option<String>,
    /// Benefit tier, when known.
    pub tier: Option<String>,
    /// The achievement it was minted for, when merit minted it.
    pub achievement_id: Option<String>,
    /// Burned.
    pub burned: bool,
    /// Chain position (block, log index) of the last change applied.
    pub position: [u64; 2],
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<nft::Model> for NftDto {
    fn from(n: nft::Model) -> Self {
        Self {
            token: n.token_id,
            owner: n.owner,
            tier: n.tier,
            achievement_id: n.achievement_id,
            burned: n.burned,
            position: [to_u64(n.last_block), to_u64(n.last_log_index)],
            updated_at: n.updated_at,
        }
    }
}

page_of!(NftPage, NftDto, "NFTs");

/// Which NFTs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct NftQuery {
    /// Only those held by this 0x address (40 hex digits in one case, or mixed case with a
    /// valid EIP-55 checksum).
    #[param(pattern = "^0[xX]([0-9a-f]{40}|[0-9A-F]{40})$")]
    pub owner: Option<String>,
    /// Include burned tokens (default false).
    pub burned: Option<bool>,
}

/// NFTs, by token id.
#[utoipa::path(get, path = "/api/v1/nfts", tag = "nfts",
    params(NftQuery, PageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of NFTs", body = NftPage),
        (status = 400, description = "Bad owner or page", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/nfts")]
pub(crate) async fn list_nfts(
    state: web::Data<ApiState>,
    _caller: Caller,
    filter: web::Query<NftQuery>,
    page: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let window = page.window()?;
    let mut query = nft::Entity::find();
    if let Some(owner) = &filter.owner {
        query = query.filter(nft::Column::Owner.eq(address(owner)?.to_string()));
    }
    if !filter.burned.unwrap_or(false) {
        query = query.filter(nft::Column::Burned.eq(false));
    }
    let (items, total) = fetch(
        state.store.db(),
        query.order_by_asc(nft::Column::TokenId),
        window,
    )
    .await?;
    Ok(HttpResponse::Ok().json(NftPage::new(items, window, total)))
}

/// One NFT.
#[utoipa::path(get, path = "/api/v1/nfts/{token}", tag = "nfts",
    params(("token" = String, Path, pattern = "^0*[0-9]{1,77}$", description = "Token id, uint256 decimal (up to 2^256 - 1; the pattern shows the ids of at most 77 digits)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The NFT", body = NftDto),
        (status = 400, description = "Not a token id", body = ErrorBody),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[get("/nfts/{token}")]
pub(crate) async fn get_nft(
    state: web::Data<ApiState>,
    _caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let id = token(&path)?.to_string();
    let row = nft::Entity::find_by_id(id.clone())
        .one(state.store.db())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("token {id}: merit knows no such token")))?;
    Ok(HttpResponse::Ok().json(NftDto::from(row)))
}
