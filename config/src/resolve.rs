//! From the winning raw values to typed [`Settings`]: parse each key, check
//! its range or shape, then apply the production policy (no missing secret,
//! no public development secret, no development database).
//!
//! Checks run in the order of the fields and stop at the first failure. A
//! failure names the key as its layer spelled it (see [`Field::name`]) and
//! never shows a secret; URLs are shown with their password redacted.

use std::net::SocketAddr;

use crate::{
    error::{ConfigError, Result},
    keys::{self, is_node_id_char, Key, Sensitivity, DEV_DATABASE_URL, NODE_ID_MAX_LEN},
    secret::{redact_url, Secret, SecretUrl},
    settings::{
        ActorSettings, CacheSettings, ChainSettings, ClusterSettings, Environment, HttpSettings,
        LogFormat, LogSettings, MailboxSettings, MinterSource, OtelSettings, RetentionSettings,
        Settings,
    },
    source::{Layers, Raw, RawValue, Source},
};

/// The order of the secp256k1 group: a private key must be below it.
const SECP256K1_ORDER: &str = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";

/// Largest chain id that wallets and signers handle safely (EIP-2294).
const MAX_CHAIN_ID: i128 = 4_503_599_627_370_476;
/// Longest retention, days (a hundred years: "for ever" is 0).
const MAX_RETENTION_DAYS: i128 = 36_500;

const DATABASE_SCHEMES: &[&str] = &["sqlite:", "postgres://", "postgresql://"];
const AMQP_SCHEMES: &[&str] = &["amqp://", "amqps://"];
const REDIS_SCHEMES: &[&str] = &["redis://", "rediss://"];
const OTEL_SCHEMES: &[&str] = &["http://", "https://"];
/// HTTP JSON-RPC only: the chain adapter polls (logs past the confirmation depth), so a
/// subscription transport would add nothing but a second code path.
const CHAIN_RPC_SCHEMES: &[&str] = &["http://", "https://"];

/// Builds and checks the settings of `env` from `layers`, one section at a time in the
/// order of the fields.
pub(crate) fn settings(env: Environment, layers: &Layers) -> Result<Settings> {
    let f = Fields { layers, env };
    Ok(Settings {
        env,
        node_id: node_id(&f.get(&keys::NODE_ID))?,
        http_addr: http_addr(&f.get(&keys::HTTP_ADDR))?,
        metrics_addr: metrics_addr(&f.get(&keys::METRICS_ADDR))?,
        http: http_settings(&f)?,
        database_url: database_url(&f.get(&keys::DATABASE_URL))?,
        amqp_url: amqp_urls(&f.get(&keys::AMQP_URL))?,
        redis_url: optional_url(&f.get(&keys::REDIS_URL), REDIS_SCHEMES)?,
        chain_rpc_url: optional_url(&f.get(&keys::CHAIN_RPC_URL), CHAIN_RPC_SCHEMES)?,
        admin_token: admin_token(&f.get(&keys::ADMIN_TOKEN))?,
        jwt_secret: jwt_secret(&f.get(&keys::JWT_SECRET))?,
        minter: minter(
            &f.get(&keys::MINTER_KEY),
            &f.get(&keys::MINTER_KEYSTORE),
            &f.get(&keys::MINTER_KEYSTORE_PASSWORD),
            &f.get(&keys::MINTER_SIGNER_URL),
            &f.get(&keys::MINTER_ADDRESS),
            &f.get(&keys::MINTER_ALLOW_PLAINTEXT_KEY),
        )?,
        minter_allow_plaintext_key: boolean(&f.get(&keys::MINTER_ALLOW_PLAINTEXT_KEY))?,
        mailbox: mailbox_settings(&f)?,
        cluster: cluster_settings(&f)?,
        actors: actor_settings(&f)?,
        cache: cache_settings(&f)?,
        retention: retention_settings(&f)?,
        chain: chain_settings(&f)?,
        log: LogSettings {
            format: log_format(&f.get(&keys::LOG_FORMAT))?,
            filter: log_filter(&f.get(&keys::LOG_FILTER))?,
        },
        otel: OtelSettings {
            endpoint: optional_url(&f.get(&keys::OTEL_ENDPOINT), OTEL_SCHEMES)?,
            sample_percent: f.get(&keys::OTEL_SAMPLE_PERCENT).integer(0, 100)?,
        },
    })
}

