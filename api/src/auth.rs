//! Who is calling: a user (a bearer JWT, HS256, signed with `MERIT_JWT_SECRET`, whose
//! subject is a wallet address) or an operator (the bearer `MERIT_ADMIN_TOKEN`).
//!
//! The JWT check is hand-rolled on `hmac`/`sha2` (already in the tree through ethers)
//! because merit accepts exactly one algorithm: the header must say `HS256` (an `alg: none`
//! or RS256 token is refused before anything else is read), the signature is checked in
//! constant time, `exp` is required and `nbf` honoured with a 30 s leeway. The admin token
//! is compared in constant time over SHA-256 digests, so neither its content nor its length
//! leaks through timing. Neither secret is ever echoed: errors say what was wrong with the
//! presented credential, never what was expected.

use std::{future::Future, pin::Pin};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use merit_messages::Address;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    error::{ApiError, Result},
    state::ApiState,
};

/// Clock skew tolerated on `exp` and `nbf`, seconds.
const LEEWAY_SECS: i64 = 30;
/// Longest bearer credential read (a JWT with a few claims is ~300 bytes).
const MAX_TOKEN_LEN: usize = 4096;

/// The secrets the API checks credentials against. Debug never shows them.
#[derive(Clone)]
pub struct Credentials {
    jwt_secret: Vec<u8>,
    admin_digest: [u8; 32],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(***redacted***)")
    }
}

impl Credentials {
    /// From the configured JWT secret and admin token.
    pub fn new(jwt_secret: &[u8], admin_token: &[u8]) -> Self {
        Self {
            jwt_secret: jwt_secret.to_vec(),
            admin_digest: Sha256::digest(admin_token).into(),
        }
    }

    /// Whether `presented` is the admin token (constant time).
    pub fn is_admin(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.admin_digest).into()
    }

    /// The wallet a valid user token names.
    pub fn verify_user(&self, token: &str) -> Result<Address> {
        verify(&self.jwt_secret, token, chrono::Utc::now().timestamp())
    }

    /// A user token for `user` valid `ttl_secs` (tests, the demo and `merit token`).
    pub fn sign_user(&self, user: &Address, ttl_secs: i64) -> String {
        sign(&self.jwt_secret, &user.to_string(), ttl_secs)
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length")
}

/// Signs an HS256 JWT with subject `sub`.
pub fn sign(secret: &[u8], sub: &str, ttl_secs: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = Claims {
        sub: sub.to_string(),
        exp: now.saturating_add(ttl_secs),
        nbf: None,
        iat: Some(now),
    };
    let claims = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&claims).expect("claims of plain data serialise"));
    let signing_input = format!("{header}.{claims}");
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

fn verify(secret: &[u8], token: &str, now: i64) -> Result<Address> {
    let invalid = |why: &str| ApiError::unauthorized(format!("invalid bearer token: {why}"));
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid("too long"));
    }
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| invalid("not a JWT (expected header.claims.signature)"))?;
    let (header, claims) = signing_input
        .split_once('.')
        .filter(|(_, claims)| !claims.contains('.'))
        .ok_or_else(|| invalid("not a JWT (expected header.claims.signature)"))?;
    let header: Header = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| invalid("header is not base64url JSON"))?;
    if header.alg != "HS256" {
        return Err(invalid("algorithm must be HS256"));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| invalid("signature is not base64url"))?;
    let mut m = mac(secret);
    m.update(signing_input.as_bytes());
    m.verify_slice(&signature)
        .map_err(|_| invalid("bad signature"))?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(claims)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| invalid("claims are not base64url JSON with sub and exp"))?;
    // Saturating: an `exp` near i64::MAX must not overflow (a panic in debug, a wrap to
    // "expired long ago" in release); an `nbf` near i64::MIN likewise.
    if claims.exp.saturating_add(LEEWAY_SECS) < now {
        return Err(invalid("expired"));
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf.saturating_sub(LEEWAY_SECS) > now)
    {
        return Err(invalid("not valid yet"));
    }
    claims
        .sub
        .parse::<Address>()
        .map_err(|_| invalid("subject is not a wallet address"))
}

/// The bearer credential of a request: the `Authorization: Bearer …` header, or for
/// browsers' WebSocket and EventSource (which cannot set headers) the `token` query
/// parameter when `allow_query` is set.
pub(crate) fn bearer(req: &HttpRequest, allow_query: bool) -> Option<String> {
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    if allow_query {
        return web::Query::<TokenQuery>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.into_inner().token);
    }
    None
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A user, by wallet.
    User(Address),
    /// An operator.
    Admin,
}

impl Caller {
    /// Whether this caller may read `user`'s data: the user themself or an operator.
    pub(crate) fn may_read(&self, user: &Address) -> Result<()> {
        match self {
            Self::Admin => Ok(()),
            Self::User(me) if me == user => Ok(()),
            Self::User(_) => Err(ApiError::forbidden(
                "a user token reads only its own subject's data",
            )),
        }
    }

    /// The wallet acting, for endpoints only a user can call.
    pub(crate) fn user(&self) -> Result<Address> {
        match self {
            Self::User(me) => Ok(*me),
            Self::Admin => Err(ApiError::forbidden(
                "this endpoint acts as a user: use a user token whose subject is the wallet",
            )),
        }
    }

