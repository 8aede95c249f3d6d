//! merit's faces: the REST API, health and metrics, WebSocket notifications, the
//! supervisor dashboard and service discovery.
//!
//! Owns: HTTP (actix-web) — `/api/v1` (users, proposals and votes, NFTs, sagas, the
//! dead-letter queue, config, nodes), `/health`, `/ready`, `/metrics`, `/openapi.json`,
//! `/ws` and `/dashboard`; authentication (user JWTs, the admin token); request size and
//! rate limits; the notification hub and its fan-out between nodes; node registration.
//! Guarantees: every error is JSON with a code and a message; a user reads and hears only
//! their own data; writes go in as the same envelopes any producer publishes (one path
//! in); secrets never appear in a response. Must not know: domain rules — it reads
//! projections and publishes events.

mod access;
mod auth;
mod body;
mod cached;
mod dashboard;
mod discovery;
mod error;
mod health;
mod history;
mod metrics;
mod notify;
mod openapi;
mod pagination;
mod ratelimit;
mod routes;
mod siwe;
mod spelled;
mod state;
mod tickets;
mod ws;

use std::{
    net::TcpListener,
    sync::{Arc, OnceLock},
};

use actix_web::{
    dev::ResourceDef,
    error::{JsonPayloadError, PathError, QueryPayloadError},
    http::header::{HeaderValue, ALLOW},
    middleware, web, App, HttpRequest, HttpResponse, HttpServer, ResponseError,
};

pub use auth::{sign, Credentials};
pub use discovery::{Discovery, NodeInfo};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use metrics::install_recorder;
pub use notify::{NotificationHub, NOTIFY_EXCHANGE};
pub use openapi::document as openapi_document;
pub use state::{ApiOptions, ApiState, ChainAccess, Guards, SiweOptions};

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    middleware::Next,
};

use crate::ratelimit::Limits;

fn json_error(e: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let err = match &e {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::too_large(format!("body: larger than {limit} bytes"))
        }
        JsonPayloadError::ContentType => {
            ApiError::bad_request("body: expected Content-Type: application/json")
        }
        JsonPayloadError::Deserialize(de) => ApiError::bad_request(format!("body: {de}")),
        other => ApiError::bad_request(format!("body: {other}")),
    };
    err.into()
}

fn query_error(e: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("query: {e}")).into()
}

fn path_error(e: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("path: {e}")).into()
}

/// Pages served outside the OpenAPI document, all GET.
const UNDOCUMENTED_PAGES: [&str; 3] = ["/openapi.json", "/dashboard", "/dashboard/events"];

/// The methods `path` answers (`GET, POST`), when it is a known path.
fn allowed_methods(path: &str) -> Option<&'static str> {
    static ROUTES: OnceLock<Vec<(ResourceDef, String)>> = OnceLock::new();
    ROUTES
        .get_or_init(|| {
            let mut paths: Vec<(String, Vec<&str>)> = openapi::methods_by_path()
                .into_iter()
                .chain(UNDOCUMENTED_PAGES.map(|p| (p.to_string(), vec!["GET"])))
                .collect();
            // A literal path (`/api/v1/dlq/replay`) before a pattern that also matches it
            // (`/api/v1/dlq/{id}`): it is the path that was meant.
            paths.sort_by_key(|(pattern, _)| pattern.contains('{'));
            paths
                .into_iter()
                .map(|(pattern, methods)| (ResourceDef::new(pattern), methods.join(", ")))
                .collect()
        })
        .iter()
        .find(|(def, _)| def.is_match(path))
        .map(|(_, allow)| allow.as_str())
}

/// What no route matched: 405 with `Allow` on a known path asked with another method,
/// else 404.
async fn no_route(req: HttpRequest) -> HttpResponse {
    let path = merit_messages::quote_untrusted(req.path());
    if let Some(allow) = allowed_methods(req.path()) {
        let mut response = ApiError::method_not_allowed(format!(
            "{} {path}: this path answers {allow}",
            req.method()
        ))
        .error_response();
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        return response;
    }
    ApiError::not_found(format!("no route {} {path}", req.method())).error_response()
}

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi::document())
}

