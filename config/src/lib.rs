//! merit's configuration: the node's layered settings and secrets, and the dynamic
//! config document (benefit tiers, vote-weight limits, achievement rules) with its rule
//! language.
//!
//! Owns:
//! - the typed [`Settings`] a node starts with, built from built-in defaults
//!   < `<config_dir>/<env>.toml` < `MERIT_*` environment variables, with the
//!   environment (development, test, production) chosen by `MERIT_ENV`; secrets
//!   from variables or `MERIT_*_FILE` files; the provenance of every value; and
//!   the redacted renderings used by `merit config show`;
//! - the dynamic config ([`dynamic`]): one JSON document, stored in numbered versions
//!   by the actors' config center and applied without a restart — its strict parser
//!   ([`DynamicConfig::parse`]), the vote-weight arithmetic it defines and the
//!   [`ConfigHandle`] through which a node swaps the active version;
//! - the achievement rule language ([`rules`]): parsing, validation, the facts a user
//!   accumulates and deterministic evaluation.
//!
//! Guarantees: loading either yields settings that passed every check or fails
//! with an error naming the key, its source, the value (unless secret) and what
//! was expected. Secrets and URL passwords never appear in `Debug`, `Display`,
//! serialization, provenance, warnings or errors. Production refuses missing
//! secrets, the public development secrets and the development database. The minter
//! key comes from exactly one of a plaintext key, an encrypted keystore or an external
//! signer ([`MinterSource`]); production refuses a plaintext one unless
//! `MERIT_MINTER_ALLOW_PLAINTEXT_KEY=true` (and then warns).
//! [`Settings::load`] reads only the variables it is given, so tests run in
//! parallel; only [`Settings::from_process_env`] reads the process environment.
//! A dynamic config document is accepted whole or refused with a [`rules::RuleError`]
//! naming the JSON path and the reason; the rules and the dynamic config are pure and
//! deterministic (no I/O, no clock, no randomness), which is what lets the fuzz
//! targets build this crate without the actor runtime.
//!
//! Must not know: how the settings are used — brokers, databases, chains,
//! actors or the HTTP API — nor where dynamic config versions are stored or how
//! they reach a node (the config center in `merit-actors`).

pub mod dynamic;
mod error;
mod file;
mod keys;
mod load;
mod node_id;
mod resolve;
pub mod rules;
mod secret;
mod settings;
mod show;
mod source;

pub use dynamic::{ConfigHandle, DynamicConfig};
pub use error::{ConfigError, Result};
pub use load::{LoadOptions, Loaded};
pub use secret::{Secret, SecretUrl};
pub use settings::{
    ActorSettings, CacheSettings, ChainSettings, ClusterSettings, Environment, HttpSettings,
    LogFormat, LogSettings, MailboxSettings, MinterSource, OtelSettings, RetentionSettings,
    Settings,
};
pub use show::{render_show, to_redacted_json};
pub use source::{Source, Warning};