/// The winning raw values of every key, for the environment being built.
struct Fields<'a> {
    layers: &'a Layers,
    env: Environment,
}

impl<'a> Fields<'a> {
    fn get(&self, key: &'static Key) -> Field<'a> {
        Field {
            key,
            raw: self.layers.get(key),
            env: self.env,
        }
    }
}

fn http_settings(f: &Fields<'_>) -> Result<HttpSettings> {
    Ok(HttpSettings {
        trusted_proxies: trusted_proxies(&f.get(&keys::HTTP_TRUSTED_PROXIES))?,
        forwarded_header: forwarded_header(&f.get(&keys::HTTP_FORWARDED_HEADER))?,
        rate_per_sec: f.get(&keys::HTTP_RATE_PER_SEC).integer(1, 1_000_000)?,
        rate_burst: f.get(&keys::HTTP_RATE_BURST).integer(1, 1_000_000)?,
        user_rate_per_sec: f.get(&keys::HTTP_USER_RATE_PER_SEC).integer(1, 1_000_000)?,
        user_rate_burst: f.get(&keys::HTTP_USER_RATE_BURST).integer(1, 1_000_000)?,
        ws_send_timeout_ms: f.get(&keys::HTTP_WS_SEND_TIMEOUT_MS).integer(100, 60_000)?,
        ws_max_sessions_per_user: f
            .get(&keys::HTTP_WS_MAX_SESSIONS_PER_USER)
            .integer(1, 10_000)?,
        siwe_domain: siwe_domain(&f.get(&keys::HTTP_SIWE_DOMAIN))?,
        siwe_origins: siwe_origins(&f.get(&keys::HTTP_SIWE_ORIGINS))?,
        login_ttl_secs: f.get(&keys::HTTP_LOGIN_TTL_SECS).integer(60, 86_400)?,
    })
}

fn mailbox_settings(f: &Fields<'_>) -> Result<MailboxSettings> {
    Ok(MailboxSettings {
        shards: f.get(&keys::MAILBOX_SHARDS).integer(1, 256)?,
        prefetch: f.get(&keys::MAILBOX_PREFETCH).integer(1, u16::MAX.into())?,
        max_attempts: f.get(&keys::MAILBOX_MAX_ATTEMPTS).integer(1, 100)?,
        retry_base_ms: f.get(&keys::MAILBOX_RETRY_BASE_MS).integer(1, 600_000)?,
        quorum_group_size: f
            .get(&keys::MAILBOX_QUORUM_GROUP_SIZE)
            .optional_integer(1, 255)?,
    })
}

fn cluster_settings(f: &Fields<'_>) -> Result<ClusterSettings> {
    Ok(ClusterSettings {
        rebalance_interval_ms: f
            .get(&keys::CLUSTER_REBALANCE_INTERVAL_MS)
            .integer(100, 60_000)?,
        drain_limit_ms: f.get(&keys::CLUSTER_DRAIN_LIMIT_MS).integer(100, 600_000)?,
    })
}

fn actor_settings(f: &Fields<'_>) -> Result<ActorSettings> {
    Ok(ActorSettings {
        idle_passivate_secs: f
            .get(&keys::ACTORS_IDLE_PASSIVATE_SECS)
            .integer(1, 604_800)?,
        max_resident: f.get(&keys::ACTORS_MAX_RESIDENT).integer(1, 100_000_000)?,
        turn_batch: f.get(&keys::ACTORS_TURN_BATCH).integer(1, 1_000)?,
    })
}

fn cache_settings(f: &Fields<'_>) -> Result<CacheSettings> {
    Ok(CacheSettings {
        l1_capacity: f.get(&keys::CACHE_L1_CAPACITY).integer(0, 100_000_000)?,
        ttl_secs: f.get(&keys::CACHE_TTL_SECS).integer(1, 604_800)?,
        redis_prefix: redis_prefix(&f.get(&keys::CACHE_REDIS_PREFIX))?,
    })
}

fn retention_settings(f: &Fields<'_>) -> Result<RetentionSettings> {
    Ok(RetentionSettings {
        inbox_days: f
            .get(&keys::RETENTION_INBOX_DAYS)
            .integer(0, MAX_RETENTION_DAYS)?,
        outbox_days: f
            .get(&keys::RETENTION_OUTBOX_DAYS)
            .integer(0, MAX_RETENTION_DAYS)?,
        notifications_days: f
            .get(&keys::RETENTION_NOTIFICATIONS_DAYS)
            .integer(0, MAX_RETENTION_DAYS)?,
        sweep_secs: f.get(&keys::RETENTION_SWEEP_SECS).integer(1, 86_400)?,
    })
}

fn chain_settings(f: &Fields<'_>) -> Result<ChainSettings> {
    Ok(ChainSettings {
        chain_id: f.get(&keys::CHAIN_CHAIN_ID).integer(1, MAX_CHAIN_ID)?,
        confirmations: f.get(&keys::CHAIN_CONFIRMATIONS).integer(0, 1_000)?,
        contract_address: contract_address(&f.get(&keys::CHAIN_CONTRACT_ADDRESS))?,
        poll_interval_ms: f.get(&keys::CHAIN_POLL_INTERVAL_MS).integer(10, 600_000)?,
    })
}

/// One key's winning value, with what is needed to report a problem with it.
struct Field<'a> {
    key: &'static Key,
    raw: Option<&'a Raw>,
    env: Environment,
}

