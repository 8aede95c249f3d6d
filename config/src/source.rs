//! Where values come from: the layers (built-in defaults < the environment's
//! TOML file < `MERIT_*` variables) and the [`Source`] each value remembers.
//!
//! A layer replaces the whole value of each key it sets; nothing merges below
//! key level. Values stay raw here (text, or an integer from TOML); parsing and
//! validation happen once, on the winning value, in `resolve`, so an error can
//! name exactly the layer that supplied the bad value.

use std::{
    collections::{BTreeMap, HashMap},
    fmt, fs,
    path::PathBuf,
};

use crate::{
    error::{ConfigError, Result},
    keys::{self, Key, ENV_PREFIX},
    settings::Environment,
};

/// Where the effective value of a key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// merit's built-in default.
    Default,
    /// The environment's TOML file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A file named by a `MERIT_*_FILE` variable.
    SecretFile(PathBuf),
}

impl Source {
    /// How an error message says where a value came from.
    pub(crate) fn as_origin(&self) -> String {
        match self {
            Self::Default => "built-in default".to_owned(),
            Self::File(path) => format!("from {}", path.display()),
            Self::Env(_) => "from environment".to_owned(),
            Self::SecretFile(path) => format!("from file {}", path.display()),
        }
    }
}

/// How `config show` labels a value's source: `default`, `file <path>`,
/// `env <VAR>` or `secret file <path>`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Env(var) => write!(f, "env {var}"),
            Self::SecretFile(path) => write!(f, "secret file {}", path.display()),
        }
    }
}

/// Something suspicious but harmless found while loading, for the binary to
/// log. Warnings never contain values.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// A `MERIT_*` variable that merit does not read.
    UnknownVariable {
        /// The variable's name.
        name: String,
        /// A known variable with a similar name.
        suggestion: Option<&'static str>,
    },
    /// A key of the config file that merit does not read.
    UnknownFileKey {
        /// The file.
        path: PathBuf,
        /// The dotted key.
        key: String,
        /// A known key with a similar name.
        suggestion: Option<&'static str>,
    },
    /// Production runs with a plaintext minter key, allowed by
    /// `MERIT_MINTER_ALLOW_PLAINTEXT_KEY=true`.
    PlaintextMinterKeyInProduction,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suggestion = match self {
            Self::UnknownVariable { name, suggestion } => {
                write!(f, "{name} is not a merit setting and was ignored")?;
                suggestion
            }
            Self::UnknownFileKey {
                path,
                key,
                suggestion,
            } => {
                write!(
                    f,
                    "{key} in {} is not a merit setting and was ignored",
                    path.display()
                )?;
                suggestion
            }
            Self::PlaintextMinterKeyInProduction => {
                return f.write_str(
                    "production runs with a plaintext minter key \
                     (MERIT_MINTER_ALLOW_PLAINTEXT_KEY=true); an encrypted keystore \
                     (MERIT_MINTER_KEYSTORE) or an external signer (MERIT_MINTER_SIGNER_URL) \
                     keeps it safer",
                );
            }
        };
        match suggestion {
            Some(known) => write!(f, "; did you mean {known}?"),
            None => Ok(()),
        }
    }
}

/// A value as a layer supplied it, before parsing. Deliberately not `Debug`:
/// it may be a secret.
pub(crate) enum RawValue {
    Text(String),
    Integer(i64),
}

impl fmt::Display for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Integer(number) => write!(f, "{number}"),
        }
    }
}

/// A raw value and the layer that supplied it.
pub(crate) struct Raw {
    pub(crate) value: RawValue,
    pub(crate) source: Source,
}

/// The winning raw value of every key that has one.
pub(crate) struct Layers {
    values: HashMap<&'static str, Raw>,
}