/// Registers every route on `cfg` (the server and tests share this).
pub fn configure(cfg: &mut web::ServiceConfig, options: &ApiOptions) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(options.max_body_bytes)
            .error_handler(json_error),
    )
    .app_data(web::PayloadConfig::default().limit(options.max_body_bytes))
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .app_data(web::PathConfig::default().error_handler(path_error))
    .service(health::health)
    .service(health::ready)
    .service(health::metrics)
    .route("/openapi.json", web::get().to(openapi_json))
    .service(dashboard::page)
    .service(dashboard::events)
    .service(ws::ws)
    .service(
        web::scope("/api/v1")
            .service(routes::users::get_user)
            .service(routes::users::user_achievements)
            .service(routes::users::user_nfts)
            .service(routes::users::user_notifications)
            .service(routes::proposals::list_proposals)
            .service(routes::proposals::create_proposal)
            .service(routes::proposals::get_proposal)
            .service(routes::proposals::proposal_votes)
            .service(routes::proposals::cast_vote)
            .service(routes::nfts::list_nfts)
            .service(routes::nfts::get_nft)
            .service(routes::sagas::list_sagas)
            .service(routes::sagas::get_saga)
            .service(routes::sagas::retry_saga)
            .service(routes::dlq::list_dead_letters)
            .service(routes::dlq::replay_dead_letters)
            .service(routes::dlq::discard_dead_letters)
            .service(routes::dlq::get_dead_letter)
            .service(routes::dlq::replay_dead_letter)
            .service(routes::dlq::discard_dead_letter)
            .service(routes::config::current_config)
            .service(routes::config::config_versions)
            .service(routes::config::config_version)
            .service(routes::config::config_diff)
            .service(routes::config::change_config)
            .service(routes::config::rollback_config)
            .service(routes::admin::list_nodes)
            .service(routes::admin::get_overview)
            .service(routes::admin::stream_ticket)
            .service(routes::admin::chain_sync)
            .service(routes::auth::nonce)
            .service(routes::auth::login),
    )
    .default_service(web::to(no_route));
}

/// Serves the API on `listener` until the returned server is stopped. Must run inside an
/// actix System. The caller keeps the handle to stop it gracefully.
pub fn serve(listener: TcpListener, state: ApiState) -> std::io::Result<actix_web::dev::Server> {
    serve_with_metrics(listener, None, state)
}

/// The address of the separate metrics listener, when there is one.
#[derive(Debug, Clone, Copy)]
struct MetricsListener(std::net::SocketAddr);

/// With a metrics listener, `/metrics` is served there only and everything else on the
/// public listener only.
async fn split_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(metrics) = req.app_data::<web::Data<MetricsListener>>() {
        let on_metrics_listener = req.app_config().local_addr() == metrics.0;
        if on_metrics_listener != (req.path() == "/metrics") {
            let path = merit_messages::quote_untrusted(req.path());
            let response =
                ApiError::not_found(format!("no route {} {path} on this listener", req.method()))
                    .error_response();
            return Ok(req.into_response(response).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// Like [`serve`], with `/metrics` on `metrics_listener` (an internal address) instead of
/// the public listener when one is given.
pub fn serve_with_metrics(
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    state: ApiState,
) -> std::io::Result<actix_web::dev::Server> {
    let workers = state.options.workers.max(1);
    let limits = web::Data::new(Limits::new(&state.options, state.credentials.clone()));
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(web::Data::new(MetricsListener(l.local_addr()?))),
        None => None,
    };
    let data = web::Data::new(state);
    tokio::spawn(history::run_sampler(Arc::downgrade(
        &data.clone().into_inner(),
    )));
    let server = HttpServer::new(move || {
        let options = data.options.clone();
        let mut app = App::new().app_data(data.clone()).app_data(limits.clone());
        if let Some(metrics) = &metrics_addr {
            app = app.app_data(metrics.clone());
        }
        app.wrap(middleware::from_fn(split_metrics))
            .wrap(middleware::from_fn(ratelimit::limit))
            .wrap(middleware::from_fn(access::log))
            .wrap(middleware::NormalizePath::trim())
            .configure(|cfg| configure(cfg, &options))
    })
    .workers(workers)
    // Notifications are small frames written as they happen: Nagle would hold them back.
    .tcp_nodelay(true)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?;
    let server = match metrics_listener {
        Some(l) => server.listen(l)?,
        None => server,
    };
    Ok(server.run())
}
