//! The catalogue of settings keys: for each, its TOML path, its environment
//! variable, whether it may come from a secret file, how sensitive it is and
//! its built-in default.
//!
//! Environment variables are looked up by exact name in this table rather than
//! derived by splitting on `_`, because keys such as `mailbox.max_attempts`
//! contain underscores themselves. The names follow one rule,
//! `MERIT_` + the path upper-cased with `.` replaced by `_`, and a test holds
//! the table to it.

use crate::settings::Environment;

use Fallback::{Absent, Value};
use Kind::{Integer, Text};

/// Prefix of every variable merit reads.
pub(crate) const ENV_PREFIX: &str = "MERIT_";

/// The variable choosing the environment; it is not a key of the TOML file.
pub(crate) const ENV_VAR: &str = "MERIT_ENV";

/// The built-in development private key: the first account of anvil and
/// hardhat, public knowledge, so production refuses it.
pub(crate) const DEV_MINTER_KEY: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// The built-in development database; production refuses it.
pub(crate) const DEV_DATABASE_URL: &str = "sqlite://merit.db?mode=rwc";

/// The TOML type a key accepts; environment values are always text and are
/// parsed according to the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Integer,
}

/// How much of a value may be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sensitivity {
    /// Shown as is.
    Plain,
    /// A URL that may carry a password: shown with the password redacted.
    Url,
    /// Never shown, never accepted from a config file.
    Secret,
}

/// Where a key's value comes from when no layer sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// No value: the setting is optional.
    Absent,
    /// The same value in every environment.
    Value(&'static str),
    /// A public value for development and test; production has none.
    DevelopmentOnly(&'static str),
    /// `node-` + the host name when one is known, else `node-1`.
    NodeId,
}

/// One setting.
#[derive(Debug)]
pub(crate) struct Key {
    /// Dotted TOML path, also the key of provenance and `config show`.
    pub(crate) path: &'static str,
    /// The environment variable overriding it.
    pub(crate) var: &'static str,
    /// The variable naming a file that holds the value, for values that may
    /// be secret.
    pub(crate) file_var: Option<&'static str>,
    pub(crate) kind: Kind,
    pub(crate) sensitivity: Sensitivity,
    pub(crate) fallback: Fallback,
}

impl Key {
    const fn plain(path: &'static str, var: &'static str, kind: Kind, fallback: Fallback) -> Self {
        Self {
            path,
            var,
            file_var: None,
            kind,
            sensitivity: Sensitivity::Plain,
            fallback,
        }
    }

    const fn url(path: &'static str, var: &'static str, file_var: &'static str) -> Self {
        Self {
            path,
            var,
            file_var: Some(file_var),
            kind: Kind::Text,
            sensitivity: Sensitivity::Url,
            fallback: Fallback::Absent,
        }
    }

    const fn secret(
        path: &'static str,
        var: &'static str,
        file_var: &'static str,
        development: &'static str,
    ) -> Self {
        Self {
            path,
            var,
            file_var: Some(file_var),
            kind: Kind::Text,
            sensitivity: Sensitivity::Secret,
            fallback: Fallback::DevelopmentOnly(development),
        }
    }

    /// The built-in default of this key in `env`, before any layer.
    pub(crate) fn default_in(&self, env: Environment, hostname: Option<&str>) -> Option<String> {
        match self.fallback {
            Fallback::Absent => None,
            Fallback::Value(value) => Some(value.to_owned()),
            Fallback::DevelopmentOnly(value) => (!env.is_production()).then(|| value.to_owned()),
            Fallback::NodeId => Some(crate::node_id::from_hostname(hostname)),
        }
    }

    /// The public development value of a secret, if it has one.
    pub(crate) fn development_value(&self) -> Option<&'static str> {
        match self.fallback {
            Fallback::DevelopmentOnly(value) => Some(value),
            _ => None,
        }
    }
}

