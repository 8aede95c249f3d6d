//! Secrets: never shown anywhere, read from `_FILE` files, and policed in
//! production.

use std::path::PathBuf;

use merit_config::{render_show, to_redacted_json, ConfigError, Environment, Loaded, Source};

use crate::{
    config_dir, load, load_err, production_vars, production_vars_with, write_file, SECRET,
};

/// Everything a loaded configuration can be rendered as.
fn renderings(loaded: &Loaded) -> Vec<String> {
    vec![
        format!("{:?}", loaded.settings),
        format!("{:#?}", loaded.settings),
        format!("{loaded:?}"),
        render_show(loaded),
        to_redacted_json(loaded).to_string(),
        serde_json::to_string(&loaded.settings).expect("settings serialize"),
        loaded.warnings.iter().map(ToString::to_string).collect(),
    ]
}

#[test]
fn secrets_and_url_passwords_never_appear_in_any_rendering() {
    let dir = config_dir(&[]);
    let token_file = write_file(dir.path(), "admin", &format!("{SECRET}-admin\n"));
    let loaded = load(
        dir.path(),
        &[
            ("MERIT_ADMIN_TOKEN_FILE", &token_file),
            ("MERIT_JWT_SECRET", &format!("{SECRET}-jwt")),
            (
                "MERIT_DATABASE_URL",
                &format!("postgres://merit:{SECRET}@db/merit"),
            ),
            ("MERIT_AMQP_URL", &format!("amqp://merit:{SECRET}@mq/merit")),
            (
                "MERIT_REDIS_URL",
                &format!("redis://:{SECRET}@cache:6379/0"),
            ),
            (
                "MERIT_CHAIN_RPC_URL",
                &format!("https://user:{SECRET}@rpc.example.org"),
            ),
            // An unknown variable's value is never echoed either.
            ("MERIT_ADMIN_TOKNE", SECRET),
        ],
    );

    for shown in renderings(&loaded) {
        assert!(!shown.contains(SECRET), "secret leaked in:\n{shown}");
        assert!(
            !shown.contains("ac0974bec39a17e36ba4a6b4d238ff944bacb478"),
            "dev key in:\n{shown}"
        );
    }
    let debug = format!("{:?}", loaded.settings);
    assert!(debug.contains("postgres://merit:***@db/merit"), "{debug}");
    assert!(debug.contains("***redacted***"), "{debug}");

    // The real values stay reachable for the code that uses them.
    let settings = &loaded.settings;
    assert_eq!(
        settings.admin_token.expose_secret(),
        format!("{SECRET}-admin")
    );
    assert_eq!(settings.jwt_secret.expose_secret(), format!("{SECRET}-jwt"));
    assert_eq!(
        settings.database_url.expose(),
        format!("postgres://merit:{SECRET}@db/merit")
    );
    assert!(settings
        .admin_token
        .constant_time_eq(format!("{SECRET}-admin").as_bytes()));
}

#[test]
fn production_renderings_hide_every_secret() {
    let dir = config_dir(&[]);
    let loaded = load(dir.path(), &production_vars());
    for shown in renderings(&loaded) {
        assert!(!shown.contains(SECRET), "secret leaked in:\n{shown}");
        assert!(
            !shown.contains(&crate::PRODUCTION_MINTER_KEY[2..]),
            "key leaked in:\n{shown}"
        );
    }
}

#[test]
fn errors_never_contain_secrets() {
    let dir = config_dir(&[(
        "development",
        &format!("database_url = [\"mysql://u:{SECRET}@h\"]\n"),
    )]);
    let type_error = load_err(dir.path(), &[]);

    let empty = config_dir(&[]);
    let errors = [
        type_error,
        load_err(empty.path(), &[("MERIT_MINTER_KEY", SECRET)]),
        load_err(
            empty.path(),
            &[("MERIT_DATABASE_URL", &format!("mysql://u:{SECRET}@h/db"))],
        ),
        load_err(
            empty.path(),
            &[("MERIT_AMQP_URL", &format!("amqp://u:{SECRET}@h x"))],
        ),
        load_err(
            empty.path(),
            &[("MERIT_REDIS_URL", &format!("u:{SECRET}@cache"))],
        ),
        load_err(
            empty.path(),
            &[
                ("MERIT_ADMIN_TOKEN", SECRET),
                ("MERIT_ADMIN_TOKEN_FILE", "/x"),
            ],
        ),
        load_err(
            empty.path(),
            &production_vars_with("MERIT_JWT_SECRET", &[("MERIT_JWT_SECRET", SECRET)]),
        ),
        load_err(
            empty.path(),
            &production_vars_with("MERIT_ADMIN_TOKEN", &[("MERIT_ADMIN_TOKEN", "S3CRET")]),
        ),
    ];
    for error in errors {
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains(SECRET), "secret leaked in: {shown}");
            assert!(!shown.contains("S3CRET"), "secret leaked in: {shown}");
        }
    }
}

