//! Request budgets: token buckets (`per_sec` refill, `burst` capacity) per client address,
//! per authenticated user, and a tighter one per client address for the sign-in
//! endpoints. Over budget answers 429 with `Retry-After`; probes (`/health`, `/ready`,
//! `/metrics`) are never limited, so an orchestrator is not locked out by a noisy client.
//!
//! **Who the client is.** The TCP peer, unless the peer is a configured trusted proxy
//! (`trusted_proxies`: addresses and CIDR blocks): then the chain of the one header those
//! proxies write (`forwarded_header`: `X-Forwarded-For` by default, or RFC 7239
//! `Forwarded`) is walked from the right, skipping trusted proxies, and the first address
//! that is not one is the client — the left part of the chain is whatever the client sent
//! and is never believed. The other header is never read: a proxy passes through a header
//! it does not manage, so the client could have written it whole. From an untrusted peer
//! neither is read, so a client cannot mint itself a fresh bucket by sending one.
//!
//! **IPv6.** A single host commonly holds a whole /64 and can rotate through it, so IPv6
//! clients are keyed by their /64 (IPv4-mapped IPv6 addresses count as IPv4).
//!
//! **Users.** A request with a valid user token also spends from its subject's bucket,
//! wherever it comes from: rotating addresses does not multiply a user's budget.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::Mutex,
    time::Instant,
};

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderMap, HeaderValue, RETRY_AFTER},
    middleware::Next,
    web, ResponseError,
};

use crate::{auth::Credentials, error::ApiError};

/// Paths never limited: the probes an orchestrator polls.
pub(crate) const EXEMPT: [&str; 3] = ["/health", "/ready", "/metrics"];
/// Paths with the tighter sign-in budget.
const AUTH_PREFIX: &str = "/api/v1/auth/";

/// Buckets kept before idle ones are swept.
const MAX_BUCKETS: usize = 100_000;

/// Token buckets by key.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub(crate) fn new(per_sec: u32, burst: u32) -> Self {
        Self {
            per_sec: f64::from(per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `key`'s bucket; false when it is empty.
    pub(crate) fn allow(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            let (per_sec, burst) = (self.per_sec, self.burst);
            // A bucket that would be full again holds no information.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// An IP address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `::1`, `fd00::/8`; `None` if it is neither.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (text, None),
        };
        let net = canonical(ip.parse().ok()?);
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Self { net, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The reverse proxies whose forwarding header is believed, and which header that is.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    proxies: Vec<Cidr>,
    /// `Forwarded` rather than `X-Forwarded-For`.
    rfc7239: bool,
}

impl TrustedProxies {
    /// From the setting's entries (ones that do not parse, which the config refuses, are
    /// skipped) and the header they write (`forwarded` or else `x-forwarded-for`).
    pub(crate) fn new(entries: &[String], header: &str) -> Self {
        Self {
            proxies: entries.iter().filter_map(|e| Cidr::parse(e)).collect(),
            rfc7239: header.eq_ignore_ascii_case("forwarded"),
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|c| c.contains(ip))
    }

    /// The client behind `peer`: `peer` itself unless it is a trusted proxy, else the
    /// right-most address of the forwarding chain that is not a trusted proxy.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let chain = if self.rfc7239 {
            joined(headers, "forwarded")
                .map(|v| forwarded_for(&v))
                .unwrap_or_default()
        } else {
            joined(headers, "x-forwarded-for")
                .map(|v| v.split(',').map(|hop| parse_hop(hop.trim())).collect())
                .unwrap_or_default()
        };
        let mut client = peer;
        for hop in chain.iter().rev() {
            match hop {
                // An address the proxies did not write: nothing left of it can be trusted.
                None => break,
                Some(ip) => {
                    client = canonical(*ip);
                    if !self.trusts(client) {
                        break;
                    }
                }
            }
        }
        client
    }
}

/// Every value of header `name`, joined with `,` (several headers form one list).
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// The `for=` parameters of a `Forwarded` header, left to right.
fn forwarded_for(value: &str) -> Vec<Option<IpAddr>> {
    value
        .split(',')
        .map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"'))
            })
        })
        .map(|node| node.and_then(parse_hop))
        .collect()
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]:5678`. `None` for `unknown`, obfuscated names and anything else.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The bucket key of a client address: IPv4 as is, IPv6 by its /64.
pub(crate) fn client_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
            format!("{net}/64")
        }
    }
}

/// The limiters of one server, with what they need to know: the rates (for the 429's
/// message) and the credentials a user token is checked against.
#[derive(Debug)]
pub(crate) struct Limits {
    per_client: RateLimiter,
    per_user: RateLimiter,
    auth: RateLimiter,
    proxies: TrustedProxies,
    rates: Rates,
    credentials: Credentials,
}

/// Requests per second of each budget.
#[derive(Debug, Clone, Copy)]
struct Rates {
    client: u32,
    user: u32,
    auth: u32,
}

impl Limits {
    pub(crate) fn new(options: &crate::state::ApiOptions, credentials: Credentials) -> Self {
        Self {
            per_client: RateLimiter::new(options.rate_per_sec, options.rate_burst),
            per_user: RateLimiter::new(options.user_rate_per_sec, options.user_rate_burst),
            auth: RateLimiter::new(options.auth_rate_per_sec, options.auth_rate_burst),
            proxies: TrustedProxies::new(&options.trusted_proxies, &options.forwarded_header),
            rates: Rates {
                client: options.rate_per_sec,
                user: options.user_rate_per_sec,
                auth: options.auth_rate_per_sec,
            },
            credentials,
        }
    }
}

fn refuse(message: String) -> actix_web::HttpResponse {
    metrics::counter!("merit_http_rate_limited_total").increment(1);
    let mut response = ApiError::rate_limited(message).error_response();
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The middleware.
pub(crate) async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if !EXEMPT.contains(&req.path()) {
        if let Some(limits) = req.app_data::<web::Data<Limits>>() {
            let refused = match req.peer_addr() {
                Some(peer) => {
                    let client = limits.proxies.client(peer.ip(), req.headers());
                    let key = client_key(client);
                    if !limits.per_client.allow(&key) {
                        Some(refuse(format!(
                            "more than {} requests per second from {key}; retry after a second",
                            limits.rates.client
                        )))
                    } else if req.path().starts_with(AUTH_PREFIX) && !limits.auth.allow(&key) {
                        Some(refuse(format!(
                            "more than {} sign-in requests per second from {key}; retry after a second",
                            limits.rates.auth
                        )))
                    } else {
                        None
                    }
                }
                None => None,
            };
            let refused = refused.or_else(|| {
                let token = crate::auth::bearer(req.request(), false)?;
                let user = limits.credentials.verify_user(&token).ok()?;
                (!limits.per_user.allow(&user.to_string())).then(|| {
                    refuse(format!(
                        "more than {} requests per second for user {user}; retry after a second",
                        limits.rates.user
                    ))
                })
            });
            if let Some(response) = refused {
                return Ok(req.into_response(response).map_into_right_body());
            }
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests;
