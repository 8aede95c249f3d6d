//! The entry point: choose the environment, stack the layers, resolve, and
//! record where every value came from.
//!
//! Flow: `MERIT_ENV` picks the environment → built-in defaults →
//! `<config_dir>/<env>.toml` if it exists → `MERIT_*` variables and
//! `MERIT_*_FILE` secret files → typed checks and production policy. The
//! variables are passed in ([`LoadOptions::env_vars`]), so loading is a pure
//! function of its inputs and the files it names; only
//! [`Settings::from_process_env`], called by the binary, reads the process
//! environment.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use crate::{
    error::{ConfigError, Result},
    file,
    keys::{self, ENV_PREFIX, ENV_VAR},
    resolve,
    settings::{Environment, Settings},
    source::{Layers, Source, Warning},
};

/// The variable, when present, from which the default node id is derived.
const HOSTNAME_VAR: &str = "HOSTNAME";

/// Inputs of [`Settings::load`].
///
/// `Debug` lists the variables' names only: their values may be secrets.
#[derive(Clone, Default)]
pub struct LoadOptions {
    /// Directory holding `development.toml`, `test.toml` and
    /// `production.toml`; the binary passes `config` (relative to its
    /// working directory) unless told otherwise.
    pub config_dir: PathBuf,
    /// The environment variables to read: `MERIT_*`, plus `HOSTNAME` for the
    /// default node id. Other variables are ignored.
    pub env_vars: BTreeMap<String, String>,
}

impl LoadOptions {
    /// Options reading files from `config_dir`, with no variables.
    pub fn new(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            config_dir: config_dir.into(),
            env_vars: BTreeMap::new(),
        }
    }

    /// Adds one variable.
    #[must_use]
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env_vars.insert(name.into(), value.into());
        self
    }

    /// Adds variables, replacing earlier ones of the same name.
    #[must_use]
    pub fn vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.env_vars.extend(
            vars.into_iter()
                .map(|(name, value)| (name.into(), value.into())),
        );
        self
    }
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("config_dir", &self.config_dir)
            .field("env_vars", &self.env_vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Loaded settings with their provenance and the warnings to log.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective settings.
    pub settings: Settings,
    /// Where each key's value came from, by dotted key (`env`, `http_addr`,
    /// `mailbox.shards`, …). Every key is present; an unset optional key has
    /// [`Source::Default`].
    pub provenance: BTreeMap<&'static str, Source>,
    /// Harmless oddities (unknown `MERIT_*` variables, unknown file keys).
    pub warnings: Vec<Warning>,
    /// The config file that was applied, `None` when there was none.
    pub config_file: Option<PathBuf>,
}

impl Loaded {
    /// Where the value of the dotted `key` came from.
    pub fn source(&self, key: &str) -> Option<&Source> {
        self.provenance.get(key)
    }
}

impl Settings {
    /// Loads the settings described by `options`, touching no process state
    /// except reading the config file and any `MERIT_*_FILE` files.
    ///
    /// Fails on the first invalid value, naming the key, where the value came
    /// from, the value unless it is secret, and what was expected.
    pub fn load(options: LoadOptions) -> Result<Loaded> {
        let LoadOptions {
            config_dir,
            env_vars,
        } = options;
        let (env, env_source) = match env_vars.get(ENV_VAR) {
            Some(value) => (
                value.parse::<Environment>()?,
                Source::Env(ENV_VAR.to_owned()),
            ),
            None => (Environment::Development, Source::Default),
        };
        let mut warnings = Vec::new();
        let mut layers = Layers::defaults(env, env_vars.get(HOSTNAME_VAR).map(String::as_str));
        let path = config_dir.join(format!("{env}.toml"));
        let config_file = file::apply(&path, &mut layers, &mut warnings)?.then_some(path);
        layers.apply_env(&env_vars, &mut warnings)?;
        let settings = resolve::settings(env, &layers)?;
        if env.is_production() && settings.minter.key().is_some() {
            warnings.push(Warning::PlaintextMinterKeyInProduction);
        }

        let mut provenance = BTreeMap::from([("env", env_source)]);
        for &key in keys::ALL {
            let source = layers
                .get(key)
                .map_or(Source::Default, |raw| raw.source.clone());
            provenance.insert(key.path, source);
        }
        Ok(Loaded {
            settings,
            provenance,
            warnings,
            config_file,
        })
    }

    /// Loads with the process's `MERIT_*` variables (and `HOSTNAME`): the
    /// binary's entry point. Library code and tests call [`Settings::load`].
    pub fn from_process_env(config_dir: &Path) -> Result<Loaded> {
        let mut env_vars = BTreeMap::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(ENV_PREFIX) {
                let value = value.into_string().map_err(|_| ConfigError::NotUnicode {
                    var: name.to_owned(),
                })?;
                env_vars.insert(name.to_owned(), value);
            } else if name == HOSTNAME_VAR {
                if let Ok(value) = value.into_string() {
                    env_vars.insert(name.to_owned(), value);
                }
            }
        }
        Self::load(LoadOptions {
            config_dir: config_dir.to_path_buf(),
            env_vars,
        })
    }
}
