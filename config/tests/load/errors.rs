//! Every class of bad input fails at load with an error naming the key, the
//! source, the value and what was expected.

use std::path::Path;

use merit_config::{ConfigError, Source};

use crate::{config_dir, load, load_err, write_file};

#[test]
fn bad_socket_address_names_variable_source_value_and_expectation() {
    let dir = config_dir(&[]);
    let error = load_err(dir.path(), &[("MERIT_HTTP_ADDR", "abc")]);
    assert_eq!(
        error.to_string(),
        "MERIT_HTTP_ADDR (from environment): \"abc\" is not a socket address; \
         expected host:port like 127.0.0.1:8080"
    );
    assert!(matches!(
        error,
        ConfigError::InvalidValue { name: "MERIT_HTTP_ADDR", origin: Source::Env(ref var), .. }
            if var == "MERIT_HTTP_ADDR"
    ));
}

#[test]
fn bad_number_is_named() {
    let dir = config_dir(&[]);
    let error = load_err(dir.path(), &[("MERIT_MAILBOX_MAX_ATTEMPTS", "five")]);
    assert_eq!(
        error.to_string(),
        "MERIT_MAILBOX_MAX_ATTEMPTS (from environment): \"five\" is not a whole number; \
         expected a whole number from 1 to 100"
    );
}

/// The message of loading with only `var` set to `value`, which must be refused.
fn env_error(var: &str, value: &str) -> String {
    let dir = config_dir(&[]);
    load_err(dir.path(), &[(var, value)]).to_string()
}

#[test]
fn out_of_range_number_from_a_file_names_the_toml_key_and_the_file() {
    let dir = config_dir(&[("development", "[mailbox]\nshards = 1000\n")]);
    let from_file = load_err(dir.path(), &[]);
    let path = dir.path().join("development.toml");
    assert_eq!(
        from_file.to_string(),
        format!(
            "mailbox.shards (from {}): \"1000\" is out of range; \
             expected a whole number from 1 to 256",
            path.display()
        )
    );
}

#[test]
fn out_of_range_number_from_the_environment_names_the_variable() {
    // The file's value is out of range too: the environment's wins, so it is the one named.
    let dir = config_dir(&[("development", "[mailbox]\nshards = 1000\n")]);
    let from_env = load_err(dir.path(), &[("MERIT_MAILBOX_SHARDS", "0")]);
    assert_eq!(
        from_env.to_string(),
        "MERIT_MAILBOX_SHARDS (from environment): \"0\" is out of range; \
         expected a whole number from 1 to 256"
    );
}

#[test]
fn number_too_big_for_its_type_is_out_of_range() {
    let message = env_error("MERIT_MAILBOX_PREFETCH", "70000");
    assert!(message.contains("\"70000\" is out of range"), "{message}");
}

#[test]
fn negative_number_is_out_of_range() {
    assert_eq!(
        env_error("MERIT_CACHE_TTL_SECS", "-1"),
        "MERIT_CACHE_TTL_SECS (from environment): \"-1\" is out of range; \
         expected a whole number from 1 to 604800"
    );
}

#[test]
fn retention_beyond_a_hundred_years_is_out_of_range() {
    assert_eq!(
        env_error("MERIT_RETENTION_INBOX_DAYS", "40000"),
        "MERIT_RETENTION_INBOX_DAYS (from environment): \"40000\" is out of range; \
         expected a whole number from 0 to 36500"
    );
}

#[test]
fn redis_prefix_with_a_space_is_refused() {
    let message = env_error("MERIT_CACHE_REDIS_PREFIX", "merit prod");
    assert!(
        message.contains("is not a valid Redis key prefix"),
        "{message}"
    );
}

#[test]
fn trusted_proxy_that_is_not_an_address_or_block_is_refused() {
    let message = env_error("MERIT_HTTP_TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal");
    assert!(
        message.contains("is not a list of IP addresses and CIDR blocks"),
        "{message}"
    );
}

#[test]
fn trusted_proxy_block_wider_than_its_address_is_refused() {
    let message = env_error("MERIT_HTTP_TRUSTED_PROXIES", "10.0.0.0/33");
    assert!(message.contains("CIDR"), "{message}");
}

#[test]
fn forwarded_header_other_than_the_supported_ones_is_refused() {
    let message = env_error("MERIT_HTTP_FORWARDED_HEADER", "x-real-ip");
    assert!(message.contains("is not a forwarding header"), "{message}");
}

#[test]
fn metrics_address_without_a_port_is_refused() {
    let message = env_error("MERIT_METRICS_ADDR", "localhost");
    assert!(message.contains("is not a socket address"), "{message}");
}

#[test]
fn siwe_origin_with_a_path_is_refused() {
    let message = env_error("MERIT_HTTP_SIWE_ORIGINS", "https://merit.example/login");
    assert!(message.contains("is not a list of origins"), "{message}");
}

