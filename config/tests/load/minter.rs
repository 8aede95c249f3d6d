//! The minter key's three sources (plaintext key, encrypted keystore, external signer):
//! exactly one, each complete, never shown, and production's rule on plaintext keys.

use std::path::PathBuf;

use merit_config::{render_show, to_redacted_json, ConfigError, MinterSource, Source, Warning};

use crate::{config_dir, load, load_err, production_vars_with, write_file, SECRET};

const ADDRESS: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";

#[test]
fn a_keystore_with_its_password_file_is_the_source_and_the_password_never_shows() {
    let dir = config_dir(&[]);
    let password = write_file(dir.path(), "password", &format!("{SECRET}-pw\n"));
    let keystore = write_file(dir.path(), "keystore.json", "{}");
    let loaded = load(
        dir.path(),
        &[
            ("MERIT_MINTER_KEYSTORE", &keystore),
            ("MERIT_MINTER_KEYSTORE_PASSWORD_FILE", &password),
        ],
    );
    let MinterSource::Keystore {
        path,
        password: secret,
    } = &loaded.settings.minter
    else {
        panic!("expected a keystore, got {:?}", loaded.settings.minter)
    };
    assert_eq!(path, &PathBuf::from(&keystore));
    assert_eq!(secret.expose_secret(), format!("{SECRET}-pw"), "trimmed");
    assert_eq!(
        loaded.source("minter_keystore_password"),
        Some(&Source::SecretFile(PathBuf::from(&password)))
    );
    // The development key does not count as a second source.
    assert!(loaded.settings.minter.key().is_none());
    let json = to_redacted_json(&loaded);
    assert_eq!(json["settings"]["minter_keystore"]["value"], keystore);
    assert_eq!(
        json["settings"]["minter_keystore_password"]["value"],
        "***redacted***"
    );
    assert_eq!(
        json["settings"]["minter_key"]["value"],
        serde_json::Value::Null
    );
    for text in [
        render_show(&loaded),
        json.to_string(),
        format!("{:?}", loaded.settings),
    ] {
        assert!(!text.contains(SECRET), "password shown in {text}");
    }
}

#[test]
fn an_external_signer_needs_its_address_and_its_url_password_never_shows() {
    let dir = config_dir(&[]);
    let url = format!("https://merit:{SECRET}@signer.internal:8545");
    let loaded = load(
        dir.path(),
        &[
            ("MERIT_MINTER_SIGNER_URL", url.as_str()),
            ("MERIT_MINTER_ADDRESS", ADDRESS),
        ],
    );
    let MinterSource::Signer { url: got, address } = &loaded.settings.minter else {
        panic!("expected a signer, got {:?}", loaded.settings.minter)
    };
    assert_eq!(got.expose(), url);
    assert_eq!(address, ADDRESS);
    let show = render_show(&loaded);
    assert!(show.contains(ADDRESS), "{show}");
    assert!(!show.contains(SECRET), "{show}");
    assert!(!format!("{:?}", loaded.settings).contains(SECRET));

    let error = load_err(dir.path(), &[("MERIT_MINTER_SIGNER_URL", url.as_str())]);
    assert!(
        matches!(
            error,
            ConfigError::IncompleteMinterSource {
                missing: "MERIT_MINTER_ADDRESS",
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.to_string().contains(SECRET));
    let error = load_err(
        dir.path(),
        &[
            ("MERIT_MINTER_SIGNER_URL", url.as_str()),
            ("MERIT_MINTER_ADDRESS", "0x1234"),
        ],
    );
    assert!(
        error
            .to_string()
            .starts_with("MERIT_MINTER_ADDRESS (from environment): \"0x1234\" is not an address"),
        "{error}"
    );
}

/// Variables, then the two sources the error must name.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

#[test]
fn two_sources_at_once_are_refused_naming_both() {
    let dir = config_dir(&[]);
    let password = write_file(dir.path(), "password", SECRET);
    let cases: [Case<'_>; 3] = [
        (
            &[
                ("MERIT_MINTER_KEY", crate::PRODUCTION_MINTER_KEY),
                ("MERIT_MINTER_KEYSTORE", "/k.json"),
                ("MERIT_MINTER_KEYSTORE_PASSWORD_FILE", &password),
            ],
            "MERIT_MINTER_KEY",
            "MERIT_MINTER_KEYSTORE",
        ),
        (
            &[
                ("MERIT_MINTER_KEYSTORE", "/k.json"),
                ("MERIT_MINTER_KEYSTORE_PASSWORD_FILE", &password),
                ("MERIT_MINTER_SIGNER_URL", "http://127.0.0.1:8545"),
                ("MERIT_MINTER_ADDRESS", ADDRESS),
            ],
            "MERIT_MINTER_KEYSTORE",
            "MERIT_MINTER_SIGNER_URL",
        ),
        (
            &[
                ("MERIT_MINTER_KEY", crate::PRODUCTION_MINTER_KEY),
                ("MERIT_MINTER_SIGNER_URL", "http://127.0.0.1:8545"),
                ("MERIT_MINTER_ADDRESS", ADDRESS),
            ],
            "MERIT_MINTER_KEY",
            "MERIT_MINTER_SIGNER_URL",
        ),
    ];
    for (vars, first, second) in cases {
        let error = load_err(dir.path(), vars);
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("{first} and {second} are both set")),
            "{text}"
        );
        assert!(
            !text.contains(SECRET) && !text.contains("1111111111"),
            "{text}"
        );
    }
}

