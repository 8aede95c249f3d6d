//! The typed settings a node runs with, after layering and validation.
//!
//! Every value here has passed its check (`resolve`), so users of these types
//! do not re-validate. The types print safely: secrets and URL passwords are
//! redacted by [`Secret`] and [`SecretUrl`], so `{:?}` of [`Settings`] can be
//! logged. They serialize redacted too, which is what `config show` uses.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

use serde::{ser::SerializeMap, Serialize, Serializer};

use crate::{
    error::{ConfigError, Result},
    secret::{Secret, SecretUrl},
    source::Layers,
};

/// The deployment environment, chosen by `MERIT_ENV`; it picks the config
/// file and whether development defaults for secrets are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// A developer's machine: built-in development secrets are allowed.
    Development,
    /// Automated tests: as development, with test-friendly files.
    Test,
    /// A real deployment: every secret must be supplied and must not be a
    /// development default.
    Production,
}

impl Environment {
    /// Every environment, in the order error messages list them.
    pub const ALL: [Self; 3] = [Self::Development, Self::Test, Self::Production];

    /// The name used by `MERIT_ENV` and the config file (`<name>.toml`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }

    /// Whether this is production, where development defaults are refused.
    pub fn is_production(self) -> bool {
        self == Self::Production
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a `MERIT_ENV` value, ignoring ASCII case.
impl FromStr for Environment {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|env| env.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| ConfigError::UnknownEnvironment {
                value: value.to_owned(),
            })
    }
}

/// Everything a node is configured with.
///
/// `Debug` is safe to log: secrets print as `***redacted***` and URLs with
/// their password redacted.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// The environment these settings were loaded for (`MERIT_ENV`).
    pub env: Environment,
    /// This node's name in queues, registrations and logs (`MERIT_NODE_ID`):
    /// 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub node_id: String,
    /// Where the HTTP API listens (`MERIT_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// A separate listener for `/metrics` (`MERIT_METRICS_ADDR`); when set, the public
    /// listener no longer serves `/metrics`.
    pub metrics_addr: Option<SocketAddr>,
    /// Limits and trust of the HTTP side.
    pub http: HttpSettings,
    /// The SQL database (`MERIT_DATABASE_URL`): `sqlite:` or `postgres://`.
    pub database_url: SecretUrl,
    /// The RabbitMQ broker (`MERIT_AMQP_URL`); `None` selects the embedded
    /// in-process transport.
    pub amqp_url: Option<SecretUrl>,
    /// The Redis L2 cache (`MERIT_REDIS_URL`); `None` keeps the cache
    /// in-process only.
    pub redis_url: Option<SecretUrl>,
    /// The chain's JSON-RPC endpoint (`MERIT_CHAIN_RPC_URL`), `http(s)://`; `None` selects
    /// the embedded development chain.
    pub chain_rpc_url: Option<SecretUrl>,
    /// Bearer token of the admin API and dashboard (`MERIT_ADMIN_TOKEN`).
    pub admin_token: Secret,
    /// Key signing user sessions (`MERIT_JWT_SECRET`); at least 32 bytes in
    /// production.
    pub jwt_secret: Secret,
    /// Where the minter's signing key is held: exactly one of a plaintext key, an
    /// encrypted keystore or an external signer. Serialized (for `config show`) as the
    /// flat keys `minter_key`, `minter_keystore`, `minter_keystore_password`,
    /// `minter_signer_url`, `minter_address`, secrets redacted.
    #[serde(flatten)]
    pub minter: MinterSource,
    /// Whether production accepts a plaintext minter key
    /// (`MERIT_MINTER_ALLOW_PLAINTEXT_KEY`; default `false`).
    pub minter_allow_plaintext_key: bool,
    /// Actor mailboxes and redelivery.
    pub mailbox: MailboxSettings,
    /// Actor residency.
    pub actors: ActorSettings,
    /// Shard ownership among several nodes.
    pub cluster: ClusterSettings,
    /// The L1 cache.
    pub cache: CacheSettings,
    /// How long bookkeeping rows are kept.
    pub retention: RetentionSettings,
    /// The chain adapter.
    pub chain: ChainSettings,
    /// Logging.
    pub log: LogSettings,
    /// `[otel]`: OpenTelemetry tracing.
    pub otel: OtelSettings,
}

