//! The OpenAPI document at `/openapi.json`, generated from the handlers' annotations and
//! the DTO types, so it cannot drift from the code.

use utoipa::{
    openapi::{
        header::Header,
        path::{Operation, PathItem},
        schema::{ObjectBuilder, Ref, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        Content, ContentBuilder, RefOr, Response, ResponseBuilder,
    },
    Modify, OpenApi,
};

use crate::{health, routes, ws};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "merit",
        description = "merit's REST API: users, achievements, proposals, votes, NFTs, sagas, the dead-letter queue, dynamic config, nodes; health, readiness and metrics; WebSocket notifications at /ws. User endpoints take a bearer JWT (HS256, subject = wallet address), which a wallet gets by signing in with Ethereum (POST /api/v1/auth/nonce, then POST /api/v1/auth/login); operator endpoints take the admin token. Errors are {\"error\":{\"code\",\"message\"}}; lists are {items,page,page_size,total}."
    ),
    paths(
        health::health, health::ready, health::metrics,
        routes::users::get_user, routes::users::user_achievements, routes::users::user_nfts,
        routes::users::user_notifications,
        routes::proposals::list_proposals, routes::proposals::get_proposal,
        routes::proposals::proposal_votes, routes::proposals::create_proposal,
        routes::proposals::cast_vote,
        routes::nfts::list_nfts, routes::nfts::get_nft,
        routes::sagas::list_sagas, routes::sagas::get_saga, routes::sagas::retry_saga,
        routes::dlq::list_dead_letters, routes::dlq::get_dead_letter,
        routes::dlq::replay_dead_letter, routes::dlq::discard_dead_letter,
        routes::dlq::replay_dead_letters, routes::dlq::discard_dead_letters,
        routes::config::current_config, routes::config::config_versions,
        routes::config::config_version, routes::config::config_diff,
        routes::config::change_config, routes::config::rollback_config,
        routes::admin::list_nodes, routes::admin::get_overview, routes::admin::chain_sync,
        routes::admin::stream_ticket,
        routes::auth::nonce, routes::auth::login,
        ws::ws,
    ),
    components(schemas(ws::WsFrame)),
    modifiers(&Security, &RateLimited, &Internal),
    tags(
        (name = "users", description = "A user's own data"),
        (name = "proposals", description = "Governance: proposals and votes"),
        (name = "nfts", description = "Achievement NFTs"),
        (name = "sagas", description = "Cross-system operations (operators)"),
        (name = "dlq", description = "Dead letters (operators): recorded from the dead-letter queue, paged, replayed and discarded"),
        (name = "config", description = "Dynamic config: tiers, limits, rules (operators)"),
        (name = "operations", description = "Health, readiness, metrics, nodes"),
        (name = "notifications", description = "WebSocket notifications"),
        (name = "auth", description = "Sign-In with Ethereum (EIP-4361): a wallet signs a message and gets a user token"),
    )
)]
pub(crate) struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A user JWT (HS256 with MERIT_JWT_SECRET, sub = wallet); the admin token is accepted too",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("MERIT_ADMIN_TOKEN"))
                    .build(),
            ),
        );
    }
}

/// Documents the rate limiter's 429 on every operation it guards (all but the probes):
/// the middleware answers it before any handler runs.
struct RateLimited;

impl Modify for RateLimited {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let response = ResponseBuilder::new()
            .description("Over this client's request budget; retry after `Retry-After` seconds")
            .header(
                "Retry-After",
                Header::new(ObjectBuilder::new().schema_type(Type::Integer)),
            )
            .content("application/json", error_body())
            .build();
        let guarded = |path: &str| !crate::ratelimit::EXEMPT.contains(&path);
        answer_everywhere(openapi, "429", response.into(), guarded);
    }
}

/// Documents the 500 any operation can answer: a stored row the API will not serve (a
/// value merit does not know, written by hand or by another release) or another fault
/// that retrying will not mend. The body says what failed; the node's log has the rest.
struct Internal;

impl Modify for Internal {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let response = ResponseBuilder::new()
            .description(
                "An internal error, e.g. a stored row merit cannot read back; the node's log names it",
            )
            .content("application/json", error_body())
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .responses
            .insert("Internal".to_string(), response.into());
        let shared = Ref::from_response_name("Internal").into();
        answer_everywhere(openapi, "500", shared, |_| true);
    }
}

/// The JSON error body every error answer carries.
fn error_body() -> Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build()
}

/// Adds `response` as the `status` answer of every operation on a path `on` accepts,
/// unless the operation documents that status itself.
fn answer_everywhere(
    openapi: &mut utoipa::openapi::OpenApi,
    status: &str,
    response: RefOr<Response>,
    on: impl Fn(&str) -> bool,
) {
    for (path, item) in &mut openapi.paths.paths {
        if !on(path) {
            continue;
        }
        for (_, operation) in operations(item) {
            operation
                .responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| response.clone());
        }
    }
}

/// A path item's operations with their methods.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("GET", &mut item.get),
        ("PUT", &mut item.put),
        ("POST", &mut item.post),
        ("DELETE", &mut item.delete),
        ("OPTIONS", &mut item.options),
        ("HEAD", &mut item.head),
        ("PATCH", &mut item.patch),
        ("TRACE", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|o| (method, o)))
}

/// Every documented path (its `{name}` segments read the same in actix's patterns) with
/// the methods it answers, for the `Allow` of a 405.
pub(crate) fn methods_by_path() -> Vec<(String, Vec<&'static str>)> {
    ApiDoc::openapi()
        .paths
        .paths
        .into_iter()
        .map(|(path, mut item)| {
            let methods = operations(&mut item).map(|(method, _)| method).collect();
            (path, methods)
        })
        .collect()
}

/// The document as JSON (served at `/openapi.json`; `merit schema --openapi` writes it to
/// `docs/openapi.json`, and a test holds the committed file to it).
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_string())
}