impl<'a> Field<'a> {
    fn source(&self) -> Source {
        self.raw.map_or(Source::Default, |raw| raw.source.clone())
    }

    /// The key as the operator wrote it: the variable for environment values,
    /// the `_FILE` variable for secret files, the TOML key otherwise.
    fn name(&self) -> &'static str {
        match self.raw.map(|raw| &raw.source) {
            Some(Source::Env(_)) => self.key.var,
            Some(Source::SecretFile(_)) => self.key.file_var.unwrap_or(self.key.var),
            Some(Source::File(_) | Source::Default) | None => self.key.path,
        }
    }

    /// The value as it may appear in a message.
    fn shown(&self) -> Option<String> {
        let value = self.raw?.value.to_string();
        match self.key.sensitivity {
            Sensitivity::Plain => Some(value),
            Sensitivity::Url => Some(redact_url(&value)),
            Sensitivity::Secret => None,
        }
    }

    fn invalid(&self, problem: &'static str, expected: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            name: self.name(),
            origin: self.source(),
            value: self.shown(),
            problem,
            expected: expected.into(),
        }
    }

    /// The text value, or `None` when no layer set it.
    fn text(&self) -> Result<Option<&'a str>> {
        match self.raw.map(|raw| &raw.value) {
            None => Ok(None),
            Some(RawValue::Text(text)) => Ok(Some(text)),
            Some(RawValue::Integer(_)) => Err(self.invalid("is an integer", "a string")),
        }
    }

    /// The text value; an optional setting set to `""` counts as unset, so
    /// `MERIT_AMQP_URL=` switches back to the embedded default.
    fn optional_text(&self) -> Result<Option<&'a str>> {
        Ok(self.text()?.filter(|text| !text.is_empty()))
    }

    /// The text value of a setting that must have one.
    fn required_text(&self) -> Result<&'a str> {
        self.text()?.ok_or_else(|| self.missing())
    }

    fn missing(&self) -> ConfigError {
        ConfigError::Missing {
            var: self.key.var,
            file_var: self.key.file_var,
            env: self.env,
        }
    }

    /// Like [`Self::integer`] for a setting with no default: unset (or `""`) is `None`.
    fn optional_integer<T: TryFrom<i128>>(&self, min: i128, max: i128) -> Result<Option<T>> {
        match self.raw.map(|raw| &raw.value) {
            None => Ok(None),
            Some(RawValue::Text(text)) if text.is_empty() => Ok(None),
            Some(_) => self.integer(min, max).map(Some),
        }
    }

    /// An integer in `min..=max`, from a TOML integer or decimal text.
    fn integer<T: TryFrom<i128>>(&self, min: i128, max: i128) -> Result<T> {
        let expected = format!("a whole number from {min} to {max}");
        let number = match self.raw.map(|raw| &raw.value) {
            Some(RawValue::Integer(number)) => i128::from(*number),
            Some(RawValue::Text(text)) => text
                .parse::<i128>()
                .map_err(|_| self.invalid("is not a whole number", expected.clone()))?,
            None => return Err(self.missing()),
        };
        if !(min..=max).contains(&number) {
            return Err(self.invalid("is out of range", expected));
        }
        T::try_from(number).map_err(|_| self.invalid("is out of range", expected))
    }

    /// Refuses, in production, the public development value of a secret.
    /// `normalize` makes spelling variants (case, `0x`) of that value count.
    fn refuse_development_value(&self, value: &str, normalize: fn(&str) -> String) -> Result<()> {
        let Some(development) = self.key.development_value() else {
            return Ok(());
        };
        if self.env.is_production() && normalize(value) == normalize(development) {
            return Err(ConfigError::DevelopmentSecretInProduction {
                name: self.name(),
                origin: self.source(),
                var: self.key.var,
                file_var: self.key.file_var.unwrap_or(self.key.var),
            });
        }
        Ok(())
    }
}