impl Settings {
    /// Built-in test defaults with an in-memory SQLite database, no file and
    /// no environment: a ready value for other crates' tests, which change
    /// the fields they care about.
    pub fn test_defaults() -> Self {
        let env = Environment::Test;
        let mut settings = crate::resolve::settings(env, &Layers::defaults(env, None))
            .expect("the built-in test defaults are valid (tested)");
        settings.database_url = SecretUrl::new("sqlite::memory:");
        settings
    }
}

/// Where the minter's private key is held. `Debug` and serialization never show the key,
/// the keystore password or a signer URL's credentials.
#[derive(Debug, Clone)]
pub enum MinterSource {
    /// The private key in plaintext (`MERIT_MINTER_KEY` / `_FILE`): 32 bytes as 64 hex
    /// digits, with or without `0x`, as given. Production refuses it unless
    /// `MERIT_MINTER_ALLOW_PLAINTEXT_KEY=true`.
    Key(Secret),
    /// An encrypted JSON keystore (Web3 Secret Storage v3, as geth writes it), decrypted
    /// when the chain client starts.
    Keystore {
        /// The keystore file (`MERIT_MINTER_KEYSTORE`).
        path: PathBuf,
        /// Its password (`MERIT_MINTER_KEYSTORE_PASSWORD_FILE`, or the variable).
        password: Secret,
    },
    /// A JSON-RPC endpoint that signs with `eth_signTransaction`; the key never enters
    /// merit.
    Signer {
        /// The signer (`MERIT_MINTER_SIGNER_URL`), `http(s)://`.
        url: SecretUrl,
        /// The minter's address (`MERIT_MINTER_ADDRESS`), `0x` + 40 hex digits as given.
        address: String,
    },
}

impl MinterSource {
    /// `key`, `keystore` or `signer`: for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Key(_) => "key",
            Self::Keystore { .. } => "keystore",
            Self::Signer { .. } => "signer",
        }
    }

    /// The plaintext key, if that is the source.
    pub fn key(&self) -> Option<&Secret> {
        match self {
            Self::Key(key) => Some(key),
            _ => None,
        }
    }
}

/// As the flat keys of `config show`: the source's own keys set, the others null.
impl Serialize for MinterSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let none: Option<&str> = None;
        let mut map = serializer.serialize_map(Some(5))?;
        match self {
            Self::Key(key) => map.serialize_entry("minter_key", key)?,
            _ => map.serialize_entry("minter_key", &none)?,
        }
        match self {
            Self::Keystore { path, password } => {
                map.serialize_entry("minter_keystore", &path.display().to_string())?;
                map.serialize_entry("minter_keystore_password", password)?;
            }
            _ => {
                map.serialize_entry("minter_keystore", &none)?;
                map.serialize_entry("minter_keystore_password", &none)?;
            }
        }
        match self {
            Self::Signer { url, address } => {
                map.serialize_entry("minter_signer_url", url)?;
                map.serialize_entry("minter_address", address)?;
            }
            _ => {
                map.serialize_entry("minter_signer_url", &none)?;
                map.serialize_entry("minter_address", &none)?;
            }
        }
        map.end()
    }
}

