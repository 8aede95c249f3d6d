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

    /// What a `tracing_subscriber::fmt` subscriber writes (no colour, no time), spans as
    /// they open included, kept for the test to read.
    mod capture {
        use std::{
            io,
            sync::{Arc, Mutex, PoisonError},
        };

        use tracing_subscriber::fmt::{format::FmtSpan, MakeWriter};

        #[derive(Clone, Default)]
        pub(super) struct Lines(Arc<Mutex<Vec<u8>>>);

        impl Lines {
            /// A subscriber writing here.
            pub(super) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
                tracing_subscriber::fmt()
                    .with_writer(self.clone())
                    .with_ansi(false)
                    .without_time()
                    .with_span_events(FmtSpan::NEW)
                    .finish()
            }

            /// Everything written.
            pub(super) fn all(&self) -> String {
                let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                String::from_utf8_lossy(&bytes).into_owned()
            }

            /// The lines of events at `target` outside any span (`LEVEL target: ...`).
            pub(super) fn of(&self, target: &str) -> Vec<String> {
                let prefix = format!("{target}: ");
                self.all()
                    .lines()
                    .filter(|l| {
                        l.trim_start()
                            .split_once(' ')
                            .is_some_and(|(_, rest)| rest.trim_start().starts_with(&prefix))
                    })
                    .map(str::to_owned)
                    .collect()
            }
        }

        impl io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let mut bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
                bytes.extend_from_slice(buf);
                Ok(buf.len())
            }

            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        impl MakeWriter<'_> for Lines {
            type Writer = Lines;

            fn make_writer(&self) -> Lines {
                self.clone()
            }
        }
    }

    #[actix_web::test]
    async fn the_access_line_has_method_route_and_status_and_no_token_or_query() {
        use actix_web::{http::StatusCode, test, web, App, HttpResponse};

        let lines = capture::Lines::default();
        let _guard = tracing::subscriber::set_default(lines.subscriber());
        let app = test::init_service(App::new().wrap(actix_web::middleware::from_fn(log)).route(
            "/api/v1/things/{id}",
            web::get().to(|| async { HttpResponse::NotFound().finish() }),
        ))
        .await;
        let request = test::TestRequest::get()
            .uri("/api/v1/things/42?ticket=query-secret-123&token=query-secret-456")
            .insert_header(("authorization", "Bearer bearer-secret-789"))
            .insert_header((REQUEST_ID, "req-1"))
            .to_request();
        let response = test::call_service(&app, request).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok()),
            Some("req-1"),
            "the request id is echoed"
        );
        let access = lines.of("merit_api::access");
        assert_eq!(access.len(), 1, "one access line per request: {access:?}");
        let line = &access[0];
        for needed in [
            "method=\"GET\"",
            "route=/api/v1/things/{id}",
            "status=404",
            "request_id=req-1",
        ] {
            assert!(line.contains(needed), "{line:?} has {needed:?}");
        }
        let all = lines.all();
        for secret in [
            "bearer-secret-789",
            "query-secret-123",
            "query-secret-456",
            "ticket=",
            "/things/42",
        ] {
            assert!(!all.contains(secret), "{secret:?} is logged: {all}");
        }
    }
}
