//! merit's settings: layered configuration, secrets and environments.
//!
//! Owns: the typed [`Settings`] a node runs with, built from built-in defaults
//! < `<config_dir>/<env>.toml` < `MERIT_*` environment variables, with the
//! environment (development, test, production) chosen by `MERIT_ENV`; secrets
//! from variables or `MERIT_*_FILE` files; the provenance of every value; and
//! the redacted renderings used by `merit config show`.
//!
//! Guarantees: loading either yields settings that passed every check or fails
//! with an error naming the key, its source, the value (unless secret) and what
//! was expected. Secrets and URL passwords never appear in `Debug`, `Display`,
//! serialization, provenance, warnings or errors. Production refuses missing
//! secrets, the public development secrets and the development database.
//! [`Settings::load`] reads only the variables it is given, so tests run in
//! parallel; only [`Settings::from_process_env`] reads the process environment.
//!
//! Must not know: how the settings are used — brokers, databases, chains,
//! actors or the HTTP API — nor the dynamic, versioned rules stored in the
//! database.

mod error;
mod file;
mod keys;
mod load;
mod resolve;
mod secret;
mod settings;
mod show;
mod source;

pub use error::{ConfigError, Result};
pub use load::{LoadOptions, Loaded};
pub use secret::{Secret, SecretUrl};
pub use settings::{
    ActorSettings, CacheSettings, ChainSettings, Environment, LogFormat, LogSettings,
    MailboxSettings, Settings,
};
pub use show::{render_show, to_redacted_json};
pub use source::{Source, Warning};
