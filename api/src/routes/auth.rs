//! Sign-In with Ethereum (EIP-4361): a wallet proves it holds its key and gets a user
//! token.
//!
//! `POST /api/v1/auth/nonce` issues a random nonce, stored in the database with a TTL so
//! that any node can verify it (embedded mode has no Redis). The wallet signs an EIP-4361
//! message naming this service's domain, an allowed URI, merit's chain id and the nonce
//! (`personal_sign`, EIP-191), and `POST /api/v1/auth/login` checks all of it, consumes the
//! nonce in the same statement that finds it (a replay finds nothing) and answers a user
//! JWT — the HS256 token `merit token` mints, subject = the lowercase address.

use actix_web::{post, web, HttpResponse};
use chrono::{DateTime, Utc};
use merit_storage::{
    entities::siwe_nonce,
    sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter},
};
use rand::{distributions::Alphanumeric, Rng};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    error::{ApiError, ErrorBody, Result},
    siwe,
    state::ApiState,
};

/// Length of an issued nonce (EIP-4361 asks at least 8 alphanumeric characters).
const NONCE_LEN: usize = 24;
/// Longest signature text read.
const MAX_SIGNATURE_LEN: usize = 200;

/// A nonce to put in the message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NonceDto {
    /// Letters and digits; goes in the message's `Nonce:` line. Accepted once.
    pub nonce: String,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// A signed sign-in message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    /// The EIP-4361 message, exactly as signed.
    #[schema(max_length = 4096)]
    pub message: String,
    /// Its `personal_sign` (EIP-191) signature: 65 bytes as `0x` + 130 hex digits.
    #[schema(max_length = 200)]
    pub signature: String,
}

/// A user token.
#[derive(Serialize, ToSchema)]
pub(crate) struct LoginDto {
    /// A user JWT (HS256), subject = the address; send as `Authorization: Bearer`.
    pub token: String,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// The signed-in wallet, lowercase.
    pub address: String,
}

impl std::fmt::Debug for LoginDto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginDto")
            .field("token", &"***redacted***")
            .field("expires_at", &self.expires_at)
            .field("address", &self.address)
            .finish()
    }
}

/// A nonce for a Sign-In with Ethereum message (single use, valid five minutes).
#[utoipa::path(post, path = "/api/v1/auth/nonce", tag = "auth",
    responses(
        (status = 200, description = "The nonce", body = NonceDto),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[post("/auth/nonce")]
pub(crate) async fn nonce(state: web::Data<ApiState>) -> Result<HttpResponse> {
    let now = Utc::now();
    let db = state.store.db();
    // Expired nonces are useless: each issue sweeps them (indexed by expiry).
    siwe_nonce::Entity::delete_many()
        .filter(siwe_nonce::Column::ExpiresAt.lte(now))
        .exec(db)
        .await?;
    let nonce: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(NONCE_LEN)
        .map(char::from)
        .collect();
    let ttl = chrono::Duration::from_std(state.options.siwe.nonce_ttl)
        .unwrap_or_else(|_| chrono::Duration::minutes(5));
    let expires_at = now + ttl;
    siwe_nonce::Entity::insert(siwe_nonce::ActiveModel {
        nonce: Set(nonce.clone()),
        expires_at: Set(expires_at),
    })
    .exec(db)
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(NonceDto { nonce, expires_at }))
}

/// Signs in with a signed EIP-4361 message: its domain, URI, chain id and times must
/// match this service, its nonce must be one this service issued and not yet used, and
/// the signature must recover to its address. Answers a user token for that address.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = LoginDto),
        (status = 400, description = "Not an EIP-4361 message, or a malformed body or signature", body = ErrorBody),
        (status = 401, description = "Refused: wrong domain, URI, chain or version; expired or not yet valid; unknown, expired or used nonce; a signature by another key", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
#[post("/auth/login")]
pub(crate) async fn login(
    state: web::Data<ApiState>,
    body: crate::body::Body<LoginRequest>,
) -> Result<HttpResponse> {
    let LoginRequest { message, signature } = body.into_inner();
    if signature.len() > MAX_SIGNATURE_LEN {
        return Err(ApiError::bad_request(format!(
            "signature: longer than {MAX_SIGNATURE_LEN} characters"
        )));
    }
    let parsed = siwe::parse(&message).map_err(ApiError::bad_request)?;
    let options = &state.options.siwe;
    let policy = siwe::Policy {
        domain: options.domain.clone(),
        origins: options.origins.clone(),
        chain_id: options.chain_id,
        skew_secs: i64::try_from(options.skew.as_secs()).unwrap_or(60),
    };
    let now = Utc::now();
    siwe::check(&parsed, &policy, now).map_err(ApiError::unauthorized)?;
    siwe::verify_signature(&message, &signature, &parsed.address).map_err(|e| {
        if e.starts_with("signature: expected") {
            ApiError::bad_request(e)
        } else {
            ApiError::unauthorized(e)
        }
    })?;
    // Consumed in the statement that finds it: of two logins with one nonce, one wins.
    let db = state.store.db();
    let consumed = siwe_nonce::Entity::delete_many()
        .filter(siwe_nonce::Column::Nonce.eq(parsed.nonce.as_str()))
        .filter(siwe_nonce::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    if consumed.rows_affected != 1 {
        let expired = siwe_nonce::Entity::delete_many()
            .filter(siwe_nonce::Column::Nonce.eq(parsed.nonce.as_str()))
            .exec(db)
            .await?;
        return Err(ApiError::unauthorized(if expired.rows_affected > 0 {
            "message: Nonce expired: ask POST /api/v1/auth/nonce for a new one"
        } else {
            "message: Nonce unknown or already used: ask POST /api/v1/auth/nonce for a new one \
             (each nonce signs in once)"
        }));
    }
    let address: merit_messages::Address = parsed
        .address
        .parse()
        .map_err(|_| ApiError::bad_request("message: bad address"))?;
    let mut ttl = i64::try_from(options.token_ttl.as_secs()).unwrap_or(3600);
    if let Some(until) = parsed.expiration_time {
        ttl = ttl.min((until - now).num_seconds().max(1));
    }
    let token = state.credentials.sign_user(&address, ttl);
    metrics::counter!("merit_siwe_logins_total").increment(1);
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(LoginDto {
            token,
            expires_at: now + chrono::Duration::seconds(ttl),
            address: address.to_string(),
        }))
}