#[test]
fn secret_files_are_read_and_trimmed() {
    let dir = config_dir(&[]);
    let admin = write_file(dir.path(), "admin", &format!("{SECRET}\n\n"));
    let jwt = write_file(dir.path(), "jwt", &format!("{SECRET}-jwt  \r\n"));
    let minter = write_file(
        dir.path(),
        "minter",
        &format!("{}\n", crate::PRODUCTION_MINTER_KEY),
    );
    let loaded = load(
        dir.path(),
        &[
            ("MERIT_ADMIN_TOKEN_FILE", &admin),
            ("MERIT_JWT_SECRET_FILE", &jwt),
            ("MERIT_MINTER_KEY_FILE", &minter),
        ],
    );

    assert_eq!(loaded.settings.admin_token.expose_secret(), SECRET);
    assert_eq!(
        loaded.settings.jwt_secret.expose_secret(),
        format!("{SECRET}-jwt")
    );
    assert_eq!(plaintext_minter_key(&loaded), crate::PRODUCTION_MINTER_KEY);
    assert_eq!(
        loaded.source("admin_token"),
        Some(&Source::SecretFile(PathBuf::from(admin)))
    );
    assert_eq!(
        loaded.source("minter_key"),
        Some(&Source::SecretFile(PathBuf::from(minter)))
    );
}

#[test]
fn development_uses_the_built_in_secrets() {
    let dir = config_dir(&[]);
    let loaded = load(dir.path(), &[]);
    assert_eq!(
        plaintext_minter_key(&loaded),
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    );
    assert!(!loaded.settings.admin_token.expose_secret().is_empty());
    assert!(loaded.settings.jwt_secret.expose_secret().len() >= 32);
    assert_eq!(loaded.source("minter_key"), Some(&Source::Default));
}

#[test]
fn production_accepts_a_complete_configuration() {
    let dir = config_dir(&[]);
    let loaded = load(dir.path(), &production_vars());
    assert_eq!(loaded.settings.env, Environment::Production);
    assert_eq!(
        loaded.source("jwt_secret"),
        Some(&Source::Env("MERIT_JWT_SECRET".into()))
    );
}

#[test]
fn production_refuses_each_missing_secret() {
    let dir = config_dir(&[]);
    for (var, file_var) in [
        ("MERIT_ADMIN_TOKEN", "MERIT_ADMIN_TOKEN_FILE"),
        ("MERIT_JWT_SECRET", "MERIT_JWT_SECRET_FILE"),
    ] {
        let error = load_err(dir.path(), &production_vars_with(var, &[]));
        assert_eq!(
            error.to_string(),
            format!("{var} is required in production; set {var} or {file_var}")
        );
        assert!(matches!(error, ConfigError::Missing { var: v, .. } if v == var));
    }
}

