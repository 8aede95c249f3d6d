//! From the winning raw values to typed [`Settings`]: parse each key, check
//! its range or shape, then apply the production policy (no missing secret,
//! no public development secret, no development database).
//!
//! Checks run in the order of the fields and stop at the first failure. A
//! failure names the key as its layer spelled it (see [`Field::name`]) and
//! never shows a secret; URLs are shown with their password redacted.

use crate::{
    error::{ConfigError, Result},
    keys::{self, Key, Sensitivity},
    secret::redact_url,
    settings::{
        ActorSettings, CacheSettings, ChainSettings, ClusterSettings, Environment, HttpSettings,
        LogSettings, MailboxSettings, OtelSettings, RetentionSettings, Settings,
    },
    source::{Layers, Raw, RawValue, Source},
};

mod values;

use values::{
    admin_token, amqp_urls, boolean, contract_address, database_url, forwarded_header, http_addr,
    jwt_secret, log_filter, log_format, metrics_addr, minter, node_id, optional_url, redis_prefix,
    siwe_domain, siwe_origins, trusted_proxies,
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