/// `[http]`: who the HTTP side trusts and how much it serves one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpSettings {
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` is believed: IP addresses
    /// and CIDR blocks (`MERIT_HTTP_TRUSTED_PROXIES`, comma-separated; empty: none, the
    /// TCP peer is the client).
    pub trusted_proxies: Vec<String>,
    /// The one header those proxies write and the client is read from
    /// (`MERIT_HTTP_FORWARDED_HEADER`): `x-forwarded-for` (default) or `forwarded`. The
    /// other is ignored: a proxy passes through a header it does not manage, so a client
    /// could write that one itself.
    pub forwarded_header: String,
    /// Requests per second one client address (an IPv6 client: its /64) may make on
    /// average (`MERIT_HTTP_RATE_PER_SEC`).
    pub rate_per_sec: u32,
    /// Requests one client address may make in a burst (`MERIT_HTTP_RATE_BURST`).
    pub rate_burst: u32,
    /// Requests per second one authenticated user (JWT subject) may make on average,
    /// from any address (`MERIT_HTTP_USER_RATE_PER_SEC`).
    pub user_rate_per_sec: u32,
    /// Requests one user may make in a burst (`MERIT_HTTP_USER_RATE_BURST`).
    pub user_rate_burst: u32,
    /// How long one WebSocket send may wait on a client before the session is closed
    /// (`MERIT_HTTP_WS_SEND_TIMEOUT_MS`).
    pub ws_send_timeout_ms: u64,
    /// WebSocket sessions one user may hold on one node (`MERIT_HTTP_WS_MAX_SESSIONS_PER_USER`).
    pub ws_max_sessions_per_user: usize,
    /// The domain Sign-In with Ethereum messages must name (`MERIT_HTTP_SIWE_DOMAIN`);
    /// `None`: the HTTP listener's address (`127.0.0.1:8080`).
    pub siwe_domain: Option<String>,
    /// Origins a SIWE message's URI may have (`MERIT_HTTP_SIWE_ORIGINS`, comma-separated);
    /// empty: `http://` and `https://` + the domain.
    pub siwe_origins: Vec<String>,
    /// Lifetime of the user token a sign-in returns (`MERIT_HTTP_LOGIN_TTL_SECS`).
    pub login_ttl_secs: u64,
}

impl HttpSettings {
    /// [`Self::ws_send_timeout_ms`] as a duration.
    pub fn ws_send_timeout(&self) -> Duration {
        Duration::from_millis(self.ws_send_timeout_ms)
    }
}

/// `[mailbox]`: shard queues and redelivery of failed messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxSettings {
    /// Shard queues per actor kind (1 to 256; `MERIT_MAILBOX_SHARDS`).
    pub shards: u16,
    /// Unacknowledged deliveries per consumer (`MERIT_MAILBOX_PREFETCH`).
    pub prefetch: u16,
    /// Attempts before a message is dead-lettered (`MERIT_MAILBOX_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// First retry delay, doubled per attempt (`MERIT_MAILBOX_RETRY_BASE_MS`).
    pub retry_base_ms: u64,
    /// Replicas of each quorum queue merit declares on a RabbitMQ cluster (1 to 255;
    /// `MERIT_MAILBOX_QUORUM_GROUP_SIZE`); `None`: the broker's default. It applies when a
    /// queue is created; `rabbitmq-queues grow` changes existing ones.
    pub quorum_group_size: Option<u16>,
}

impl MailboxSettings {
    /// [`Self::retry_base_ms`] as a duration.
    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }
}

/// `[cluster]`: how shards move between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterSettings {
    /// How often a node reads the live nodes and rebalances its shards
    /// (`MERIT_CLUSTER_REBALANCE_INTERVAL_MS`; 100 to 60,000).
    pub rebalance_interval_ms: u64,
    /// How long a shard being handed over waits for its in-flight turns before it is let
    /// go anyway (`MERIT_CLUSTER_DRAIN_LIMIT_MS`; 100 to 600,000).
    pub drain_limit_ms: u64,
}

impl ClusterSettings {
    /// [`Self::rebalance_interval_ms`] as a duration.
    pub fn rebalance_interval(&self) -> Duration {
        Duration::from_millis(self.rebalance_interval_ms)
    }

    /// [`Self::drain_limit_ms`] as a duration.
    pub fn drain_limit(&self) -> Duration {
        Duration::from_millis(self.drain_limit_ms)
    }
}

/// `[actors]`: how long actors stay in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActorSettings {
    /// Idle time before an actor is passivated (`MERIT_ACTORS_IDLE_PASSIVATE_SECS`).
    pub idle_passivate_secs: u64,
    /// Resident actors per node before the least recently used are
    /// passivated (`MERIT_ACTORS_MAX_RESIDENT`).
    pub max_resident: usize,
    /// Most queued messages one actor applies in one turn: one state write and one commit
    /// for all of them (`MERIT_ACTORS_TURN_BATCH`; 1 turns batching off).
    pub turn_batch: usize,
}