pub(crate) const NODE_ID: Key = Key::plain("node_id", "MERIT_NODE_ID", Text, Fallback::NodeId);
pub(crate) const HTTP_ADDR: Key = Key::plain(
    "http_addr",
    "MERIT_HTTP_ADDR",
    Text,
    Value("127.0.0.1:8080"),
);
pub(crate) const METRICS_ADDR: Key = Key::plain("metrics_addr", "MERIT_METRICS_ADDR", Text, Absent);
pub(crate) const HTTP_TRUSTED_PROXIES: Key = Key::plain(
    "http.trusted_proxies",
    "MERIT_HTTP_TRUSTED_PROXIES",
    Text,
    Absent,
);
pub(crate) const HTTP_FORWARDED_HEADER: Key = Key::plain(
    "http.forwarded_header",
    "MERIT_HTTP_FORWARDED_HEADER",
    Text,
    Value("x-forwarded-for"),
);
pub(crate) const HTTP_RATE_PER_SEC: Key = Key::plain(
    "http.rate_per_sec",
    "MERIT_HTTP_RATE_PER_SEC",
    Integer,
    Value("200"),
);
pub(crate) const HTTP_RATE_BURST: Key = Key::plain(
    "http.rate_burst",
    "MERIT_HTTP_RATE_BURST",
    Integer,
    Value("400"),
);
pub(crate) const HTTP_USER_RATE_PER_SEC: Key = Key::plain(
    "http.user_rate_per_sec",
    "MERIT_HTTP_USER_RATE_PER_SEC",
    Integer,
    Value("200"),
);
pub(crate) const HTTP_USER_RATE_BURST: Key = Key::plain(
    "http.user_rate_burst",
    "MERIT_HTTP_USER_RATE_BURST",
    Integer,
    Value("400"),
);
pub(crate) const HTTP_WS_SEND_TIMEOUT_MS: Key = Key::plain(
    "http.ws_send_timeout_ms",
    "MERIT_HTTP_WS_SEND_TIMEOUT_MS",
    Integer,
    Value("5000"),
);
pub(crate) const HTTP_WS_MAX_SESSIONS_PER_USER: Key = Key::plain(
    "http.ws_max_sessions_per_user",
    "MERIT_HTTP_WS_MAX_SESSIONS_PER_USER",
    Integer,
    Value("8"),
);
pub(crate) const HTTP_SIWE_DOMAIN: Key =
    Key::plain("http.siwe_domain", "MERIT_HTTP_SIWE_DOMAIN", Text, Absent);
pub(crate) const HTTP_SIWE_ORIGINS: Key =
    Key::plain("http.siwe_origins", "MERIT_HTTP_SIWE_ORIGINS", Text, Absent);
pub(crate) const HTTP_LOGIN_TTL_SECS: Key = Key::plain(
    "http.login_ttl_secs",
    "MERIT_HTTP_LOGIN_TTL_SECS",
    Integer,
    Value("3600"),
);
pub(crate) const DATABASE_URL: Key = Key {
    fallback: Value(DEV_DATABASE_URL),
    ..Key::url(
        "database_url",
        "MERIT_DATABASE_URL",
        "MERIT_DATABASE_URL_FILE",
    )
};
pub(crate) const AMQP_URL: Key = Key::url("amqp_url", "MERIT_AMQP_URL", "MERIT_AMQP_URL_FILE");
pub(crate) const REDIS_URL: Key = Key::url("redis_url", "MERIT_REDIS_URL", "MERIT_REDIS_URL_FILE");
pub(crate) const CHAIN_RPC_URL: Key = Key::url(
    "chain_rpc_url",
    "MERIT_CHAIN_RPC_URL",
    "MERIT_CHAIN_RPC_URL_FILE",
);
pub(crate) const ADMIN_TOKEN: Key = Key::secret(
    "admin_token",
    "MERIT_ADMIN_TOKEN",
    "MERIT_ADMIN_TOKEN_FILE",
    "merit-development-admin-token",
);
pub(crate) const JWT_SECRET: Key = Key::secret(
    "jwt_secret",
    "MERIT_JWT_SECRET",
    "MERIT_JWT_SECRET_FILE",
    "merit-development-jwt-secret-not-for-production",
);
pub(crate) const MINTER_KEY: Key = Key::secret(
    "minter_key",
    "MERIT_MINTER_KEY",
    "MERIT_MINTER_KEY_FILE",
    DEV_MINTER_KEY,
);
/// The minter key in an encrypted JSON keystore (Web3 Secret Storage v3): its path.
pub(crate) const MINTER_KEYSTORE: Key =
    Key::plain("minter_keystore", "MERIT_MINTER_KEYSTORE", Text, Absent);
/// The keystore's password, from `MERIT_MINTER_KEYSTORE_PASSWORD_FILE` (or the variable).
pub(crate) const MINTER_KEYSTORE_PASSWORD: Key = Key {
    fallback: Absent,
    ..Key::secret(
        "minter_keystore_password",
        "MERIT_MINTER_KEYSTORE_PASSWORD",
        "MERIT_MINTER_KEYSTORE_PASSWORD_FILE",
        "",
    )
};
/// An external JSON-RPC signer (`eth_signTransaction`) holding the minter key.
pub(crate) const MINTER_SIGNER_URL: Key = Key::url(
    "minter_signer_url",
    "MERIT_MINTER_SIGNER_URL",
    "MERIT_MINTER_SIGNER_URL_FILE",
);
/// The minter's address, which the external signer signs for.
pub(crate) const MINTER_ADDRESS: Key =
    Key::plain("minter_address", "MERIT_MINTER_ADDRESS", Text, Absent);