#[test]
fn production_refuses_the_development_secrets_however_spelled() {
    let dir = config_dir(&[]);
    let dev_key = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    let upper = format!("0x{}", dev_key.to_uppercase());
    let bare = dev_key.to_owned();
    for key in [format!("0x{dev_key}"), upper, bare] {
        let error = load_err(
            dir.path(),
            &production_vars_with("MERIT_MINTER_KEY", &[("MERIT_MINTER_KEY", &key)]),
        );
        assert_eq!(
            error.to_string(),
            "MERIT_MINTER_KEY (from environment): the value is the built-in development default, \
             which is public; production needs its own value \
             (set MERIT_MINTER_KEY or MERIT_MINTER_KEY_FILE)"
        );
    }

    let development = load(dir.path(), &[]).settings;
    let dev_token = development.admin_token.expose_secret();
    let error = load_err(
        dir.path(),
        &production_vars_with("MERIT_ADMIN_TOKEN", &[("MERIT_ADMIN_TOKEN", dev_token)]),
    );
    assert!(
        matches!(
            error,
            ConfigError::DevelopmentSecretInProduction {
                var: "MERIT_ADMIN_TOKEN",
                ..
            }
        ),
        "{error:?}"
    );

    let dev_jwt = development.jwt_secret.expose_secret();
    let jwt_file = write_file(dir.path(), "jwt", dev_jwt);
    let error = load_err(
        dir.path(),
        &production_vars_with("MERIT_JWT_SECRET", &[("MERIT_JWT_SECRET_FILE", &jwt_file)]),
    );
    assert!(
        matches!(
            error,
            ConfigError::DevelopmentSecretInProduction {
                var: "MERIT_JWT_SECRET",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("MERIT_JWT_SECRET_FILE (from file "),
        "{error}"
    );
}

#[test]
fn production_refuses_short_secrets() {
    let dir = config_dir(&[]);
    let error = load_err(
        dir.path(),
        &production_vars_with("MERIT_JWT_SECRET", &[("MERIT_JWT_SECRET", &"j".repeat(31))]),
    );
    assert_eq!(
        error.to_string(),
        "MERIT_JWT_SECRET (from environment): the value (secret, not shown) is too short; \
         expected at least 32 bytes in production"
    );
    let error = load_err(
        dir.path(),
        &production_vars_with(
            "MERIT_ADMIN_TOKEN",
            &[("MERIT_ADMIN_TOKEN", &"a".repeat(15))],
        ),
    );
    assert!(
        error
            .to_string()
            .contains("expected at least 16 characters in production"),
        "{error}"
    );

    // The same lengths are fine outside production.
    let loaded = load(
        dir.path(),
        &[
            ("MERIT_JWT_SECRET", &"j".repeat(31)),
            ("MERIT_ADMIN_TOKEN", "short"),
        ],
    );
    assert_eq!(loaded.settings.admin_token.expose_secret(), "short");
}

#[test]
fn production_refuses_the_development_database() {
    let dir = config_dir(&[]);
    let error = load_err(dir.path(), &production_vars_with("MERIT_DATABASE_URL", &[]));
    assert!(
        matches!(error, ConfigError::DevelopmentDatabaseInProduction { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("MERIT_DATABASE_URL must be set in production"),
        "{error}"
    );

    let explicit = load(
        dir.path(),
        &production_vars_with(
            "MERIT_DATABASE_URL",
            &[("MERIT_DATABASE_URL", "sqlite:///var/lib/merit/merit.db")],
        ),
    );
    assert_eq!(
        explicit.settings.database_url.expose(),
        "sqlite:///var/lib/merit/merit.db"
    );
}

#[test]
fn load_options_debug_lists_variable_names_only() {
    let options = merit_config::LoadOptions::new("config").var("MERIT_ADMIN_TOKEN", SECRET);
    let debug = format!("{options:?}");
    assert!(debug.contains("MERIT_ADMIN_TOKEN"), "{debug}");
    assert!(!debug.contains(SECRET), "{debug}");
}

#[test]
fn every_password_of_a_broker_address_list_is_redacted() {
    let dir = config_dir(&[]);
    let list =
        format!("amqp://merit:{SECRET}@mq1:5672/merit,amqps://merit:{SECRET}2@mq2:5671/merit");
    let loaded = load(dir.path(), &[("MERIT_AMQP_URL", &list)]);
    for shown in renderings(&loaded) {
        assert!(!shown.contains(SECRET), "secret leaked in:\n{shown}");
    }
    let debug = format!("{:?}", loaded.settings);
    assert!(
        debug.contains("amqp://merit:***@mq1:5672/merit,amqps://merit:***@mq2:5671/merit"),
        "{debug}"
    );
    let url = loaded.settings.amqp_url.as_ref().expect("set");
    assert_eq!(url.expose(), list);
}

/// The minter's plaintext key, as the node would sign with it.
fn plaintext_minter_key(loaded: &Loaded) -> &str {
    loaded
        .settings
        .minter
        .key()
        .expect("a plaintext key")
        .expose_secret()
}
