//! The TOML layer: `<config_dir>/<env>.toml`.
//!
//! A missing file is not an error (defaults and the environment apply). Known
//! keys must have their TOML type (a string or an integer); unknown keys are
//! warnings, so a typo is reported without stopping a node; secrets are
//! refused, so the files can be committed.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use crate::{
    error::{ConfigError, Result},
    keys::{self, Key, Kind, Sensitivity},
    secret::redact_url,
    source::{closest, Layers, RawValue, Source, Warning},
};

/// Applies the file at `path` to `layers` if it exists; returns whether it did.
pub(crate) fn apply(path: &Path, layers: &mut Layers, warnings: &mut Vec<Warning>) -> Result<bool> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(ConfigError::FileUnreadable {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let table: toml::Table = text
        .parse()
        .map_err(|error| malformed(path, &text, &error))?;
    let mut file = FileLayer {
        path,
        layers,
        warnings,
    };
    file.walk(&table, "")?;
    Ok(true)
}

struct FileLayer<'a> {
    path: &'a Path,
    layers: &'a mut Layers,
    warnings: &'a mut Vec<Warning>,
}

impl FileLayer<'_> {
    fn walk(&mut self, table: &toml::Table, prefix: &str) -> Result<()> {
        for (name, value) in table {
            let dotted = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            if let Some(key) = keys::by_path(&dotted) {
                if key.sensitivity == Sensitivity::Secret {
                    return Err(ConfigError::SecretInFile {
                        key: key.path,
                        path: self.path.to_path_buf(),
                        var: key.var,
                        file_var: key.file_var.unwrap_or(key.var),
                    });
                }
                let raw = match (key.kind, value) {
                    (Kind::Text, toml::Value::String(text)) => RawValue::Text(text.clone()),
                    (Kind::Integer, toml::Value::Integer(number)) => RawValue::Integer(*number),
                    (_, other) => return Err(self.wrong_type(key, other)),
                };
                self.layers
                    .set(key, raw, Source::File(self.path.to_path_buf()));
            } else if let Some(section) = keys::section(&dotted) {
                match value {
                    toml::Value::Table(inner) => self.walk(inner, section)?,
                    other => return Err(self.not_a_section(section, other)),
                }
            } else {
                let suggestion = closest(&dotted, keys::ALL.iter().map(|key| key.path));
                self.warnings.push(Warning::UnknownFileKey {
                    path: self.path.to_path_buf(),
                    key: dotted,
                    suggestion,
                });
            }
        }
        Ok(())
    }

    fn wrong_type(&self, key: &'static Key, value: &toml::Value) -> ConfigError {
        let expected = match key.kind {
            Kind::Text => "a string",
            Kind::Integer => "an integer",
        };
        ConfigError::InvalidValue {
            name: key.path,
            origin: Source::File(self.path.to_path_buf()),
            // An array of strings could still carry a URL password.
            value: Some(match key.sensitivity {
                Sensitivity::Url => redact_url(&value.to_string()),
                Sensitivity::Plain | Sensitivity::Secret => value.to_string(),
            }),
            problem: type_problem(value),
            expected: expected.to_owned(),
        }
    }

    fn not_a_section(&self, section: &'static str, value: &toml::Value) -> ConfigError {
        ConfigError::InvalidValue {
            name: section,
            origin: Source::File(self.path.to_path_buf()),
            value: Some(value.to_string()),
            problem: type_problem(value),
            expected: format!("a [{section}] table"),
        }
    }
}

/// "is a string", "is an array", …
fn type_problem(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "is a string",
        toml::Value::Integer(_) => "is an integer",
        toml::Value::Float(_) => "is a float",
        toml::Value::Boolean(_) => "is a boolean",
        toml::Value::Datetime(_) => "is a date-time",
        toml::Value::Array(_) => "is an array",
        toml::Value::Table(_) => "is a table",
    }
}

/// Locates a parse error by line and column. The parser's own rendering
/// quotes the offending source line, which is left out in case it holds
/// something sensitive.
fn malformed(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
    let offset = error.span().map_or(0, |span| span.start);
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    let message = error
        .message()
        .trim()
        .lines()
        .collect::<Vec<_>>()
        .join("; ");
    ConfigError::MalformedToml {
        path: PathBuf::from(path),
        line,
        column,
        message,
    }
}