/// Production accepts a plaintext minter key only with this set to `true`.
pub(crate) const MINTER_ALLOW_PLAINTEXT_KEY: Key = Key::plain(
    "minter_allow_plaintext_key",
    "MERIT_MINTER_ALLOW_PLAINTEXT_KEY",
    Text,
    Value("false"),
);
pub(crate) const MAILBOX_SHARDS: Key = Key::plain(
    "mailbox.shards",
    "MERIT_MAILBOX_SHARDS",
    Integer,
    Value("4"),
);
pub(crate) const MAILBOX_PREFETCH: Key = Key::plain(
    "mailbox.prefetch",
    "MERIT_MAILBOX_PREFETCH",
    Integer,
    Value("200"),
);
pub(crate) const MAILBOX_MAX_ATTEMPTS: Key = Key::plain(
    "mailbox.max_attempts",
    "MERIT_MAILBOX_MAX_ATTEMPTS",
    Integer,
    Value("5"),
);
pub(crate) const MAILBOX_RETRY_BASE_MS: Key = Key::plain(
    "mailbox.retry_base_ms",
    "MERIT_MAILBOX_RETRY_BASE_MS",
    Integer,
    Value("200"),
);
/// Replicas of each new quorum queue on a RabbitMQ cluster; unset: the broker's default.
pub(crate) const MAILBOX_QUORUM_GROUP_SIZE: Key = Key::plain(
    "mailbox.quorum_group_size",
    "MERIT_MAILBOX_QUORUM_GROUP_SIZE",
    Integer,
    Absent,
);
pub(crate) const CLUSTER_REBALANCE_INTERVAL_MS: Key = Key::plain(
    "cluster.rebalance_interval_ms",
    "MERIT_CLUSTER_REBALANCE_INTERVAL_MS",
    Integer,
    Value("2000"),
);
pub(crate) const CLUSTER_DRAIN_LIMIT_MS: Key = Key::plain(
    "cluster.drain_limit_ms",
    "MERIT_CLUSTER_DRAIN_LIMIT_MS",
    Integer,
    Value("10000"),
);
pub(crate) const ACTORS_IDLE_PASSIVATE_SECS: Key = Key::plain(
    "actors.idle_passivate_secs",
    "MERIT_ACTORS_IDLE_PASSIVATE_SECS",
    Integer,
    Value("300"),
);
pub(crate) const ACTORS_MAX_RESIDENT: Key = Key::plain(
    "actors.max_resident",
    "MERIT_ACTORS_MAX_RESIDENT",
    Integer,
    Value("100000"),
);
pub(crate) const ACTORS_TURN_BATCH: Key = Key::plain(
    "actors.turn_batch",
    "MERIT_ACTORS_TURN_BATCH",
    Integer,
    Value("256"),
);
pub(crate) const CACHE_L1_CAPACITY: Key = Key::plain(
    "cache.l1_capacity",
    "MERIT_CACHE_L1_CAPACITY",
    Integer,
    Value("100000"),
);
pub(crate) const CACHE_TTL_SECS: Key = Key::plain(
    "cache.ttl_secs",
    "MERIT_CACHE_TTL_SECS",
    Integer,
    Value("300"),
);
pub(crate) const CACHE_REDIS_PREFIX: Key = Key::plain(
    "cache.redis_prefix",
    "MERIT_CACHE_REDIS_PREFIX",
    Text,
    Value("merit:"),
);
pub(crate) const RETENTION_INBOX_DAYS: Key = Key::plain(
    "retention.inbox_days",
    "MERIT_RETENTION_INBOX_DAYS",
    Integer,
    Value("30"),
);
pub(crate) const RETENTION_OUTBOX_DAYS: Key = Key::plain(
    "retention.outbox_days",
    "MERIT_RETENTION_OUTBOX_DAYS",
    Integer,
    Value("7"),
);
pub(crate) const RETENTION_NOTIFICATIONS_DAYS: Key = Key::plain(
    "retention.notifications_days",
    "MERIT_RETENTION_NOTIFICATIONS_DAYS",
    Integer,
    Value("90"),
);
pub(crate) const RETENTION_SWEEP_SECS: Key = Key::plain(
    "retention.sweep_secs",
    "MERIT_RETENTION_SWEEP_SECS",
    Integer,
    Value("600"),
);
pub(crate) const CHAIN_CHAIN_ID: Key = Key::plain(
    "chain.chain_id",
    "MERIT_CHAIN_CHAIN_ID",
    Integer,
    Value("31337"),
);
pub(crate) const CHAIN_CONFIRMATIONS: Key = Key::plain(
    "chain.confirmations",
    "MERIT_CHAIN_CONFIRMATIONS",
    Integer,
    Value("2"),
);
pub(crate) const CHAIN_CONTRACT_ADDRESS: Key = Key::plain(
    "chain.contract_address",
    "MERIT_CHAIN_CONTRACT_ADDRESS",
    Text,
    Absent,
);
pub(crate) const CHAIN_POLL_INTERVAL_MS: Key = Key::plain(
    "chain.poll_interval_ms",
    "MERIT_CHAIN_POLL_INTERVAL_MS",
    Integer,
    Value("1000"),
);
pub(crate) const OTEL_ENDPOINT: Key = Key::url(
    "otel.endpoint",
    "MERIT_OTEL_ENDPOINT",
    "MERIT_OTEL_ENDPOINT_FILE",
);
pub(crate) const OTEL_SAMPLE_PERCENT: Key = Key::plain(
    "otel.sample_percent",
    "MERIT_OTEL_SAMPLE_PERCENT",
    Integer,
    Value("100"),
);
pub(crate) const LOG_FORMAT: Key =
    Key::plain("log.format", "MERIT_LOG_FORMAT", Text, Value("text"));