fn node_id(field: &Field<'_>) -> Result<String> {
    let value = field.required_text()?;
    if value.is_empty() || value.len() > NODE_ID_MAX_LEN || !value.chars().all(is_node_id_char) {
        return Err(field.invalid(
            "is not a valid node id",
            format!("1 to {NODE_ID_MAX_LEN} characters from A-Z a-z 0-9 . _ -"),
        ));
    }
    Ok(value.to_owned())
}

/// Redis key and channel names start with it: 1 to 64 of `A-Z a-z 0-9 : . _ -`.
fn redis_prefix(field: &Field<'_>) -> Result<String> {
    let value = field.required_text()?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || ":._-".contains(c);
    if value.is_empty() || value.len() > 64 || !value.chars().all(allowed) {
        return Err(field.invalid(
            "is not a valid Redis key prefix",
            "1 to 64 characters from A-Z a-z 0-9 : . _ -",
        ));
    }
    Ok(value.to_owned())
}

fn http_addr(field: &Field<'_>) -> Result<SocketAddr> {
    field
        .required_text()?
        .parse()
        .map_err(|_| field.invalid("is not a socket address", "host:port like 127.0.0.1:8080"))
}

fn metrics_addr(field: &Field<'_>) -> Result<Option<SocketAddr>> {
    let Some(value) = field.optional_text()? else {
        return Ok(None);
    };
    value
        .parse()
        .map(Some)
        .map_err(|_| field.invalid("is not a socket address", "host:port like 127.0.0.1:9090"))
}

/// Whether `text` is an IP address or a CIDR block (`10.0.0.0/8`, `fd00::/8`).
pub(crate) fn is_ip_or_cidr(text: &str) -> bool {
    let (ip, prefix) = match text.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (text, None),
    };
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= max))
}

/// The non-empty, trimmed items of a comma-separated setting; empty when unset.
fn comma_list(field: &Field<'_>) -> Result<Vec<String>> {
    Ok(field
        .optional_text()?
        .map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

/// A comma-separated list of IP addresses and CIDR blocks; empty when unset.
fn trusted_proxies(field: &Field<'_>) -> Result<Vec<String>> {
    let items = comma_list(field)?;
    if items.iter().any(|item| !is_ip_or_cidr(item)) {
        return Err(field.invalid(
            "is not a list of IP addresses and CIDR blocks",
            "comma-separated addresses or blocks like 10.0.0.0/8, 127.0.0.1, fd00::/8",
        ));
    }
    Ok(items)
}

/// Which forwarding header the trusted proxies write: `x-forwarded-for` or `forwarded`.
fn forwarded_header(field: &Field<'_>) -> Result<String> {
    let value = field.required_text()?.to_ascii_lowercase();
    if value != "x-forwarded-for" && value != "forwarded" {
        return Err(field.invalid(
            "is not a forwarding header",
            "x-forwarded-for or forwarded (RFC 7239)",
        ));
    }
    Ok(value)
}

/// An RFC 3986 authority (`merit.example`, `localhost:8080`): no scheme, path or spaces.
fn siwe_domain(field: &Field<'_>) -> Result<Option<String>> {
    let Some(value) = field.optional_text()? else {
        return Ok(None);
    };
    let ok = value.len() <= 253
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if !ok {
        return Err(field.invalid(
            "is not a domain",
            "a host with an optional port, like merit.example or localhost:8080",
        ));
    }
    Ok(Some(value.to_ascii_lowercase()))
}

/// A comma-separated list of `scheme://authority` origins.
fn siwe_origins(field: &Field<'_>) -> Result<Vec<String>> {
    let items: Vec<String> = comma_list(field)?
        .iter()
        .map(|item| item.trim_end_matches('/').to_ascii_lowercase())
        .collect();
    let origin = |item: &String| {
        item.split_once("://").is_some_and(|(scheme, authority)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
                && !authority.is_empty()
                && !authority.contains(['/', '?', '#', ' '])
        })
    };
    if !items.iter().all(origin) {
        return Err(field.invalid(
            "is not a list of origins",
            "comma-separated scheme://host[:port] like https://merit.example",
        ));
    }
    Ok(items)
}

/// Checks that `value` is a URL with one of `schemes` and something after it.
fn url(field: &Field<'_>, value: &str, schemes: &[&str]) -> Result<SecretUrl> {
    let expected = format!("a URL starting with {}", one_of(schemes));
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(field.invalid("contains whitespace", expected));
    }
    let lower = value.to_ascii_lowercase();
    let Some(scheme) = schemes.iter().find(|scheme| lower.starts_with(*scheme)) else {
        return Err(field.invalid("is not a supported URL", expected));
    };
    if value.len() == scheme.len() {
        return Err(field.invalid("has nothing after the scheme", expected));
    }
    Ok(SecretUrl::new(value))
}

