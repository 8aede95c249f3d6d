//! `config show`: every key with its redacted value and its source.

use merit_config::{render_show, to_redacted_json};
use serde_json::json;

use crate::{config_dir, load};

#[test]
fn show_lists_every_key_with_value_and_source() {
    let dir = config_dir(&[("development", "[mailbox]\nprefetch = 50\n")]);
    let loaded = load(
        dir.path(),
        &[
            ("MERIT_MAILBOX_SHARDS", "16"),
            ("MERIT_DATABASE_URL", "postgres://u:pw@db/merit"),
            ("MERIT_HTTP_TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
        ],
    );
    let file = dir.path().join("development.toml");
    let text = render_show(&loaded);
    let line = |key: &str| -> String {
        text.lines()
            .find(|line| line.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no line for {key} in:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };

    assert_eq!(
        line("mailbox.shards"),
        "mailbox.shards = 16 (env MERIT_MAILBOX_SHARDS)"
    );
    assert_eq!(
        line("mailbox.prefetch"),
        format!("mailbox.prefetch = 50 (file {})", file.display())
    );
    assert_eq!(
        line("mailbox.max_attempts"),
        "mailbox.max_attempts = 5 (default)"
    );
    assert_eq!(
        line("database_url"),
        "database_url = \"postgres://u:***@db/merit\" (env MERIT_DATABASE_URL)"
    );
    assert_eq!(
        line("admin_token"),
        "admin_token = \"***redacted***\" (default)"
    );
    assert_eq!(line("amqp_url"), "amqp_url = <none> (default)");
    assert_eq!(line("env"), "env = \"development\" (default)");
    assert_eq!(
        line("http.trusted_proxies"),
        "http.trusted_proxies = [\"10.0.0.0/8\",\"::1\"] (env MERIT_HTTP_TRUSTED_PROXIES)"
    );
    assert_eq!(
        line("http.ws_max_sessions_per_user"),
        "http.ws_max_sessions_per_user = 8 (default)"
    );
    assert_eq!(line("metrics_addr"), "metrics_addr = <none> (default)");
    assert_eq!(
        text.lines().filter(|line| !line.starts_with('#')).count(),
        52
    );
    assert_eq!(line("otel.endpoint"), "otel.endpoint = <none> (default)");
    assert_eq!(
        line("otel.sample_percent"),
        "otel.sample_percent = 100 (default)"
    );
    assert_eq!(
        line("cluster.drain_limit_ms"),
        "cluster.drain_limit_ms = 10000 (default)"
    );
    assert_eq!(
        line("mailbox.quorum_group_size"),
        "mailbox.quorum_group_size = <none> (default)"
    );
}

#[test]
fn redacted_json_has_every_key_with_value_and_source() {
    let dir = config_dir(&[]);
    let loaded = load(
        dir.path(),
        &[
            ("MERIT_MAILBOX_SHARDS", "16"),
            ("MERIT_REDIS_URL", "redis://:pw@cache:6379"),
            (
                "MERIT_OTEL_ENDPOINT",
                "https://tenant:otlp-pw@otel.example/v1/traces",
            ),
            ("MERIT_TYPO", "1"),
        ],
    );
    let json = to_redacted_json(&loaded);
    let settings = &json["settings"];

    assert_eq!(json["env"], "development");
    assert_eq!(json["config_file"], serde_json::Value::Null);
    assert_eq!(
        settings["mailbox.shards"],
        json!({ "value": 16, "source": { "kind": "env", "var": "MERIT_MAILBOX_SHARDS" } })
    );
    assert_eq!(settings["redis_url"]["value"], "redis://:***@cache:6379");
    assert_eq!(settings["minter_key"]["value"], "***redacted***");
    assert_eq!(
        settings["minter_key"]["source"],
        json!({ "kind": "default" })
    );
    assert_eq!(settings["amqp_url"]["value"], serde_json::Value::Null);
    assert_eq!(settings["log.format"]["value"], "text");
    assert_eq!(settings["http.ws_send_timeout_ms"]["value"], 5000);
    assert_eq!(
        settings["http.forwarded_header"]["value"],
        "x-forwarded-for"
    );
    assert_eq!(
        settings["http.siwe_domain"]["value"],
        serde_json::Value::Null
    );
    assert_eq!(
        settings["otel.endpoint"]["value"],
        "https://tenant:***@otel.example/v1/traces"
    );
    assert!(
        !json.to_string().contains("otlp-pw"),
        "the OTLP password never prints"
    );
    assert_eq!(settings.as_object().map(|o| o.len()), Some(52));
    assert_eq!(
        json["warnings"][0],
        "MERIT_TYPO is not a merit setting and was ignored"
    );
}
