//! The HTTP API in process, with no service running: the fast tier of the API tests.
//!
//! Each test builds the `ApiState` the way `merit serve` does (src/serve.rs), but on the
//! in-process transport and a migrated SQLite file of its own, with a real in-process
//! `Node` (its actors, consumers, relay and timers) behind it, and drives the routes
//! `merit_api::configure` registers through `actix_web::test`. It proves that:
//! - `/health` and `/openapi.json` answer; an unknown path is a JSON 404 and a known path
//!   asked with another method a JSON 405 with `Allow` ([`probes`]);
//! - `/api/v1` refuses a missing, forged or expired credential (401), a user token on an
//!   operator endpoint, the admin token where a user must act, and a user reading another
//!   user's data (403), each with a JSON body saying what is wrong ([`auth`]);
//! - bad input is a 400 naming the field (a wallet address, a filter value outside its
//!   enum, a vote choice, a voting window, an unknown body field, malformed JSON), and a
//!   body over the limit a 413 ([`errors`]);
//! - a proposal created and a vote cast through the API are published on the in-process
//!   transport (read back off it: type, id, shard key, payload) and applied by the node's
//!   ProposalActor, while a refused write publishes nothing ([`proposals`]);
//! - a stored row whose state is outside its enum is a 500 saying a stored row is corrupt,
//!   never served ([`stored`]);
//! - neither the admin token nor the JWT secret appears in any response body ([`probes`]),
//!   nor a failing dependency's error text in a 503 ([`unavailable`]).
//!
//! One test binary (each more costs a link): the modules share [`common`].
//!
//! Not covered here (the real server installs them in `serve_with_metrics`, and they are
//! private to the crate): the rate limits and the access log / request id middleware.
//! Unit tests in `src/ratelimit.rs` and `src/access.rs` run them over a small `App`, and
//! tests/api/ against a real node.

mod auth;
mod common;
mod errors;
mod probes;
mod proposals;
mod stored;
mod unavailable;