impl Layers {
    /// The built-in defaults of `env`.
    pub(crate) fn defaults(env: Environment, hostname: Option<&str>) -> Self {
        let values = keys::ALL
            .iter()
            .filter_map(|key| {
                let value = key.default_in(env, hostname)?;
                Some((
                    key.path,
                    Raw {
                        value: RawValue::Text(value),
                        source: Source::Default,
                    },
                ))
            })
            .collect();
        Self { values }
    }

    /// Sets `key`, replacing what a lower layer supplied.
    pub(crate) fn set(&mut self, key: &'static Key, value: RawValue, source: Source) {
        self.values.insert(key.path, Raw { value, source });
    }

    /// The winning value of `key`, if any layer supplied one.
    pub(crate) fn get(&self, key: &Key) -> Option<&Raw> {
        self.values.get(key.path)
    }

    /// Applies the `MERIT_*` variables (and `MERIT_*_FILE` files) in `vars`.
    pub(crate) fn apply_env(
        &mut self,
        vars: &BTreeMap<String, String>,
        warnings: &mut Vec<Warning>,
    ) -> Result<()> {
        for &key in keys::ALL {
            let direct = vars.get(key.var);
            let file = key
                .file_var
                .and_then(|file_var| Some((file_var, vars.get(file_var)?)));
            match (direct, file) {
                (Some(_), Some((file_var, _))) => {
                    return Err(ConfigError::ConflictingSources {
                        var: key.var,
                        file_var,
                    });
                }
                (Some(value), None) => {
                    self.set(
                        key,
                        RawValue::Text(value.clone()),
                        Source::Env(key.var.to_owned()),
                    );
                }
                (None, Some((file_var, path))) => {
                    let path = PathBuf::from(path);
                    let content = fs::read_to_string(&path).map_err(|source| {
                        ConfigError::SecretFileUnreadable {
                            file_var,
                            path: path.clone(),
                            source,
                        }
                    })?;
                    // Files written by editors and `echo` end with a newline
                    // that is not part of the secret.
                    let value = content.trim_end().to_owned();
                    self.set(key, RawValue::Text(value), Source::SecretFile(path));
                }
                (None, None) => {}
            }
        }
        let known: Vec<&'static str> = keys::known_vars().collect();
        for name in vars
            .keys()
            .filter(|name| name.starts_with(ENV_PREFIX) && !CLI_VARS.contains(&name.as_str()))
        {
            if !known.contains(&name.as_str()) {
                let suggestion = closest(name, known.iter().copied());
                warnings.push(Warning::UnknownVariable {
                    name: name.clone(),
                    suggestion,
                });
            }
        }
        Ok(())
    }
}

/// `MERIT_*` variables the command line reads itself (not settings), so not unknown.
const CLI_VARS: &[&str] = &["MERIT_CONFIG_DIR"];

/// The candidate within two edits of `name`, if there is one: likely the
/// setting a typo meant.
pub(crate) fn closest(
    name: &str,
    candidates: impl IntoIterator<Item = &'static str>,
) -> Option<&'static str> {
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|&(distance, _)| distance <= 2)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over bytes; names are ASCII.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.as_bytes().iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("abc", "abd"), 1);
        assert_eq!(edit_distance("abc", "ab"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn typo_suggests_the_nearest_known_variable() {
        assert_eq!(
            closest("MERIT_MAILBOX_SHARD", keys::known_vars()),
            Some("MERIT_MAILBOX_SHARDS")
        );
        assert_eq!(closest("MERIT_SOMETHING_ELSE", keys::known_vars()), None);
    }

    #[test]
    fn origin_names_the_layer() {
        assert_eq!(
            Source::Env("MERIT_X".into()).as_origin(),
            "from environment"
        );
        assert_eq!(Source::Default.as_origin(), "built-in default");
        assert_eq!(
            Source::File("config/test.toml".into()).to_string(),
            "file config/test.toml"
        );
        assert_eq!(Source::Env("MERIT_X".into()).to_string(), "env MERIT_X");
    }
}
