//! `merit config show`: the effective settings with each value's source,
//! secrets redacted, as text for a terminal and as JSON for the config API.
//!
//! Both renderings start from the redacted serialization of [`Settings`]
//! (secrets as `***redacted***`, URLs without their password), so neither can
//! show more than `Serialize` allows.

use serde_json::{json, Map, Value};

use crate::{keys, load::Loaded, settings::Settings, source::Source};

/// Value column width beyond which values are not padded.
const MAX_VALUE_WIDTH: usize = 40;

/// The effective settings as `key = value   (source)` lines, in the order of
/// the config files, followed by the warnings as comments. Secrets show as
/// `"***redacted***"`, unset optional values as `<none>`.
pub fn render_show(loaded: &Loaded) -> String {
    let rows: Vec<(&str, String, String)> = entries(loaded)
        .into_iter()
        .map(|(key, value, source)| {
            let value = match value {
                Value::Null => "<none>".to_owned(),
                other => other.to_string(),
            };
            (
                key,
                value,
                source.map_or_else(|| Source::Default.to_string(), ToString::to_string),
            )
        })
        .collect();
    let key_width = rows.iter().map(|(key, _, _)| key.len()).max().unwrap_or(0);
    let value_width = rows
        .iter()
        .map(|(_, value, _)| value.len())
        .max()
        .unwrap_or(0)
        .min(MAX_VALUE_WIDTH);

    let file = match &loaded.config_file {
        Some(path) => format!("file {}", path.display()),
        None => "no config file".to_owned(),
    };
    let mut out = format!("# merit settings for {} ({file})\n", loaded.settings.env);
    for (key, value, source) in rows {
        out.push_str(&format!(
            "{key:key_width$} = {value:value_width$}   ({source})\n"
        ));
    }
    for warning in &loaded.warnings {
        out.push_str(&format!("# warning: {warning}\n"));
    }
    out
}

/// The effective settings as JSON:
/// `{"env", "config_file", "settings": {key: {"value", "source"}}, "warnings"}`,
/// with dotted keys, secrets as `"***redacted***"` and URLs without their
/// password. A source is `{"kind": "default" | "file" | "env" | "secret_file"}`
/// with `"path"` or `"var"` as applicable.
pub fn to_redacted_json(loaded: &Loaded) -> Value {
    let settings: Map<String, Value> = entries(loaded)
        .into_iter()
        .map(|(key, value, source)| {
            let source = source_json(source.unwrap_or(&Source::Default));
            (key.to_owned(), json!({ "value": value, "source": source }))
        })
        .collect();
    json!({
        "env": loaded.settings.env.as_str(),
        "config_file": loaded.config_file.as_ref().map(|path| path.display().to_string()),
        "settings": settings,
        "warnings": loaded.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// Every key with its redacted value and its source, `env` first.
fn entries(loaded: &Loaded) -> Vec<(&'static str, Value, Option<&Source>)> {
    let tree = redacted_tree(&loaded.settings);
    std::iter::once("env")
        .chain(keys::ALL.iter().map(|key| key.path))
        .map(|key| {
            let pointer = format!("/{}", key.replace('.', "/"));
            let value = tree.pointer(&pointer).cloned().unwrap_or(Value::Null);
            (key, value, loaded.source(key))
        })
        .collect()
}

fn redacted_tree(settings: &Settings) -> Value {
    serde_json::to_value(settings)
        .expect("settings serialize to JSON: every map key is a field name")
}

fn source_json(source: &Source) -> Value {
    match source {
        Source::Default => json!({ "kind": "default" }),
        Source::File(path) => json!({ "kind": "file", "path": path.display().to_string() }),
        Source::Env(var) => json!({ "kind": "env", "var": var }),
        Source::SecretFile(path) => {
            json!({ "kind": "secret_file", "path": path.display().to_string() })
        }
    }
}