fn database_url(field: &Field<'_>) -> Result<SecretUrl> {
    let value = field.required_text()?;
    let url = url(field, value, DATABASE_SCHEMES)?;
    if field.env.is_production() && value == DEV_DATABASE_URL {
        return Err(ConfigError::DevelopmentDatabaseInProduction {
            default: DEV_DATABASE_URL,
        });
    }
    Ok(url)
}

fn optional_url(field: &Field<'_>, schemes: &[&str]) -> Result<Option<SecretUrl>> {
    field
        .optional_text()?
        .map(|value| url(field, value, schemes))
        .transpose()
}

/// One broker address, or several nodes of one cluster separated by commas: each must be
/// an AMQP URL.
fn amqp_urls(field: &Field<'_>) -> Result<Option<SecretUrl>> {
    let Some(value) = field.optional_text()? else {
        return Ok(None);
    };
    let parts = merit_messages::split_url_list(value);
    if parts.len() > MAX_AMQP_ADDRESSES {
        return Err(field.invalid(
            "lists too many addresses",
            format!("at most {MAX_AMQP_ADDRESSES} comma-separated AMQP URLs"),
        ));
    }
    for part in parts {
        url(field, part, AMQP_SCHEMES)?;
    }
    Ok(Some(SecretUrl::new(value)))
}

/// Most broker addresses `MERIT_AMQP_URL` may list.
const MAX_AMQP_ADDRESSES: usize = 16;

fn admin_token(field: &Field<'_>) -> Result<Secret> {
    let value = field.required_text()?;
    if value.is_empty() {
        return Err(field.invalid("is empty", "a non-empty token"));
    }
    field.refuse_development_value(value, str::to_owned)?;
    if field.env.is_production() && value.chars().count() < 16 {
        return Err(field.invalid("is too short", "at least 16 characters in production"));
    }
    Ok(Secret::new(value))
}

fn jwt_secret(field: &Field<'_>) -> Result<Secret> {
    let value = field.required_text()?;
    if value.is_empty() {
        return Err(field.invalid("is empty", "a non-empty secret"));
    }
    field.refuse_development_value(value, str::to_owned)?;
    if field.env.is_production() && value.len() < 32 {
        return Err(field.invalid("is too short", "at least 32 bytes in production"));
    }
    Ok(Secret::new(value))
}

fn minter_key(field: &Field<'_>) -> Result<Secret> {
    let value = field.required_text()?;
    let digits = normalize_hex_key(value);
    if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(field.invalid(
            "is not a 32-byte hex private key",
            "64 hex digits, optionally prefixed with 0x",
        ));
    }
    if digits.bytes().all(|b| b == b'0') || digits.as_str() >= SECP256K1_ORDER {
        return Err(field.invalid(
            "is not a valid secp256k1 private key",
            "a nonzero key below the secp256k1 group order",
        ));
    }
    field.refuse_development_value(value, normalize_hex_key)?;
    Ok(Secret::new(value))
}

