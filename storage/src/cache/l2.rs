//! L2: Redis, shared by every node — values with an expiry, per-key write generations, and
//! the invalidation channel.
//!
//! Every operation here is bounded by [`OP_TIMEOUT`] and none is attempted while Redis is
//! marked down (the subscriber task owns that mark, see [`super::subscriber`]): a dead or
//! hung Redis costs a caller at most one timeout, and only until the subscriber notices.
//!
//! Redis layout, for a key displayed as `benefits:0xab…` and prefix `merit:`:
//! - `merit:benefits:0xab…` — the JSON value, `PX ttl`;
//! - `merit:gen:benefits:0xab…` — a counter every write increments (see [`FILL`]);
//! - channel `merit:invalidate` — `{"node": …, "keys": […]}` after every write.
//!
//! Writes run as one Lua script each (value, generation and publish together), so a node
//! that sees a write's message also sees its value. The scripts touch a value and its
//! generation in one call, so this assumes a single Redis (or a primary with replicas),
//! not Redis Cluster, where those two keys would need one hash tag.

use std::{
    collections::HashSet,
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicU8, Ordering::SeqCst},
        Mutex,
    },
    time::Duration,
};

use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    RedisResult,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::CacheKey;

/// Longest any single Redis operation may take before the caller moves on without it.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_millis(250);

/// Shortest life of a generation counter. A fill is refused when the generation moved
/// since it started; a counter that expired and came back could look unmoved, so it must
/// outlive any read-through load by far.
const MIN_GENERATION_TTL: Duration = Duration::from_secs(600);

/// Most keys remembered for replay while Redis is down (see [`L2::defer`]).
const MAX_PENDING: usize = 100_000;

/// Most keys per invalidation script, so one replay cannot block Redis for long.
const INVALIDATE_CHUNK: usize = 500;

/// Read-through fill: store the value only if no write happened since the reader took
/// the generation (`ARGV[1]`, `""` for none) and nobody cached the key meanwhile.
/// Returns 1 stored, 0 already cached, -1 outdated by a write.
const FILL: &str = r"
local g = redis.call('GET', KEYS[2])
if g == false then g = '' end
if g ~= ARGV[1] then return -1 end
if redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'NX') then return 1 end
return 0
";

/// Write-through: advance the generation, store the value, tell the other nodes.
const PUT: &str = r"
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('PUBLISH', ARGV[4], ARGV[5])
";

/// Invalidate: for each (value, generation) pair, drop the value and advance the
/// generation; then tell the other nodes.
const INVALIDATE: &str = r"
for i = 1, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  redis.call('INCR', KEYS[i + 1])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
end
return redis.call('PUBLISH', ARGV[2], ARGV[3])
";

/// Why an L2 operation did not take effect. Never reaches a caller of the cache.
#[derive(Debug)]
pub(crate) enum L2Error {
    /// Redis is marked down; nothing was attempted.
    Down,
    /// No answer within [`OP_TIMEOUT`].
    Timeout,
    /// Redis or the connection failed.
    Redis(redis::RedisError),
}

impl fmt::Display for L2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Down => f.write_str("redis is marked down"),
            Self::Timeout => write!(f, "no answer from redis within {OP_TIMEOUT:?}"),
            Self::Redis(e) => write!(f, "redis: {e}"),
        }
    }
}

impl std::error::Error for L2Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Redis(e) => Some(e),
            Self::Down | Self::Timeout => None,
        }
    }
}

/// The invalidation message every write publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Invalidation {
    /// The node that wrote (for logs).
    pub(crate) node: String,
    /// The cache instance that wrote; it skips its own messages (its L1 is already right).
    /// Random per instance rather than the node id, so two caches that were given the same
    /// node id (two caches in one process, or a misconfigured pair of nodes) still hear
    /// each other. A message without it is applied by everyone, which is merely wasteful.
    #[serde(default)]
    pub(crate) instance: String,
    /// The keys written, in their display form.
    pub(crate) keys: Vec<String>,
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The cached JSON.
    Hit(String),
    /// Not cached; `generation` is what a later [`L2::fill`] must still find.
    Miss { generation: String },
}

/// What a fill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// The value is now cached.
    Stored,
    /// Another reader cached the key first (from the same generation).
    AlreadyCached,
    /// A write happened since the lookup: the loaded value may be older than it.
    Outdated,
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Whether Redis is in use. Changed only by the subscriber task, which logs each change
/// once: one warning when Redis goes, one line when it is back — never one per request.
#[derive(Debug)]
pub(crate) struct Health {
    state: AtomicU8,
}

