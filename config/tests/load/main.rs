//! Loading settings through the public API: layering and provenance, every
//! class of bad input, secret handling and the `config show` renderings.
//!
//! Each test passes its variables explicitly and uses its own temporary
//! config directory, so the tests run in parallel.

mod errors;
mod layering;
mod minter;
mod secrets;
mod show;

use std::path::Path;

use merit_config::{ConfigError, LoadOptions, Loaded, Settings};
use tempfile::TempDir;

/// A distinctive secret that must never show up in any rendering.
pub(crate) const SECRET: &str = "S3CRET-VALUE-xyz";

/// A valid production minter key that is not the development one.
pub(crate) const PRODUCTION_MINTER_KEY: &str =
    "0x1111111111111111111111111111111111111111111111111111111111111111";

/// A config directory holding `files` as `(environment, toml)` pairs.
pub(crate) fn config_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    for (env, toml) in files {
        std::fs::write(dir.path().join(format!("{env}.toml")), toml)
            .expect("the temporary directory is writable");
    }
    dir
}

/// Writes `content` to a file named `name` in `dir` and returns its path.
pub(crate) fn write_file(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("the temporary directory is writable");
    path.to_str().expect("temporary paths are UTF-8").to_owned()
}

pub(crate) fn try_load(dir: &Path, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    Settings::load(LoadOptions::new(dir).vars(vars.iter().copied()))
}

pub(crate) fn load(dir: &Path, vars: &[(&str, &str)]) -> Loaded {
    try_load(dir, vars).expect("these settings are valid")
}

pub(crate) fn load_err(dir: &Path, vars: &[(&str, &str)]) -> ConfigError {
    try_load(dir, vars).expect_err("these settings are invalid")
}

/// A complete, valid production environment (with a DSN password).
pub(crate) fn production_vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("MERIT_ENV", "production"),
        (
            "MERIT_DATABASE_URL",
            "postgres://merit:S3CRET-VALUE-xyz@db:5432/merit",
        ),
        ("MERIT_ADMIN_TOKEN", "prod-admin-token-S3CRET-VALUE-xyz"),
        (
            "MERIT_JWT_SECRET",
            "prod-jwt-secret-S3CRET-VALUE-xyz-0123456789",
        ),
        ("MERIT_MINTER_KEY", PRODUCTION_MINTER_KEY),
        ("MERIT_MINTER_ALLOW_PLAINTEXT_KEY", "true"),
    ]
}

/// `production_vars` without `name`, plus `extra`.
pub(crate) fn production_vars_with<'a>(
    without: &str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut vars: Vec<_> = production_vars()
        .into_iter()
        .filter(|(k, _)| *k != without)
        .collect();
    vars.extend_from_slice(extra);
    vars
}
