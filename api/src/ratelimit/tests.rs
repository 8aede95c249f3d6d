//! Unit specs of the rate limiter: the token buckets, the client key, trusted proxies,
//! and the middleware over a one-route app (429 with a JSON body and `Retry-After`).

use super::*;
use actix_web::http::header::HeaderName;

#[test]
fn a_burst_is_allowed_then_refused_and_clients_are_separate() {
    let limiter = RateLimiter::new(1, 3);
    assert!((0..3).all(|_| limiter.allow("a")));
    assert!(!limiter.allow("a"));
    assert!(limiter.allow("b"));
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_static(k),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    map
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

fn proxies(list: &[&str]) -> TrustedProxies {
    TrustedProxies::new(
        &list.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        "x-forwarded-for",
    )
}

#[test]
fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let none = proxies(&[]);
    let h = headers(&[
        ("x-forwarded-for", "198.51.100.1"),
        ("forwarded", "for=198.51.100.2"),
    ]);
    assert_eq!(none.client(ip("203.0.113.9"), &h), ip("203.0.113.9"));
    let other = proxies(&["10.0.0.0/8"]);
    assert_eq!(other.client(ip("203.0.113.9"), &h), ip("203.0.113.9"));
}

#[test]
fn the_right_most_untrusted_hop_is_the_client() {
    let p = proxies(&["10.0.0.0/8", "::1"]);
    let h = headers(&[("x-forwarded-for", "192.0.2.66, 198.51.100.7, 10.1.2.3")]);
    assert_eq!(
        p.client(ip("10.0.0.1"), &h),
        ip("198.51.100.7"),
        "left part is the client's word"
    );
    let h = headers(&[
        ("x-forwarded-for", "198.51.100.7"),
        ("x-forwarded-for", "10.9.9.9"),
    ]);
    assert_eq!(
        p.client(ip("::1"), &h),
        ip("198.51.100.7"),
        "several headers form one list"
    );
    let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
    assert_eq!(
        p.client(ip("10.0.0.1"), &h),
        ip("10.1.1.1"),
        "all trusted: the left-most"
    );
    let h = headers(&[]);
    assert_eq!(
        p.client(ip("10.0.0.1"), &h),
        ip("10.0.0.1"),
        "no header: the proxy"
    );
    let h = headers(&[("x-forwarded-for", "198.51.100.7, garbage")]);
    assert_eq!(
        p.client(ip("10.0.0.1"), &h),
        ip("10.0.0.1"),
        "an unreadable hop stops the walk"
    );
    let h = headers(&[("x-forwarded-for", "198.51.100.7:4711")]);
    assert_eq!(
        p.client(ip("::ffff:10.0.0.1"), &h),
        ip("198.51.100.7"),
        "mapped peer, port"
    );
}

#[test]
fn only_the_configured_header_is_read() {
    // The proxy appends X-Forwarded-For; a Forwarded the client wrote passes through.
    let xff = proxies(&["10.0.0.0/8"]);
    let h = headers(&[
        ("forwarded", "for=192.0.2.1"),
        ("x-forwarded-for", "198.51.100.7"),
    ]);
    assert_eq!(xff.client(ip("10.0.0.2"), &h), ip("198.51.100.7"));
    let rfc = TrustedProxies::new(&["10.0.0.0/8".to_string()], "forwarded");
    let h = headers(&[
        ("forwarded", "for=198.51.100.8"),
        ("x-forwarded-for", "192.0.2.1"),
    ]);
    assert_eq!(rfc.client(ip("10.0.0.2"), &h), ip("198.51.100.8"));
    let h = headers(&[("x-forwarded-for", "192.0.2.1")]);
    assert_eq!(
        rfc.client(ip("10.0.0.2"), &h),
        ip("10.0.0.2"),
        "no Forwarded: the proxy"
    );
}

#[test]
fn forwarded_is_parsed_per_rfc_7239() {
    let p = TrustedProxies::new(&["10.0.0.0/8".to_string()], "forwarded");
    let h = headers(&[
        (
            "forwarded",
            r#"for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711""#,
        ),
        ("x-forwarded-for", "198.51.100.1"),
    ]);
    assert_eq!(p.client(ip("10.0.0.2"), &h), ip("2001:db8:cafe::17"));
    let h = headers(&[("forwarded", "for=unknown")]);
    assert_eq!(p.client(ip("10.0.0.2"), &h), ip("10.0.0.2"));
}