pub(crate) const LOG_FILTER: Key =
    Key::plain("log.filter", "MERIT_LOG_FILTER", Text, Value("info"));

/// Every key, in the order `config show` lists them.
pub(crate) const ALL: &[&Key] = &[
    &NODE_ID,
    &HTTP_ADDR,
    &METRICS_ADDR,
    &HTTP_TRUSTED_PROXIES,
    &HTTP_FORWARDED_HEADER,
    &HTTP_RATE_PER_SEC,
    &HTTP_RATE_BURST,
    &HTTP_USER_RATE_PER_SEC,
    &HTTP_USER_RATE_BURST,
    &HTTP_WS_SEND_TIMEOUT_MS,
    &HTTP_WS_MAX_SESSIONS_PER_USER,
    &HTTP_SIWE_DOMAIN,
    &HTTP_SIWE_ORIGINS,
    &HTTP_LOGIN_TTL_SECS,
    &DATABASE_URL,
    &AMQP_URL,
    &REDIS_URL,
    &CHAIN_RPC_URL,
    &ADMIN_TOKEN,
    &JWT_SECRET,
    &MINTER_KEY,
    &MINTER_KEYSTORE,
    &MINTER_KEYSTORE_PASSWORD,
    &MINTER_SIGNER_URL,
    &MINTER_ADDRESS,
    &MINTER_ALLOW_PLAINTEXT_KEY,
    &MAILBOX_SHARDS,
    &MAILBOX_PREFETCH,
    &MAILBOX_MAX_ATTEMPTS,
    &MAILBOX_RETRY_BASE_MS,
    &MAILBOX_QUORUM_GROUP_SIZE,
    &CLUSTER_REBALANCE_INTERVAL_MS,
    &CLUSTER_DRAIN_LIMIT_MS,
    &ACTORS_IDLE_PASSIVATE_SECS,
    &ACTORS_MAX_RESIDENT,
    &ACTORS_TURN_BATCH,
    &CACHE_L1_CAPACITY,
    &CACHE_TTL_SECS,
    &CACHE_REDIS_PREFIX,
    &RETENTION_INBOX_DAYS,
    &RETENTION_OUTBOX_DAYS,
    &RETENTION_NOTIFICATIONS_DAYS,
    &RETENTION_SWEEP_SECS,
    &CHAIN_CHAIN_ID,
    &CHAIN_CONFIRMATIONS,
    &CHAIN_CONTRACT_ADDRESS,
    &CHAIN_POLL_INTERVAL_MS,
    &LOG_FORMAT,
    &LOG_FILTER,
    &OTEL_ENDPOINT,
    &OTEL_SAMPLE_PERCENT,
];

/// The key at a dotted TOML path.
pub(crate) fn by_path(path: &str) -> Option<&'static Key> {
    ALL.iter().copied().find(|key| key.path == path)
}

/// The TOML section (`mailbox`, …) named `path`, if there is one.
pub(crate) fn section(path: &str) -> Option<&'static str> {
    ALL.iter().find_map(|key| {
        let rest = key.path.strip_prefix(path)?;
        rest.starts_with('.').then(|| &key.path[..path.len()])
    })
}

/// Every variable merit reads, for spotting unknown `MERIT_*` variables.
pub(crate) fn known_vars() -> impl Iterator<Item = &'static str> {
    std::iter::once(ENV_VAR).chain(
        ALL.iter()
            .flat_map(|key| std::iter::once(key.var).chain(key.file_var)),
    )
}

#[cfg(test)]
mod tests;
