//! Defaults < file < environment, and the provenance of each layer.

use std::{net::SocketAddr, path::PathBuf};

use merit_config::{Environment, Loaded, LogFormat, Settings, Source, Warning};

use crate::{config_dir, load, production_vars_with, write_file, SECRET};

#[test]
fn defaults_apply_without_file_or_variables() {
    let dir = config_dir(&[]);
    let loaded = load(dir.path(), &[]);
    let settings = &loaded.settings;

    assert_eq!(settings.env, Environment::Development);
    assert_eq!(settings.node_id, "node-1");
    assert_eq!(
        settings.http_addr,
        "127.0.0.1:8080".parse::<SocketAddr>().expect("valid")
    );
    assert_eq!(settings.database_url.expose(), "sqlite://merit.db?mode=rwc");
    assert!(settings.amqp_url.is_none());
    assert!(settings.redis_url.is_none());
    assert!(settings.chain_rpc_url.is_none());
    assert_eq!(settings.mailbox.shards, 4);
    assert_eq!(settings.mailbox.prefetch, 200);
    assert_eq!(settings.mailbox.max_attempts, 5);
    assert_eq!(settings.mailbox.retry_base_ms, 200);
    assert_eq!(settings.actors.idle_passivate_secs, 300);
    assert_eq!(settings.actors.max_resident, 100_000);
    assert_eq!(settings.actors.turn_batch, 256);
    assert_eq!(settings.cache.l1_capacity, 100_000);
    assert_eq!(settings.cache.ttl_secs, 300);
    assert_eq!(settings.cache.redis_prefix, "merit:");
    assert_eq!(settings.retention.inbox_days, 30);
    assert_eq!(settings.retention.outbox_days, 7);
    assert_eq!(settings.retention.notifications_days, 90);
    assert_eq!(settings.retention.sweep_secs, 600);
    assert_eq!(settings.chain.chain_id, 31337);
    assert_eq!(settings.chain.confirmations, 2);
    assert_eq!(settings.chain.contract_address, None);
    assert_eq!(settings.chain.poll_interval_ms, 1000);
    assert_eq!(settings.log.format, LogFormat::Text);
    assert_eq!(settings.log.filter, "info");

    assert_eq!(loaded.config_file, None);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(loaded.provenance.contains_key("env"));
    assert!(loaded.provenance.contains_key("mailbox.max_attempts"));
    for (key, source) in &loaded.provenance {
        assert_eq!(source, &Source::Default, "source of {key}");
    }
}

#[test]
fn file_overrides_defaults_and_records_its_path() {
    let dir = config_dir(&[(
        "development",
        "http_addr = \"0.0.0.0:9000\"\n[mailbox]\nshards = 8\nmax_attempts = 7\n",
    )]);
    let loaded = load(dir.path(), &[]);
    let file = dir.path().join("development.toml");

    assert_eq!(loaded.settings.http_addr.port(), 9000);
    assert_eq!(loaded.settings.mailbox.shards, 8);
    assert_eq!(loaded.settings.mailbox.max_attempts, 7);
    assert_eq!(loaded.config_file.as_ref(), Some(&file));
    assert_eq!(
        loaded.source("http_addr"),
        Some(&Source::File(file.clone()))
    );
    assert_eq!(loaded.source("mailbox.shards"), Some(&Source::File(file)));
    assert_eq!(loaded.source("mailbox.prefetch"), Some(&Source::Default));
}

#[test]
fn environment_overrides_file_and_records_the_variable() {
    let dir = config_dir(&[("development", "[mailbox]\nshards = 8\nprefetch = 50\n")]);
    let loaded = load(dir.path(), &[("MERIT_MAILBOX_SHARDS", "16")]);
    let file = dir.path().join("development.toml");

    assert_eq!(loaded.settings.mailbox.shards, 16);
    assert_eq!(
        loaded.source("mailbox.shards"),
        Some(&Source::Env("MERIT_MAILBOX_SHARDS".into()))
    );
    assert_eq!(loaded.settings.mailbox.prefetch, 50);
    assert_eq!(loaded.source("mailbox.prefetch"), Some(&Source::File(file)));
    assert_eq!(loaded.settings.mailbox.max_attempts, 5);
    assert_eq!(
        loaded.source("mailbox.max_attempts"),
        Some(&Source::Default)
    );
}

#[test]
fn merit_env_selects_the_environment_and_its_file() {
    let dir = config_dir(&[
        ("development", "[mailbox]\nshards = 8\n"),
        ("test", "[mailbox]\nshards = 2\n"),
    ]);
    let loaded = load(dir.path(), &[("MERIT_ENV", "test")]);

    assert_eq!(loaded.settings.env, Environment::Test);
    assert_eq!(loaded.settings.mailbox.shards, 2);
    assert_eq!(loaded.config_file, Some(dir.path().join("test.toml")));
    assert_eq!(loaded.source("env"), Some(&Source::Env("MERIT_ENV".into())));

    let upper = load(dir.path(), &[("MERIT_ENV", "TEST")]);
    assert_eq!(upper.settings.env, Environment::Test);
}