#[test]
fn a_keystore_without_its_password_and_a_password_without_a_keystore_are_refused() {
    let dir = config_dir(&[]);
    let error = load_err(dir.path(), &[("MERIT_MINTER_KEYSTORE", "/k.json")]);
    assert_eq!(
        error.to_string(),
        "MERIT_MINTER_KEYSTORE is set but MERIT_MINTER_KEYSTORE_PASSWORD_FILE is not; set both (or neither)"
    );
    let password = write_file(dir.path(), "password", SECRET);
    let error = load_err(
        dir.path(),
        &[("MERIT_MINTER_KEYSTORE_PASSWORD_FILE", &password)],
    );
    assert_eq!(
        error.to_string(),
        "MERIT_MINTER_KEYSTORE_PASSWORD_FILE is set but MERIT_MINTER_KEYSTORE is not; set both (or neither)"
    );
}

#[test]
fn production_refuses_a_plaintext_key_without_the_override_and_warns_with_it() {
    let dir = config_dir(&[]);
    let without = production_vars_with("MERIT_MINTER_ALLOW_PLAINTEXT_KEY", &[]);
    let error = load_err(dir.path(), &without);
    assert!(
        matches!(
            error,
            ConfigError::PlaintextMinterKeyInProduction {
                name: "MERIT_MINTER_KEY",
                ..
            }
        ),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("MERIT_MINTER_ALLOW_PLAINTEXT_KEY=true"),
        "{text}"
    );
    assert!(
        !text.contains("1111111111"),
        "the key is never shown: {text}"
    );

    // From a file, and with an explicit `false`, the same.
    let key = write_file(dir.path(), "minter", crate::PRODUCTION_MINTER_KEY);
    let error = load_err(
        dir.path(),
        &production_vars_with(
            "MERIT_MINTER_KEY",
            &[
                ("MERIT_MINTER_KEY_FILE", &key),
                ("MERIT_MINTER_ALLOW_PLAINTEXT_KEY", "false"),
            ],
        )
        .into_iter()
        .filter(|(k, v)| !(*k == "MERIT_MINTER_ALLOW_PLAINTEXT_KEY" && *v == "true"))
        .collect::<Vec<_>>(),
    );
    assert!(
        error
            .to_string()
            .starts_with("MERIT_MINTER_KEY_FILE (from file "),
        "{error}"
    );

    let with = production_vars_with(
        "MERIT_MINTER_ALLOW_PLAINTEXT_KEY",
        &[("MERIT_MINTER_ALLOW_PLAINTEXT_KEY", "true")],
    );
    let loaded = load(dir.path(), &with);
    assert!(loaded.settings.minter.key().is_some());
    assert!(loaded.settings.minter_allow_plaintext_key);
    assert!(
        loaded
            .warnings
            .contains(&Warning::PlaintextMinterKeyInProduction),
        "{:?}",
        loaded.warnings
    );

    let bad = production_vars_with(
        "MERIT_MINTER_ALLOW_PLAINTEXT_KEY",
        &[("MERIT_MINTER_ALLOW_PLAINTEXT_KEY", "yes")],
    );
    let error = load_err(dir.path(), &bad);
    assert!(
        error.to_string().contains("expected true or false"),
        "{error}"
    );
}

#[test]
fn production_accepts_a_keystore_or_a_signer_without_warning_and_needs_one_source() {
    let dir = config_dir(&[]);
    let password = write_file(dir.path(), "password", SECRET);
    let keystore = production_vars_with(
        "MERIT_MINTER_KEY",
        &[
            ("MERIT_MINTER_KEYSTORE", "/run/secrets/minter.json"),
            ("MERIT_MINTER_KEYSTORE_PASSWORD_FILE", &password),
        ],
    );
    let loaded = load(dir.path(), &keystore);
    assert_eq!(loaded.settings.minter.kind(), "keystore");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    let signer = production_vars_with(
        "MERIT_MINTER_KEY",
        &[
            ("MERIT_MINTER_SIGNER_URL", "https://signer.internal"),
            ("MERIT_MINTER_ADDRESS", ADDRESS),
        ],
    );
    assert_eq!(load(dir.path(), &signer).settings.minter.kind(), "signer");

    let none = production_vars_with("MERIT_MINTER_KEY", &[]);
    let error = load_err(dir.path(), &none);
    assert!(matches!(error, ConfigError::MissingMinter), "{error}");
    let text = error.to_string();
    for var in [
        "MERIT_MINTER_KEYSTORE",
        "MERIT_MINTER_SIGNER_URL",
        "MERIT_MINTER_KEY",
    ] {
        assert!(text.contains(var), "{text}");
    }
}

#[test]
fn development_falls_back_to_the_development_key() {
    let dir = config_dir(&[]);
    let loaded = load(dir.path(), &[]);
    assert_eq!(loaded.settings.minter.kind(), "key");
    assert!(loaded.warnings.is_empty());
    assert!(!loaded.settings.minter_allow_plaintext_key);
}
