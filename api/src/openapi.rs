//! The OpenAPI document at `/openapi.json`, generated from the handlers' annotations and
//! the DTO types, so it cannot drift from the code.

use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::{health, routes, ws};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "merit",
        description = "merit's REST API: users, achievements, proposals, votes, NFTs, sagas, the dead-letter queue, dynamic config, nodes; health, readiness and metrics; WebSocket notifications at /ws. User endpoints take a bearer JWT (HS256, subject = wallet address); operator endpoints take the admin token. Errors are {\"error\":{\"code\",\"message\"}}; lists are {items,page,page_size,total}."
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
        routes::config::current_config, routes::config::config_versions,
        routes::config::config_version, routes::config::config_diff,
        routes::config::change_config, routes::config::rollback_config,
        routes::admin::list_nodes, routes::admin::get_overview, routes::admin::chain_sync,
        ws::ws,
    ),
    modifiers(&Security),
    tags(
        (name = "users", description = "A user's own data"),
        (name = "proposals", description = "Governance: proposals and votes"),
        (name = "nfts", description = "Achievement NFTs"),
        (name = "sagas", description = "Cross-system operations (operators)"),
        (name = "dlq", description = "The dead-letter queue (operators)"),
        (name = "config", description = "Dynamic config: tiers, limits, rules (operators)"),
        (name = "operations", description = "Health, readiness, metrics, nodes"),
        (name = "notifications", description = "WebSocket notifications"),
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

/// The document as JSON.
pub(crate) fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_string())
}