/// Documented variables of keys that contain underscores, each set to a valid value
/// other than its default.
const DOCUMENTED_VARS: &[(&str, &str)] = &[
    ("MERIT_NODE_ID", "node-a.1_b"),
    ("MERIT_HTTP_ADDR", "[::1]:9090"),
    ("MERIT_DATABASE_URL", "postgresql://merit@db/merit"),
    ("MERIT_AMQP_URL", "amqps://merit@mq/merit"),
    ("MERIT_REDIS_URL", "rediss://cache:6380/1"),
    ("MERIT_CHAIN_RPC_URL", "https://rpc.example.org"),
    ("MERIT_MAILBOX_SHARDS", "256"),
    ("MERIT_MAILBOX_PREFETCH", "10"),
    ("MERIT_MAILBOX_MAX_ATTEMPTS", "9"),
    ("MERIT_MAILBOX_RETRY_BASE_MS", "50"),
    ("MERIT_ACTORS_IDLE_PASSIVATE_SECS", "30"),
    ("MERIT_ACTORS_MAX_RESIDENT", "500"),
    ("MERIT_CACHE_L1_CAPACITY", "0"),
    ("MERIT_CACHE_TTL_SECS", "5"),
    ("MERIT_CACHE_REDIS_PREFIX", "merit-eu:prod."),
    ("MERIT_RETENTION_INBOX_DAYS", "0"),
    ("MERIT_RETENTION_OUTBOX_DAYS", "1"),
    ("MERIT_RETENTION_NOTIFICATIONS_DAYS", "36500"),
    ("MERIT_RETENTION_SWEEP_SECS", "5"),
    ("MERIT_CHAIN_CHAIN_ID", "1"),
    ("MERIT_CHAIN_CONFIRMATIONS", "12"),
    (
        "MERIT_CHAIN_CONTRACT_ADDRESS",
        "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    ),
    ("MERIT_CHAIN_POLL_INTERVAL_MS", "250"),
    ("MERIT_LOG_FORMAT", "json"),
    ("MERIT_LOG_FILTER", "debug,merit_mailbox=trace"),
];

fn load_documented() -> Loaded {
    let dir = config_dir(&[]);
    load(dir.path(), DOCUMENTED_VARS)
}

#[test]
fn documented_variables_set_the_node_and_its_urls() {
    let loaded = load_documented();
    let s = &loaded.settings;

    assert_eq!(s.node_id, "node-a.1_b");
    assert_eq!(
        s.http_addr,
        "[::1]:9090".parse::<SocketAddr>().expect("valid")
    );
    assert_eq!(s.database_url.expose(), "postgresql://merit@db/merit");
    assert_eq!(
        s.amqp_url.as_ref().map(|u| u.expose()),
        Some("amqps://merit@mq/merit")
    );
    assert_eq!(
        s.redis_url.as_ref().map(|u| u.expose()),
        Some("rediss://cache:6380/1")
    );
    assert_eq!(
        s.chain_rpc_url.as_ref().map(|u| u.expose()),
        Some("https://rpc.example.org")
    );
}

#[test]
fn documented_variables_set_the_mailbox_and_actor_keys() {
    let loaded = load_documented();
    let s = &loaded.settings;

    assert_eq!(s.mailbox.shards, 256);
    assert_eq!(s.mailbox.prefetch, 10);
    assert_eq!(s.mailbox.max_attempts, 9);
    assert_eq!(s.mailbox.retry_base_ms, 50);
    assert_eq!(s.actors.idle_passivate_secs, 30);
    assert_eq!(s.actors.max_resident, 500);
}

#[test]
fn documented_variables_set_the_cache_and_retention_keys() {
    let loaded = load_documented();
    let s = &loaded.settings;

    assert_eq!(s.cache.l1_capacity, 0);
    assert_eq!(s.cache.ttl_secs, 5);
    assert_eq!(s.cache.redis_prefix, "merit-eu:prod.");
    assert_eq!(s.retention.inbox_days, 0);
    assert_eq!(s.retention.outbox_days, 1);
    assert_eq!(s.retention.notifications_days, 36_500);
    assert_eq!(s.retention.sweep_secs, 5);
}

#[test]
fn documented_variables_set_the_chain_and_log_keys() {
    let loaded = load_documented();
    let s = &loaded.settings;

    assert_eq!(s.chain.chain_id, 1);
    assert_eq!(s.chain.confirmations, 12);
    assert_eq!(
        s.chain.contract_address.as_deref(),
        Some("0x5FbDB2315678afecb367f032d93F642f64180aa3")
    );
    assert_eq!(s.chain.poll_interval_ms, 250);
    assert_eq!(s.log.format, LogFormat::Json);
    assert_eq!(s.log.filter, "debug,merit_mailbox=trace");
}

#[test]
fn documented_variables_warn_nothing_and_are_the_source_of_their_keys() {
    let loaded = load_documented();

    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        loaded.source("actors.idle_passivate_secs"),
        Some(&Source::Env("MERIT_ACTORS_IDLE_PASSIVATE_SECS".into()))
    );
    assert_eq!(
        loaded.source("chain.chain_id"),
        Some(&Source::Env("MERIT_CHAIN_CHAIN_ID".into()))
    );
}