#[test]
fn wrong_toml_type_is_named() {
    let dir = config_dir(&[("development", "[mailbox]\nshards = \"4\"\n")]);
    let error = load_err(dir.path(), &[]);
    let message = error.to_string();
    assert!(message.starts_with("mailbox.shards (from "), "{message}");
    assert!(
        message.ends_with("\"\\\"4\\\"\" is a string; expected an integer"),
        "{message}"
    );

    let dir = config_dir(&[("development", "http_addr = 8080\n")]);
    let message = load_err(dir.path(), &[]).to_string();
    assert!(
        message.ends_with("\"8080\" is an integer; expected a string"),
        "{message}"
    );

    let dir = config_dir(&[("development", "mailbox = 5\n")]);
    let message = load_err(dir.path(), &[]).to_string();
    assert!(
        message.ends_with("is an integer; expected a [mailbox] table"),
        "{message}"
    );
}

#[test]
fn each_broker_address_of_a_list_is_checked() {
    let dir = config_dir(&[]);
    let error = load_err(
        dir.path(),
        &[("MERIT_AMQP_URL", "amqp://mq1/v,http://mq2/v")],
    )
    .to_string();
    assert!(
        error.contains("is not a supported URL; expected a URL starting with amqp:// or amqps://"),
        "{error}"
    );
    let many = vec!["amqp://mq/v"; 17].join(",");
    let error = load_err(dir.path(), &[("MERIT_AMQP_URL", &many)]).to_string();
    assert!(error.contains("lists too many addresses"), "{error}");
}

#[test]
fn the_quorum_group_size_is_optional_and_bounded() {
    let dir = config_dir(&[]);
    assert_eq!(
        load(dir.path(), &[]).settings.mailbox.quorum_group_size,
        None
    );
    let loaded = load(dir.path(), &[("MERIT_MAILBOX_QUORUM_GROUP_SIZE", "3")]);
    assert_eq!(loaded.settings.mailbox.quorum_group_size, Some(3));
    let error = load_err(dir.path(), &[("MERIT_MAILBOX_QUORUM_GROUP_SIZE", "0")]).to_string();
    assert!(error.contains("is out of range"), "{error}");
}

#[test]
fn bad_url_scheme_is_named_for_every_url() {
    let dir = config_dir(&[]);
    let cases = [
        (
            "MERIT_DATABASE_URL",
            "mysql://merit@db/merit",
            "sqlite:, postgres:// or postgresql://",
        ),
        ("MERIT_AMQP_URL", "http://mq", "amqp:// or amqps://"),
        (
            "MERIT_REDIS_URL",
            "memcached://cache",
            "redis:// or rediss://",
        ),
        ("MERIT_CHAIN_RPC_URL", "ftp://rpc", "http:// or https://"),
    ];
    for (var, value, schemes) in cases {
        let error = load_err(dir.path(), &[(var, value)]);
        assert_eq!(
            error.to_string(),
            format!(
                "{var} (from environment): \"{value}\" is not a supported URL; \
                 expected a URL starting with {schemes}"
            )
        );
    }
    let bare = load_err(dir.path(), &[("MERIT_DATABASE_URL", "postgres://")]);
    assert!(
        bare.to_string().contains("has nothing after the scheme"),
        "{bare}"
    );
    let spaced = load_err(dir.path(), &[("MERIT_REDIS_URL", "redis://a b")]);
    assert!(
        spaced.to_string().contains("contains whitespace"),
        "{spaced}"
    );
}

#[test]
fn unknown_merit_env_names_the_value_and_the_allowed_ones() {
    let dir = config_dir(&[]);
    let error = load_err(dir.path(), &[("MERIT_ENV", "staging")]);
    assert_eq!(
        error.to_string(),
        "MERIT_ENV (from environment): \"staging\" is not a known environment; \
         expected one of development, test, production"
    );
    assert!(matches!(error, ConfigError::UnknownEnvironment { ref value } if value == "staging"));
}

#[test]
fn secret_set_both_directly_and_by_file_is_refused() {
    let dir = config_dir(&[]);
    let path = write_file(dir.path(), "token", "from-file-token");
    let error = load_err(
        dir.path(),
        &[
            ("MERIT_ADMIN_TOKEN", "direct"),
            ("MERIT_ADMIN_TOKEN_FILE", &path),
        ],
    );
    assert_eq!(
        error.to_string(),
        "MERIT_ADMIN_TOKEN and MERIT_ADMIN_TOKEN_FILE are both set; set only one of them"
    );
}