/// `true` or `false` (any case).
fn boolean(field: &Field<'_>) -> Result<bool> {
    let value = field.required_text()?;
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(field.invalid("is not a boolean", "true or false"))
    }
}

/// Whether the operator set this key (a built-in default does not count).
fn configured(field: &Field<'_>) -> Result<bool> {
    Ok(!matches!(field.source(), Source::Default) && field.optional_text()?.is_some())
}

/// Exactly one source of the minter key: a keystore (path + password), an external
/// signer (URL + address) or a plaintext key — the built-in development key when none
/// is set, outside production. Production refuses a plaintext key unless `allow` is
/// `true`.
fn minter(
    key: &Field<'_>,
    keystore: &Field<'_>,
    password: &Field<'_>,
    signer: &Field<'_>,
    address: &Field<'_>,
    allow: &Field<'_>,
) -> Result<MinterSource> {
    let chosen: Vec<&Field<'_>> = [key, keystore, signer]
        .into_iter()
        .map(|f| configured(f).map(|set| set.then_some(f)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    if let [first, second, ..] = chosen.as_slice() {
        return Err(ConfigError::ConflictingMinterSources {
            first: first.name(),
            second: second.name(),
        });
    }
    // The companions of a source are meaningless (and a likely mistake) without it.
    for (companion, of) in [(password, keystore), (address, signer)] {
        if configured(companion)? && !configured(of)? {
            return Err(ConfigError::IncompleteMinterSource {
                set: companion.name(),
                missing: of.key.var,
            });
        }
    }
    if configured(keystore)? {
        let path = keystore.required_text()?;
        let password = password
            .optional_text()?
            .ok_or(ConfigError::IncompleteMinterSource {
                set: keystore.name(),
                missing: "MERIT_MINTER_KEYSTORE_PASSWORD_FILE",
            })?;
        return Ok(MinterSource::Keystore {
            path: path.into(),
            password: Secret::new(password),
        });
    }
    if configured(signer)? {
        let url = url(signer, signer.required_text()?, CHAIN_RPC_SCHEMES)?;
        let value = address
            .optional_text()?
            .ok_or(ConfigError::IncompleteMinterSource {
                set: signer.name(),
                missing: "MERIT_MINTER_ADDRESS",
            })?;
        if !is_address(value) {
            return Err(address.invalid("is not an address", "0x followed by 40 hex digits"));
        }
        return Ok(MinterSource::Signer {
            url,
            address: value.to_owned(),
        });
    }
    if key.env.is_production() && key.raw.is_none() {
        return Err(ConfigError::MissingMinter);
    }
    let secret = minter_key(key)?;
    if key.env.is_production() && !boolean(allow)? {
        return Err(ConfigError::PlaintextMinterKeyInProduction {
            name: key.name(),
            origin: key.source(),
        });
    }
    Ok(MinterSource::Key(secret))
}

fn is_address(value: &str) -> bool {
    value.len() == 42
        && value.starts_with("0x")
        && value[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A hex key without its `0x` prefix, in lower case.
fn normalize_hex_key(value: &str) -> String {
    let digits = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
        .unwrap_or(value);
    digits.to_ascii_lowercase()
}

fn contract_address(field: &Field<'_>) -> Result<Option<String>> {
    let Some(value) = field.optional_text()? else {
        return Ok(None);
    };
    if !is_address(value) {
        return Err(field.invalid("is not a contract address", "0x followed by 40 hex digits"));
    }
    Ok(Some(value.to_owned()))
}

fn log_format(field: &Field<'_>) -> Result<LogFormat> {
    let value = field.required_text()?;
    [LogFormat::Text, LogFormat::Json]
        .into_iter()
        .find(|format| format.as_str().eq_ignore_ascii_case(value))
        .ok_or_else(|| field.invalid("is not a log format", "text or json"))
}

fn log_filter(field: &Field<'_>) -> Result<String> {
    let value = field.required_text()?;
    if value.trim().is_empty() {
        return Err(field.invalid(
            "is empty",
            "a filter such as info or info,merit_mailbox=debug",
        ));
    }
    Ok(value.to_owned())
}

/// `a:, b:// or c://` for messages.
fn one_of(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}