impl Health {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(UNKNOWN),
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.state.load(SeqCst) == UP
    }

    pub(crate) fn mark_up(&self, node: &str) {
        match self.state.swap(UP, SeqCst) {
            DOWN => tracing::info!(
                node,
                "redis reachable again: L2 and cross-node invalidation in use, L1 was cleared"
            ),
            UNKNOWN => tracing::info!(
                node,
                "redis connected: L2 and cross-node invalidation in use"
            ),
            _ => {}
        }
    }

    pub(crate) fn mark_down(&self, node: &str, reason: &str) {
        match self.state.swap(DOWN, SeqCst) {
            DOWN => tracing::debug!(node, reason, "redis still unavailable"),
            _ => tracing::warn!(
                node,
                reason,
                "redis unavailable: cache degraded to L1 → database (L1 entries live at most \
                 the ttl); reconnecting in the background"
            ),
        }
    }
}

/// Keys written while their L2 write or publish did not happen; replayed as
/// invalidations once Redis answers again, so other nodes drop what they hold.
#[derive(Debug, Default)]
struct Pending {
    keys: HashSet<CacheKey>,
    /// More keys were written than [`MAX_PENDING`]: some cannot be replayed.
    overflowed: bool,
}

/// The Redis tier of one node.
pub(crate) struct L2 {
    pub(crate) client: redis::Client,
    manager: ConnectionManager,
    prefix: String,
    pub(crate) channel: String,
    pub(crate) node_id: String,
    pub(crate) instance: String,
    ttl_ms: u64,
    generation_ttl_ms: u64,
    pub(crate) health: Health,
    /// Rung by a failed operation: the subscriber checks Redis now instead of at its next
    /// tick, so a dead Redis is marked down after one timeout, not one per request.
    pub(crate) probe: Notify,
    pending: Mutex<Pending>,
}