#[test]
fn ipv6_clients_are_keyed_by_their_64() {
    assert_eq!(client_key(ip("2001:db8:1:2::1")), "2001:db8:1:2::/64");
    assert_eq!(
        client_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
        "2001:db8:1:2::/64"
    );
    assert_ne!(
        client_key(ip("2001:db8:1:3::1")),
        client_key(ip("2001:db8:1:2::1"))
    );
    assert_eq!(client_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
    assert_eq!(client_key(ip("192.0.2.1")), "192.0.2.1");
}

#[test]
fn cidrs_parse_and_match() {
    let c = Cidr::parse("10.0.0.0/8").expect("v4 block");
    assert!(c.contains(ip("10.255.0.1")));
    assert!(!c.contains(ip("11.0.0.1")));
    assert!(!c.contains(ip("::1")));
    assert!(Cidr::parse("0.0.0.0/0")
        .expect("all")
        .contains(ip("1.2.3.4")));
    assert!(Cidr::parse("fd00::/8").expect("v6").contains(ip("fd12::1")));
    assert!(Cidr::parse("127.0.0.1")
        .expect("one")
        .contains(ip("::ffff:127.0.0.1")));
    assert!(Cidr::parse("10.0.0.0/33").is_none());
    assert!(Cidr::parse("nope").is_none());
}

/// The middleware over a one-route app, with these budgets.
mod middleware {
    use actix_web::{http::StatusCode, test, web, App, HttpResponse};

    use super::*;
    use crate::state::ApiOptions;

    const JWT_SECRET: &[u8] = b"ratelimit-test-secret-0123456789abcdef";

    fn limits(burst: u32, user_burst: u32) -> Limits {
        let options = ApiOptions {
            rate_per_sec: 1,
            rate_burst: burst,
            user_rate_per_sec: 1,
            user_rate_burst: user_burst,
            ..ApiOptions::default()
        };
        Limits::new(&options, Credentials::new(JWT_SECRET, b"admin-token"))
    }

    macro_rules! app {
        ($limits:expr) => {
            test::init_service(
                App::new()
                    .app_data(web::Data::new($limits))
                    .wrap(actix_web::middleware::from_fn(limit))
                    .route(
                        "/api/v1/things",
                        web::get().to(|| async { HttpResponse::Ok().finish() }),
                    )
                    .route(
                        "/health",
                        web::get().to(|| async { HttpResponse::Ok().finish() }),
                    ),
            )
            .await
        };
    }

    fn from(peer: &str, path: &str) -> test::TestRequest {
        test::TestRequest::get()
            .uri(path)
            .peer_addr(peer.parse().expect("a socket address"))
    }

    /// Asserts the 429 the limiter answers: JSON `rate_limited` naming `needle`, and
    /// `Retry-After`.
    async fn assert_refused(response: ServiceResponse<impl MessageBody>, needle: &str) {
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        assert_eq!(
            response
                .headers()
                .get(actix_web::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        let body: serde_json::Value = test::read_body_json(response).await;
        assert_eq!(body["error"]["code"], "rate_limited", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{message:?} names {needle:?}");
    }

    #[actix_web::test]
    async fn the_request_over_a_client_s_burst_is_429_with_json_and_retry_after() {
        let app = app!(limits(3, 100));
        for i in 0..3 {
            let response = test::call_service(
                &app,
                from("203.0.113.9:4000", "/api/v1/things").to_request(),
            )
            .await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "request {i} is within the burst"
            );
        }
        let over = test::call_service(
            &app,
            from("203.0.113.9:4001", "/api/v1/things").to_request(),
        )
        .await;
        assert_refused(over, "203.0.113.9").await;
        let other = test::call_service(
            &app,
            from("198.51.100.7:4000", "/api/v1/things").to_request(),
        )
        .await;
        assert_eq!(
            other.status(),
            StatusCode::OK,
            "another client has its own bucket"
        );
        let probe =
            test::call_service(&app, from("203.0.113.9:4002", "/health").to_request()).await;
        assert_eq!(
            probe.status(),
            StatusCode::OK,
            "the probes are never limited"
        );
    }

    #[actix_web::test]
    async fn a_user_s_budget_holds_whatever_address_the_requests_come_from() {
        let app = app!(limits(100, 2));
        let wallet = "0x00000000000000000000000000000000000000aa";
        let token = crate::auth::sign(JWT_SECRET, wallet, 3600);
        let request = |peer: &str| {
            from(peer, "/api/v1/things")
                .insert_header(("authorization", format!("Bearer {token}")))
                .to_request()
        };
        for peer in ["192.0.2.1:1000", "192.0.2.2:1000"] {
            let response = test::call_service(&app, request(peer)).await;
            assert_eq!(response.status(), StatusCode::OK, "{peer}");
        }
        let over = test::call_service(&app, request("192.0.2.3:1000")).await;
        assert_refused(over, wallet).await;
    }
}
