//! Why loading settings failed.
//!
//! Every message names the key the way the operator wrote it (the environment
//! variable, or the TOML key with its file), where the value came from, the
//! value itself unless it is a secret (URLs are shown with their password
//! redacted), and what was expected. No variant ever holds a secret value, so
//! both `Display` and `Debug` are safe to log.

use std::{io, path::PathBuf};

use crate::{settings::Environment, source::Source};

/// Result of loading or validating settings.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// A reason the settings could not be loaded; the node must not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `MERIT_ENV` names no known environment.
    #[error(
        "MERIT_ENV (from environment): {value:?} is not a known environment; \
         expected one of development, test, production"
    )]
    UnknownEnvironment {
        /// The value of `MERIT_ENV` (never a secret).
        value: String,
    },

    /// The config file for the environment exists but could not be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    FileUnreadable {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// The config file is not valid TOML.
    #[error("{}: malformed TOML at line {line}, column {column}: {message}", .path.display())]
    MalformedToml {
        /// The file.
        path: PathBuf,
        /// 1-based line of the first error.
        line: usize,
        /// 1-based column (in characters) of the first error.
        column: usize,
        /// The parser's description, without the quoted source line.
        message: String,
    },

    /// A secret was written into a config file; secrets come only from the
    /// environment or a secret file, so config files can be committed.
    #[error(
        "{key} in {}: secrets are not read from config files; set {var} or {file_var} instead",
        .path.display()
    )]
    SecretInFile {
        /// The TOML key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The variable that may hold the secret.
        var: &'static str,
        /// The variable that may name a file holding the secret.
        file_var: &'static str,
    },

    /// Both `MERIT_X` and `MERIT_X_FILE` are set, so the value is ambiguous.
    #[error("{var} and {file_var} are both set; set only one of them")]
    ConflictingSources {
        /// The variable holding the value itself.
        var: &'static str,
        /// The variable naming a file that holds the value.
        file_var: &'static str,
    },

    /// `MERIT_X_FILE` names a file that could not be read.
    #[error("{file_var} (from environment): cannot read {}: {source}", .path.display())]
    SecretFileUnreadable {
        /// The `_FILE` variable.
        file_var: &'static str,
        /// The file it names.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// A value has the wrong shape or is out of range.
    #[error(
        "{name} ({}): {} {problem}; expected {expected}",
        .origin.as_origin(),
        shown(.value)
    )]
    InvalidValue {
        /// The key as the operator wrote it: the environment variable for
        /// values from the environment, the TOML key for file values.
        name: &'static str,
        /// Where the value came from.
        origin: Source,
        /// The offending value as shown to humans: `None` for secrets, URLs
        /// with their password redacted.
        value: Option<String>,
        /// What is wrong, phrased after the value ("is not a socket address").
        problem: &'static str,
        /// What would have been accepted.
        expected: String,
    },

    /// A setting without a default in this environment is not set.
    #[error("{var} is required in {env}; set {var}{}", or_file(*.file_var))]
    Missing {
        /// The variable that may hold the value.
        var: &'static str,
        /// The variable that may name a file holding the value, if any.
        file_var: Option<&'static str>,
        /// The environment being loaded.
        env: Environment,
    },

    /// Production was given a secret equal to its public development default.
    #[error(
        "{name} ({}): the value is the built-in development default, which is public; \
         production needs its own value (set {var} or {file_var})",
        .origin.as_origin()
    )]
    DevelopmentSecretInProduction {
        /// The key as the operator wrote it.
        name: &'static str,
        /// Where the value came from.
        origin: Source,
        /// The variable that may hold the secret.
        var: &'static str,
        /// The variable that may name a file holding the secret.
        file_var: &'static str,
    },

    /// Production would run on the development SQLite database.
    #[error(
        "MERIT_DATABASE_URL must be set in production: the built-in default {default:?} is \
         for development only; expected a postgres:// URL (or an explicit sqlite: path)"
    )]
    DevelopmentDatabaseInProduction {
        /// The built-in default that was refused.
        default: &'static str,
    },

    /// Two sources of the minter key are set; exactly one may be.
    #[error(
        "{first} and {second} are both set; the minter key comes from exactly one source: \
         an encrypted keystore (MERIT_MINTER_KEYSTORE), an external signer \
         (MERIT_MINTER_SIGNER_URL) or a plaintext key (MERIT_MINTER_KEY)"
    )]
    ConflictingMinterSources {
        /// The first source, as the operator wrote it.
        first: &'static str,
        /// The second source.
        second: &'static str,
    },

    /// Half of a minter key source is set.
    #[error("{set} is set but {missing} is not; set both (or neither)")]
    IncompleteMinterSource {
        /// What is set, as the operator wrote it.
        set: &'static str,
        /// The variable that must go with it.
        missing: &'static str,
    },

    /// Production has no source for the minter key.
    #[error(
        "the minter key is required in production; set MERIT_MINTER_KEYSTORE with \
         MERIT_MINTER_KEYSTORE_PASSWORD_FILE (an encrypted keystore), or \
         MERIT_MINTER_SIGNER_URL with MERIT_MINTER_ADDRESS (an external signer), or \
         MERIT_MINTER_KEY or MERIT_MINTER_KEY_FILE with MERIT_MINTER_ALLOW_PLAINTEXT_KEY=true"
    )]
    MissingMinter,

    /// Production was given a plaintext minter key without the explicit override.
    #[error(
        "{name} ({}): production refuses a plaintext minter key; hold it in an encrypted \
         keystore (MERIT_MINTER_KEYSTORE + MERIT_MINTER_KEYSTORE_PASSWORD_FILE) or an \
         external signer (MERIT_MINTER_SIGNER_URL + MERIT_MINTER_ADDRESS), or accept the \
         risk with MERIT_MINTER_ALLOW_PLAINTEXT_KEY=true",
        .origin.as_origin()
    )]
    PlaintextMinterKeyInProduction {
        /// The key as the operator wrote it.
        name: &'static str,
        /// Where the value came from.
        origin: Source,
    },

    /// A `MERIT_*` variable is not valid Unicode.
    #[error("{var} is not valid Unicode")]
    NotUnicode {
        /// The variable's name.
        var: String,
    },
}

/// How an offending value appears in a message: quoted, or withheld if secret.
fn shown(value: &Option<String>) -> String {
    match value {
        Some(value) => format!("{value:?}"),
        None => "the value (secret, not shown)".to_owned(),
    }
}

fn or_file(file_var: Option<&str>) -> String {
    file_var
        .map(|file_var| format!(" or {file_var}"))
        .unwrap_or_default()
}
