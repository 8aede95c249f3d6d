//! Access logging and per-route request metrics.
//!
//! Every request gets a request id: the caller's `X-Request-Id` when it is a short token
//! (1-64 of `[A-Za-z0-9._:-]`), else a fresh UUID. It is echoed in the response's
//! `X-Request-Id`, carried by a span around the handler (so every log line the request
//! causes names it) and written in one access-log line per request (target
//! `merit_api::access`): method, route template, status and duration. The route is the
//! matched template (`/api/v1/proposals/{id}`), never the raw path, so metrics stay
//! bounded: `merit_http_requests_total{method, route, status}` and
//! `merit_http_request_seconds{method, route}`.

use std::time::Instant;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{
        header::{HeaderName, HeaderValue},
        Method,
    },
    middleware::Next,
};
use tracing::Instrument;

/// The request id header, read and written.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The caller's request id if it is a short, plain token; otherwise none.
fn caller_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(&REQUEST_ID)?.to_str().ok()?;
    let ok = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    ok.then(|| value.to_string())
}

/// The request's method as a metric label: the standard ones by name, anything else (a
/// client may send any token as a method) as `other`, so a caller cannot grow the label
/// set without bound.
fn method_label(method: &Method) -> &'static str {
    [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ]
    .iter()
    .find(|(known, _)| known == method)
    .map_or("other", |(_, label)| *label)
}

/// The middleware (see the module docs).
pub(crate) async fn log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = caller_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = method_label(req.method()).to_string();
    // The log line keeps the method as sent (shortened), the metrics only the label.
    let req_method = merit_messages::quote_untrusted(req.method().as_str());
    // Matched before the handler runs; unmatched paths share one label.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let span = tracing::info_span!("http", request_id = %id, %method, %route);
    // A caller that traces (a front-end with OpenTelemetry) makes this request part of
    // its trace.
    let trace: std::collections::BTreeMap<String, String> = merit_messages::trace::TRACE_HEADERS
        .iter()
        .filter_map(|h| {
            let value = req.headers().get(*h)?.to_str().ok()?;
            Some((h.to_string(), value.to_string()))
        })
        .collect();
    merit_messages::trace::follow(&span, &trace);
    let started = Instant::now();
    let result = next.call(req).instrument(span).await;
    let elapsed = started.elapsed();
    let status = match &result {
        Ok(response) => response.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    metrics::counter!(
        "merit_http_requests_total",
        "method" => method.clone(),
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(
        "merit_http_request_seconds",
        "method" => method.clone(),
        "route" => route.clone()
    )
    .record(elapsed.as_secs_f64());
    tracing::info!(
        target: "merit_api::access",
        request_id = %id,
        method = %req_method,
        %route,
        status,
        ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    let mut response = result?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        for made_up in ["FOO", "X1", "PROPFIND"] {
            let m = Method::from_bytes(made_up.as_bytes()).expect("a method token");
            assert_eq!(method_label(&m), "other", "{made_up}");
        }
    }
}