    pub(crate) fn from_request_with(req: &HttpRequest, allow_query: bool) -> Result<Self> {
        let state = req
            .app_data::<web::Data<ApiState>>()
            .ok_or_else(|| ApiError::internal("authenticate", "API state missing"))?;
        let token = bearer(req, allow_query).ok_or_else(|| {
            ApiError::unauthorized("missing credential: send Authorization: Bearer <token>")
        })?;
        if state.credentials.is_admin(&token) {
            return Ok(Self::Admin);
        }
        state.credentials.verify_user(&token).map(Self::User)
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Self::from_request_with(req, false))
    }
}

/// An operator (the admin token); a valid user token is refused with 403.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let caller = Caller::from_request_with(req, false);
        Box::pin(async move {
            match caller? {
                Caller::Admin => Ok(Admin),
                Caller::User(_) => Err(ApiError::forbidden("operators only: use the admin token")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const WALLET: &str = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";

    #[test]
    fn a_signed_token_verifies_to_its_subject() {
        let token = sign(SECRET, WALLET, 60);
        let now = chrono::Utc::now().timestamp();
        assert_eq!(
            verify(SECRET, &token, now).expect("valid").to_string(),
            WALLET
        );
    }

    #[test]
    fn another_secret_expiry_tampering_and_alg_none_are_refused() {
        let now = chrono::Utc::now().timestamp();
        let token = sign(SECRET, WALLET, 60);
        assert!(verify(b"another secret of enough length!!", &token, now).is_err());
        assert!(verify(SECRET, &token, now + 3600).is_err(), "expired");
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"{WALLET}","exp":{}}}"#, now + 9999));
        parts[1] = &other;
        assert!(
            verify(SECRET, &parts.join("."), now).is_err(),
            "claims swapped"
        );
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"{WALLET}","exp":{}}}"#, now + 60))
        );
        let err = verify(SECRET, &none, now).expect_err("alg none");
        assert!(err.message.contains("HS256"), "{err}");
        assert!(verify(SECRET, "a.b", now).is_err());
        assert!(verify(SECRET, "", now).is_err());
    }

    /// A token signed with the right secret and arbitrary claims JSON.
    fn forge(claims: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
        let mut m = mac(SECRET);
        m.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        )
    }

    #[test]
    fn an_exp_or_nbf_at_the_edges_of_the_integers_neither_overflows_nor_passes_wrongly() {
        let now = chrono::Utc::now().timestamp();
        // exp at i64::MAX: far future, valid (the leeway must not overflow).
        let token = forge(&format!(r#"{{"sub":"{WALLET}","exp":{}}}"#, i64::MAX));
        assert_eq!(
            verify(SECRET, &token, now).expect("valid").to_string(),
            WALLET
        );
        let token = forge(&format!(r#"{{"sub":"{WALLET}","exp":{}}}"#, i64::MAX - 1));
        assert!(verify(SECRET, &token, now).is_ok());
        // exp at i64::MIN: long expired.
        let token = forge(&format!(r#"{{"sub":"{WALLET}","exp":{}}}"#, i64::MIN));
        assert!(verify(SECRET, &token, now)
            .expect_err("expired")
            .message
            .contains("expired"));
        // exp past i64 (u64::MAX) is not an i64: refused as malformed claims, no panic.
        let token = forge(&format!(r#"{{"sub":"{WALLET}","exp":{}}}"#, u64::MAX));
        assert!(verify(SECRET, &token, now)
            .expect_err("not i64")
            .message
            .contains("claims"));
        // nbf at i64::MIN: valid from the beginning of time.
        let token = forge(&format!(
            r#"{{"sub":"{WALLET}","exp":{},"nbf":{}}}"#,
            now + 60,
            i64::MIN
        ));
        assert!(verify(SECRET, &token, now).is_ok());
        // nbf at i64::MAX: not valid yet.
        let token = forge(&format!(
            r#"{{"sub":"{WALLET}","exp":{},"nbf":{}}}"#,
            i64::MAX,
            i64::MAX
        ));
        assert!(verify(SECRET, &token, now)
            .expect_err("nbf")
            .message
            .contains("not valid yet"));
        // sign with a huge ttl saturates instead of overflowing.
        let token = sign(SECRET, WALLET, i64::MAX);
        assert!(verify(SECRET, &token, now).is_ok());
    }

    #[test]
    fn a_subject_that_is_not_a_wallet_is_refused() {
        let token = sign(SECRET, "alice", 60);
        let err = verify(SECRET, &token, chrono::Utc::now().timestamp())
            .expect_err("subject not a wallet");
        assert!(err.message.contains("wallet"), "{err}");
    }

    #[test]
    fn the_admin_token_is_recognised_and_debug_hides_it() {
        let c = Credentials::new(SECRET, b"admin-token-value");
        assert!(c.is_admin("admin-token-value"));
        assert!(!c.is_admin("admin-token-valuf"));
        assert!(!c.is_admin(""));
        assert!(!format!("{c:?}").contains("admin-token-value"));
    }
}