#[test]
fn unreadable_secret_file_names_the_variable_and_path() {
    let dir = config_dir(&[]);
    let missing = dir.path().join("no-such-secret");
    let missing_str = missing.to_str().expect("temporary paths are UTF-8");
    let error = load_err(dir.path(), &[("MERIT_JWT_SECRET_FILE", missing_str)]);
    assert!(
        error.to_string().starts_with(&format!(
            "MERIT_JWT_SECRET_FILE (from environment): cannot read {missing_str}: "
        )),
        "{error}"
    );
    assert!(matches!(
        error,
        ConfigError::SecretFileUnreadable { file_var: "MERIT_JWT_SECRET_FILE", ref path, .. }
            if *path == missing
    ));
}

#[test]
fn malformed_minter_key_is_named_without_its_value() {
    let dir = config_dir(&[]);
    for bad in [
        "0x1234",
        "S3CRET-VALUE-xyz",
        &"g".repeat(64),
        &format!("0x{}", "ab".repeat(33)),
    ] {
        let error = load_err(dir.path(), &[("MERIT_MINTER_KEY", bad)]);
        assert_eq!(
            error.to_string(),
            "MERIT_MINTER_KEY (from environment): the value (secret, not shown) is not a \
             32-byte hex private key; expected 64 hex digits, optionally prefixed with 0x"
        );
        assert!(!format!("{error:?}").contains(bad));
    }
    let zero = "0".repeat(64);
    let above_order = "f".repeat(64);
    for bad in [zero.as_str(), above_order.as_str()] {
        let error = load_err(dir.path(), &[("MERIT_MINTER_KEY", bad)]);
        assert!(
            error
                .to_string()
                .contains("is not a valid secp256k1 private key"),
            "{error}"
        );
        assert!(!error.to_string().contains(bad));
    }
}

#[test]
fn malformed_toml_names_the_file_and_line() {
    let dir = config_dir(&[(
        "development",
        "http_addr = \"127.0.0.1:1\"\n\n[mailbox\nshards = 4\n",
    )]);
    let error = load_err(dir.path(), &[]);
    let path = dir.path().join("development.toml");
    assert!(
        matches!(error, ConfigError::MalformedToml { line: 3, path: ref p, .. } if *p == path),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with(&format!(
            "{}: malformed TOML at line 3, column ",
            path.display()
        )),
        "{error}"
    );
}

#[test]
fn unreadable_config_file_is_an_error_not_a_missing_file() {
    let dir = config_dir(&[]);
    std::fs::create_dir(dir.path().join("development.toml")).expect("can create a directory");
    let error = load_err(dir.path(), &[]);
    assert!(
        matches!(error, ConfigError::FileUnreadable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("development.toml"), "{error}");
}

#[test]
fn secret_in_config_file_is_refused() {
    let dir = config_dir(&[("development", "jwt_secret = \"S3CRET-VALUE-xyz\"\n")]);
    let error = load_err(dir.path(), &[]);
    assert!(
        matches!(
            error,
            ConfigError::SecretInFile {
                key: "jwt_secret",
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("set MERIT_JWT_SECRET or MERIT_JWT_SECRET_FILE"),
        "{message}"
    );
    assert!(!message.contains("S3CRET-VALUE-xyz"));
}

#[test]
fn bad_node_id_contract_address_and_log_format_are_named() {
    let dir = config_dir(&[]);
    let cases = [
        ("MERIT_NODE_ID", "node 1", "is not a valid node id"),
        ("MERIT_NODE_ID", "", "is not a valid node id"),
        (
            "MERIT_CHAIN_CONTRACT_ADDRESS",
            "0x1234",
            "is not a contract address",
        ),
        (
            "MERIT_LOG_FORMAT",
            "xml",
            "is not a log format; expected text or json",
        ),
        ("MERIT_LOG_FILTER", " ", "is empty"),
    ];
    for (var, value, problem) in cases {
        let message = load_err(dir.path(), &[(var, value)]).to_string();
        let prefix = format!("{var} (from environment): {value:?} {problem}");
        assert!(message.starts_with(&prefix), "{message}");
    }
    let long = "n".repeat(65);
    let message = load_err(dir.path(), &[("MERIT_NODE_ID", &long)]).to_string();
    assert!(message.contains("1 to 64 characters"), "{message}");
}

#[test]
fn bad_value_from_a_file_variable_names_the_file() {
    let dir = config_dir(&[]);
    let path = write_file(dir.path(), "dsn", "mysql://db\n");
    let error = load_err(dir.path(), &[("MERIT_DATABASE_URL_FILE", &path)]);
    assert_eq!(
        error.to_string(),
        format!(
            "MERIT_DATABASE_URL_FILE (from file {path}): \"mysql://db\" is not a supported URL; \
             expected a URL starting with sqlite:, postgres:// or postgresql://"
        )
    );
    assert!(matches!(
        error,
        ConfigError::InvalidValue { origin: Source::SecretFile(ref p), .. } if p.as_path() == Path::new(&path)
    ));
}