impl L2 {
    /// Prepares the tier without connecting (the subscriber connects); fails only on a
    /// malformed URL.
    pub(crate) fn new(
        redis_url: &str,
        prefix: &str,
        node_id: &str,
        ttl: Duration,
    ) -> RedisResult<Self> {
        let client = redis::Client::open(redis_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let generation_ttl_ms =
            u64::try_from(MIN_GENERATION_TTL.max(ttl * 2).as_millis()).unwrap_or(u64::MAX);
        Ok(Self {
            client,
            manager,
            prefix: prefix.to_string(),
            channel: format!("{prefix}invalidate"),
            node_id: node_id.to_string(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            ttl_ms,
            generation_ttl_ms,
            health: Health::new(),
            probe: Notify::new(),
            pending: Mutex::new(Pending::default()),
        })
    }

    fn value_key(&self, key: &CacheKey) -> String {
        format!("{}{key}", self.prefix)
    }

    fn generation_key(&self, key: &CacheKey) -> String {
        format!("{}gen:{key}", self.prefix)
    }

    fn message(&self, keys: &[CacheKey]) -> String {
        let message = Invalidation {
            node: self.node_id.clone(),
            instance: self.instance.clone(),
            keys: keys.iter().map(ToString::to_string).collect(),
        };
        serde_json::to_string(&message).expect("a struct of strings always serialises")
    }

    /// Runs `op` if Redis is up, within [`OP_TIMEOUT`]; a failure rings [`Self::probe`].
    async fn run<T, Fut>(&self, op: Fut) -> Result<T, L2Error>
    where
        Fut: Future<Output = RedisResult<T>>,
    {
        if !self.health.is_up() {
            return Err(L2Error::Down);
        }
        let result = match tokio::time::timeout(OP_TIMEOUT, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(L2Error::Redis(e)),
            Err(_) => Err(L2Error::Timeout),
        };
        if result.is_err() {
            self.probe.notify_one();
        }
        result
    }

    /// The cached JSON of `key`, or its current generation if it is not cached.
    pub(crate) async fn lookup(&self, key: &CacheKey) -> Result<Lookup, L2Error> {
        let mut conn = self.manager.clone();
        let (value, generation): (Option<String>, Option<String>) = self
            .run(
                redis::cmd("MGET")
                    .arg(self.value_key(key))
                    .arg(self.generation_key(key))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(match value {
            Some(json) => Lookup::Hit(json),
            None => Lookup::Miss {
                generation: generation.unwrap_or_default(),
            },
        })
    }

    /// Caches a value loaded from the database after a [`Lookup::Miss`] — unless a write
    /// happened since (see [`FILL`]).
    pub(crate) async fn fill(
        &self,
        key: &CacheKey,
        generation: &str,
        json: &str,
    ) -> Result<Fill, L2Error> {
        let mut conn = self.manager.clone();
        let outcome: i64 = self
            .run(
                redis::cmd("EVAL")
                    .arg(FILL)
                    .arg(2)
                    .arg(self.value_key(key))
                    .arg(self.generation_key(key))
                    .arg(generation)
                    .arg(json)
                    .arg(self.ttl_ms)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(match outcome {
            1 => Fill::Stored,
            0 => Fill::AlreadyCached,
            _ => Fill::Outdated,
        })
    }

    /// Stores a written value and publishes its invalidation.
    pub(crate) async fn put(&self, key: &CacheKey, json: &str) -> Result<(), L2Error> {
        let mut conn = self.manager.clone();
        let _receivers: i64 = self
            .run(
                redis::cmd("EVAL")
                    .arg(PUT)
                    .arg(2)
                    .arg(self.value_key(key))
                    .arg(self.generation_key(key))
                    .arg(json)
                    .arg(self.ttl_ms)
                    .arg(self.generation_ttl_ms)
                    .arg(&self.channel)
                    .arg(self.message(std::slice::from_ref(key)))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    /// Drops `keys` from L2 and publishes their invalidation; one message per chunk of
    /// [`INVALIDATE_CHUNK`] keys. Returns how many messages were published; on error, the
    /// chunks from the failed one on did not take effect.
    pub(crate) async fn invalidate(&self, keys: &[CacheKey]) -> Result<u64, (u64, L2Error)> {
        let mut sent = 0;
        for chunk in keys.chunks(INVALIDATE_CHUNK) {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(INVALIDATE).arg(chunk.len() * 2);
            for key in chunk {
                cmd.arg(self.value_key(key)).arg(self.generation_key(key));
            }
            cmd.arg(self.generation_ttl_ms)
                .arg(&self.channel)
                .arg(self.message(chunk));
            let mut conn = self.manager.clone();
            let result: Result<i64, L2Error> = self.run(cmd.query_async(&mut conn)).await;
            if let Err(e) = result {
                return Err((sent, e));
            }
            sent += 1;
        }
        Ok(sent)
    }

    /// Remembers written keys whose L2 write or publish did not happen, to replay them as
    /// invalidations when Redis answers again (see [`Self::replay`]).
    pub(crate) fn defer(&self, keys: &[CacheKey]) {
        let mut pending = self.pending.lock().expect("pending lock is never poisoned");
        for key in keys {
            if pending.keys.len() >= MAX_PENDING && !pending.keys.contains(key) {
                if !pending.overflowed {
                    tracing::warn!(
                        node = %self.node_id,
                        max = MAX_PENDING,
                        "too many writes while redis is unavailable to replay them all: \
                         other nodes may serve values up to the ttl old"
                    );
                }
                pending.overflowed = true;
                continue;
            }
            pending.keys.insert(key.clone());
        }
    }

    /// Replays deferred writes as invalidations (L2 value dropped, generation advanced,
    /// message published). Keys that could not be replayed stay deferred. Returns the
    /// number of messages published.
    pub(crate) async fn replay(&self) -> Result<u64, (u64, L2Error)> {
        let (keys, overflowed) = {
            let mut pending = self.pending.lock().expect("pending lock is never poisoned");
            let keys: Vec<CacheKey> = pending.keys.drain().collect();
            (keys, std::mem::take(&mut pending.overflowed))
        };
        if keys.is_empty() {
            return Ok(0);
        }
        tracing::info!(
            node = %self.node_id,
            keys = keys.len(),
            overflowed,
            "replaying writes made while redis was unavailable as invalidations"
        );
        let result = self.invalidate(&keys).await;
        if let Err((sent, _)) = &result {
            let done = (*sent as usize) * INVALIDATE_CHUNK;
            self.defer(&keys[done.min(keys.len())..]);
        }
        result
    }

    /// Round trip on the data connection.
    pub(crate) async fn ping(&self) -> Result<(), L2Error> {
        let mut conn = self.manager.clone();
        match tokio::time::timeout(
            OP_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(L2Error::Redis(e)),
            Err(_) => Err(L2Error::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidation_message_has_the_documented_shape() {
        let message = Invalidation {
            node: "node-a".into(),
            instance: "i1".into(),
            keys: vec!["benefits:0x01".into()],
        };
        let json: serde_json::Value = serde_json::to_value(&message).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"node": "node-a", "instance": "i1", "keys": ["benefits:0x01"]})
        );
    }

    #[tokio::test]
    async fn nothing_is_attempted_before_the_subscriber_marks_redis_up() {
        let l2 = L2::new("redis://127.0.0.1:1", "t:", "n", Duration::from_secs(1))
            .expect("well-formed URL");
        let key = CacheKey::Benefits("0x01".into());
        assert!(matches!(l2.lookup(&key).await, Err(L2Error::Down)));
        assert!(matches!(l2.put(&key, "1").await, Err(L2Error::Down)));
    }

    #[tokio::test]
    async fn deferred_keys_are_bounded_and_deduplicated() {
        let l2 = L2::new("redis://127.0.0.1:1", "t:", "n", Duration::from_secs(1))
            .expect("well-formed URL");
        let key = CacheKey::Benefits("0x01".into());
        l2.defer(&[key.clone(), key.clone()]);
        let pending = l2.pending.lock().expect("not poisoned");
        assert_eq!(pending.keys.len(), 1);
        assert!(!pending.overflowed);
    }
}