impl ActorSettings {
    /// [`Self::idle_passivate_secs`] as a duration.
    pub fn idle_passivate(&self) -> Duration {
        Duration::from_secs(self.idle_passivate_secs)
    }
}

/// `[cache]`: the in-process L1 cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheSettings {
    /// Entries held in L1; 0 disables it (`MERIT_CACHE_L1_CAPACITY`).
    pub l1_capacity: u64,
    /// Time to live of cached entries (`MERIT_CACHE_TTL_SECS`).
    pub ttl_secs: u64,
    /// Start of every Redis key and channel merit uses (cache and discovery), so that
    /// deployments sharing a Redis keep apart (`MERIT_CACHE_REDIS_PREFIX`).
    pub redis_prefix: String,
}

impl CacheSettings {
    /// [`Self::ttl_secs`] as a duration.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }
}

/// `[retention]`: how long the bookkeeping tables keep a row before the sweep deletes it,
/// in days; 0 keeps it for ever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionSettings {
    /// Inbox rows (event ids applied): a redelivery older than this is no longer
    /// recognised as a duplicate (`MERIT_RETENTION_INBOX_DAYS`).
    pub inbox_days: u64,
    /// Outbox rows the broker confirmed; unconfirmed ones are never swept
    /// (`MERIT_RETENTION_OUTBOX_DAYS`).
    pub outbox_days: u64,
    /// Users' notification logs (`MERIT_RETENTION_NOTIFICATIONS_DAYS`).
    pub notifications_days: u64,
    /// Seconds between sweeps (`MERIT_RETENTION_SWEEP_SECS`).
    pub sweep_secs: u64,
}

impl RetentionSettings {
    /// A retention in days as a duration; `None` for 0 (kept for ever).
    pub fn keep(days: u64) -> Option<Duration> {
        (days > 0).then(|| Duration::from_secs(days.saturating_mul(86_400)))
    }

    /// [`Self::sweep_secs`] as a duration.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.sweep_secs)
    }
}

/// `[chain]`: the NFT contract and the log listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainSettings {
    /// The chain id transactions are signed for (`MERIT_CHAIN_CHAIN_ID`).
    pub chain_id: u64,
    /// Blocks a log must be buried under before it is applied
    /// (`MERIT_CHAIN_CONFIRMATIONS`).
    pub confirmations: u64,
    /// The NFT contract, `0x` + 40 hex digits as given; `None` deploys or
    /// uses the embedded chain's contract (`MERIT_CHAIN_CONTRACT_ADDRESS`).
    pub contract_address: Option<String>,
    /// How often the listener polls for new blocks (`MERIT_CHAIN_POLL_INTERVAL_MS`).
    pub poll_interval_ms: u64,
}

impl ChainSettings {
    /// [`Self::poll_interval_ms`] as a duration.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

/// `[log]`: what the binary's subscriber prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogSettings {
    /// Line format (`MERIT_LOG_FORMAT`).
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info,merit_mailbox=debug`
    /// (`MERIT_LOG_FILTER`); its syntax is checked by the binary.
    pub filter: String,
}

/// `[otel]`: where `merit serve` exports its spans (OTLP over HTTP), if anywhere.
#[derive(Debug, Clone, Serialize)]
pub struct OtelSettings {
    /// The OTLP/HTTP traces endpoint, e.g. `http://collector:4318/v1/traces`
    /// (`MERIT_OTEL_ENDPOINT`); unset: no spans are exported and no trace context is
    /// propagated. Redacted like every URL (it may carry credentials).
    pub endpoint: Option<SecretUrl>,
    /// The share of new traces recorded, 0-100 (`MERIT_OTEL_SAMPLE_PERCENT`); a message
    /// or request that arrives with a sampled `traceparent` is always recorded.
    pub sample_percent: u8,
}

/// How log lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// The name used in config (`text`, `json`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
