//! Per-client request budgets: a token bucket per IP address (`rate_per_sec` refill,
//! `rate_burst` capacity). Over budget answers 429 with `Retry-After`; probes (`/health`,
//! `/ready`, `/metrics`) are never limited, so an orchestrator is not locked out by a
//! noisy client.

use std::{collections::HashMap, sync::Mutex, time::Instant};

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
    web, ResponseError,
};

use crate::{error::ApiError, state::ApiState};

/// Paths never limited: the probes an orchestrator polls.
pub(crate) const EXEMPT: [&str; 3] = ["/health", "/ready", "/metrics"];

/// Buckets kept before idle ones are swept.
const MAX_BUCKETS: usize = 100_000;

/// Token buckets by client.
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

    /// Takes one token from `client`'s bucket; false when it is empty.
    pub(crate) fn allow(&self, client: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            let (per_sec, burst) = (self.per_sec, self.burst);
            // A bucket that would be full again holds no information.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let (tokens, at) = buckets
            .entry(client.to_string())
            .or_insert((self.burst, now));
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

/// The middleware.
pub(crate) async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if !EXEMPT.contains(&req.path()) {
        if let (Some(state), Some(limiter)) = (
            req.app_data::<web::Data<ApiState>>(),
            req.app_data::<web::Data<RateLimiter>>(),
        ) {
            let client = req
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            if !limiter.allow(&client) {
                metrics::counter!("merit_http_rate_limited_total").increment(1);
                let mut response = ApiError::rate_limited(format!(
                    "more than {} requests per second from {client}; retry after a second",
                    state.options.rate_per_sec
                ))
                .error_response();
                response.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from_static("1"),
                );
                return Ok(req.into_response(response).map_into_right_body());
            }
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_and_clients_are_separate() {
        let limiter = RateLimiter::new(1, 3);
        assert!((0..3).all(|_| limiter.allow("a")));
        assert!(!limiter.allow("a"));
        assert!(limiter.allow("b"));
    }
}