#[test]
fn unknown_merit_variable_is_a_warning_with_a_suggestion() {
    let dir = config_dir(&[]);
    let loaded = load(
        dir.path(),
        &[
            ("MERIT_MAILBOX_SHARD", "3"),
            ("MERIT_WHATEVER", "x"),
            ("PATH", "/bin"),
        ],
    );

    assert_eq!(loaded.settings.mailbox.shards, 4);
    assert_eq!(
        loaded.warnings,
        vec![
            Warning::UnknownVariable {
                name: "MERIT_MAILBOX_SHARD".into(),
                suggestion: Some("MERIT_MAILBOX_SHARDS"),
            },
            Warning::UnknownVariable {
                name: "MERIT_WHATEVER".into(),
                suggestion: None
            },
        ]
    );
    assert_eq!(
        loaded.warnings[0].to_string(),
        "MERIT_MAILBOX_SHARD is not a merit setting and was ignored; \
         did you mean MERIT_MAILBOX_SHARDS?"
    );
}

#[test]
fn unknown_file_key_is_a_warning() {
    let dir = config_dir(&[("development", "[mailbox]\nshard = 3\n[extra]\nx = 1\n")]);
    let loaded = load(dir.path(), &[]);
    let path = dir.path().join("development.toml");

    assert_eq!(loaded.settings.mailbox.shards, 4);
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
    assert!(loaded.warnings.contains(&Warning::UnknownFileKey {
        path: path.clone(),
        key: "extra".into(),
        suggestion: None,
    }));
    assert!(loaded.warnings.contains(&Warning::UnknownFileKey {
        path,
        key: "mailbox.shard".into(),
        suggestion: Some("mailbox.shards"),
    }));
}

#[test]
fn empty_optional_variable_restores_the_embedded_default() {
    let dir = config_dir(&[("development", "amqp_url = \"amqp://mq\"\n")]);
    let with_file = load(dir.path(), &[]);
    assert_eq!(
        with_file.settings.amqp_url.as_ref().map(|u| u.expose()),
        Some("amqp://mq")
    );

    let loaded = load(dir.path(), &[("MERIT_AMQP_URL", "")]);
    assert!(loaded.settings.amqp_url.is_none());
    assert_eq!(
        loaded.source("amqp_url"),
        Some(&Source::Env("MERIT_AMQP_URL".into()))
    );
}

#[test]
fn node_id_defaults_to_the_host_name() {
    let dir = config_dir(&[]);
    let loaded = load(dir.path(), &[("HOSTNAME", "web-7c9f")]);
    assert_eq!(loaded.settings.node_id, "node-web-7c9f");
    assert_eq!(loaded.source("node_id"), Some(&Source::Default));
}

#[test]
fn url_from_a_file_variable_records_the_file() {
    let dir = config_dir(&[]);
    let path = write_file(dir.path(), "dsn", "postgres://merit:pw@db/merit\n");
    let loaded = load(dir.path(), &[("MERIT_DATABASE_URL_FILE", &path)]);

    assert_eq!(
        loaded.settings.database_url.expose(),
        "postgres://merit:pw@db/merit"
    );
    assert_eq!(
        loaded.source("database_url"),
        Some(&Source::SecretFile(PathBuf::from(path)))
    );
}

#[test]
fn shipped_config_files_load_without_warnings() {
    let dir = env!("CARGO_MANIFEST_DIR");

    let development = load(dir.as_ref(), &[]);
    assert!(development.config_file.is_some());
    assert!(
        development.warnings.is_empty(),
        "{:?}",
        development.warnings
    );
    assert_eq!(
        development.settings.database_url.expose(),
        "sqlite://merit.db?mode=rwc"
    );

    let test = load(dir.as_ref(), &[("MERIT_ENV", "test")]);
    assert!(test.config_file.is_some());
    assert!(test.warnings.is_empty(), "{:?}", test.warnings);
    assert_eq!(test.settings.database_url.expose(), "sqlite::memory:");

    // With the minter key in a keystore: a plaintext key would (rightly) warn.
    let production = load(
        dir.as_ref(),
        &production_vars_with(
            "MERIT_MINTER_KEY",
            &[
                ("MERIT_MINTER_KEYSTORE", "/run/secrets/minter.json"),
                ("MERIT_MINTER_KEYSTORE_PASSWORD", SECRET),
            ],
        ),
    );
    assert!(production.config_file.is_some());
    assert!(production.warnings.is_empty(), "{:?}", production.warnings);
    assert_eq!(production.settings.log.format, LogFormat::Json);
}

#[test]
fn test_defaults_are_valid_and_use_an_in_memory_database() {
    let settings = Settings::test_defaults();
    assert_eq!(settings.env, Environment::Test);
    assert_eq!(settings.database_url.expose(), "sqlite::memory:");
    assert_eq!(settings.mailbox.shards, 4);
}
