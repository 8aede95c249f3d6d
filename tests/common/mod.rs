//! The shared test harness: every test gets its own database (a fresh SQLite file or a
//! fresh PostgreSQL database), so tests run in parallel without seeing each other.
//!
//! PostgreSQL is reached through `MERIT_TEST_PG_URL` (an admin connection to an existing
//! database; default `postgres://postgres@127.0.0.1:5432/postgres`).

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod anvil;

use merit_storage::Store;
use uuid::Uuid;

#[allow(unused_imports)] // each test binary uses its own part of the harness
pub use merit_testkit::{pg_admin_url, Backend, TestDb};

/// [`merit_testkit::on_both_backends!`], at this test crate's root as before.
#[macro_export]
macro_rules! on_both_backends {
    ($($t:tt)*) => { merit_testkit::on_both_backends! { $($t)* } };
}

#[allow(unused_imports)]
pub use merit_testkit::broker::{rabbit_cluster, rabbitmqctl, Vhost};

/// A producer on `vhost` (the topology of a node with `shards` shards per kind).
pub async fn producer(vhost: &Vhost, shards: u16) -> merit_mailbox::RabbitTransport {
    merit_mailbox::RabbitTransport::connect(
        &vhost.url,
        merit_mailbox::Topology {
            prefix: String::new(),
            shards,
        },
    )
    .await
    .expect("connect the producer")
}

/// A fresh admin token and JWT secret for one test node: `(admin, jwt_secret)`.
pub fn secrets() -> (String, String) {
    let id = Uuid::new_v4().simple().to_string();
    (
        format!("admin-{id}"),
        format!("jwt-secret-{id}-0123456789abcdef"),
    )
}

/// Waits until the node at `base` answers `/ready` with 200.
pub async fn wait_ready(base: &str, secs: u64) {
    let http = reqwest::Client::new();
    eventually(secs, "the node is ready", || {
        let (http, base) = (http.clone(), base.to_string());
        async move {
            http.get(format!("{base}/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
}

/// Installs the process-wide rustls provider (sqlx and lapin each compile one in).
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// `merit serve` as a child process, so tests can SIGKILL it.
pub struct NodeProcess {
    child: std::process::Child,
    pub log: std::path::PathBuf,
    /// Where this start's output begins in `log` (the log is appended across restarts).
    log_start: u64,
}

impl NodeProcess {
    /// Starts `merit serve` with `envs` (plus MERIT_ENV=test and the repo's config dir),
    /// appending its output to `log`.
    pub fn spawn(envs: &[(&str, &str)], log: &std::path::Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open node log");
        let log_start = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_merit"));
        cmd.arg("serve");
        for (k, _) in std::env::vars() {
            if k.starts_with("MERIT_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("MERIT_ENV", "test")
            .env(
                "MERIT_CONFIG_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
            )
            .env("MERIT_LOG_FILTER", "info")
            .envs(envs.iter().copied())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file);
        let child = cmd.spawn().expect("spawn merit serve");
        Self {
            child,
            log: log.to_path_buf(),
            log_start,
        }
    }

    /// The node's HTTP base URL (`http://127.0.0.1:PORT`), read from its "serving" log
    /// line once it is up (test nodes listen on port 0).
    pub fn http_url(&self, secs: u64) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let raw = std::fs::read(&self.log).unwrap_or_default();
            let text = strip_ansi(&String::from_utf8_lossy(
                raw.get(usize::try_from(self.log_start).unwrap_or(0)..)
                    .unwrap_or_default(),
            ));
            if let Some(line) = text.lines().find(|l| l.contains("serving;")) {
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("http="))
                {
                    return format!("http://{addr}");
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node did not start serving within {secs}s; log: {}",
                self.log.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// SIGKILL: no shutdown, no flush — a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for merit serve")
    }
}

/// A test that fails part-way must not leave its node running.
impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The folder for test artefacts (logs), under `target/`.
pub fn artefacts() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artefacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artefacts");
    dir
}

/// Runs `f` inside an actix System driven by a multi-threaded tokio runtime, as
/// `merit serve` does (actors need a System; brokers and databases want worker threads).
pub fn run_in_system<F: std::future::Future>(f: F) -> F::Output {
    init_crypto();
    actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
    .block_on(f)
}

/// Node options for tests: small shard count, quick retries.
pub fn node_options(node_id: &str, shards: u16) -> merit_supervisors::NodeOptions {
    merit_supervisors::NodeOptions {
        node_id: node_id.to_string(),
        shards,
        prefetch: 200,
        retry: merit_actors::RetryPolicy {
            max_attempts: 3,
            base_backoff: std::time::Duration::from_millis(10),
            max_backoff: std::time::Duration::from_millis(200),
        },
        residency: merit_supervisors::Residency {
            max_resident: 100_000,
            idle: std::time::Duration::from_secs(60),
        },
        restart: merit_supervisors::RestartPolicy {
            base_backoff: std::time::Duration::from_millis(50),
            max_backoff: std::time::Duration::from_secs(1),
            intensity: 50,
            period: std::time::Duration::from_secs(60),
        },
        arbiters: 2,
        commit_workers: 4,
        commit_batch: 64,
        turn_batch: 64,
        timer_interval: std::time::Duration::from_millis(200),
        retention: merit_storage::Retention {
            inbox: None,
            outbox: None,
            notifications: None,
            chunk: 1_000,
        },
        sweep_interval: std::time::Duration::from_secs(60),
        rebalance_interval: std::time::Duration::from_millis(500),
        drain_limit: std::time::Duration::from_secs(10),
    }
}

/// Actor services for tests: the built-in dynamic config and an L1-only cache.
pub fn services(node_id: &str) -> merit_actors::Services {
    merit_actors::Services::new(
        merit_config::ConfigHandle::default(),
        merit_storage::TieredCache::local(cache_config(node_id, "")),
    )
}

/// A cache configuration for tests: `prefix` isolates Redis keys and channels.
pub fn cache_config(node_id: &str, prefix: &str) -> merit_storage::CacheConfig {
    merit_storage::CacheConfig {
        l1_capacity: 10_000,
        ttl: std::time::Duration::from_secs(60),
        key_prefix: prefix.to_string(),
        node_id: node_id.to_string(),
    }
}

/// Polls `check` every 100 ms until it returns true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The `i`-th test wallet (distinct for every `i`).
pub fn wallet(i: u32) -> merit_messages::Address {
    let mut a = [0u8; 20];
    a[16..].copy_from_slice(&(i + 1).to_be_bytes());
    merit_messages::Address(a)
}

/// Votes counted by all users' actors (the sum of `users.votes_cast`): the checker's
/// measure of lost (below the votes sent) and doubled (above) effects.
pub async fn votes_counted(store: &Store) -> i64 {
    use merit_storage::sea_orm::EntityTrait;
    merit_storage::entities::user::Entity::find()
        .all(store.db())
        .await
        .expect("read users")
        .iter()
        .map(|u| u.votes_cast)
        .sum()
}

/// A `governance.proposal.created` for `id`, open from a minute ago for a week, so votes
/// published now are counted.
pub fn open_proposal(id: &str) -> merit_messages::Envelope {
    let now = chrono::Utc::now();
    merit_messages::Envelope::new(
        "test",
        merit_messages::ProposalCreated {
            proposal: id.parse().expect("proposal id"),
            creator: wallet(999_999),
            title: format!("Proposal {id}"),
            description: String::new(),
            starts_at: now - chrono::Duration::minutes(1),
            ends_at: now + chrono::Duration::days(7),
            quorum: 1,
            threshold_bps: 5_000,
        },
    )
}

/// A `governance.vote.cast` by `voter` on `proposal`, published by `source`.
pub fn vote_cast(
    source: &str,
    proposal: &str,
    voter: merit_messages::Address,
    choice: merit_messages::VoteChoice,
) -> merit_messages::Envelope {
    merit_messages::Envelope::new(
        source,
        merit_messages::VoteCast {
            proposal: proposal.parse().expect("proposal id"),
            voter,
            choice,
            reason: None,
        },
    )
}

/// Removes terminal colour codes from a log.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A TCP proxy in front of a service, which a test can take down and bring back: while
/// down it drops every connection and refuses new ones (as a stopped broker would), so a
/// node sees the service go away without disturbing the real one other tests share.
pub struct Proxy {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Proxy {
    /// Starts a proxy on a free local port forwarding to `target` (`127.0.0.1:5672`).
    pub async fn start(target: &'static str) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (up2, gen2) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (up, generation) = (up2.clone(), gen2.clone());
                let born = generation.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                    let cut = async {
                        while up.load(Ordering::SeqCst) && generation.load(Ordering::SeqCst) == born
                        {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        _ = cut => {}
                    }
                });
            }
        });
        Self {
            port,
            up,
            generation,
        }
    }

    /// Drops every connection and refuses new ones.
    pub fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Accepts connections again.
    pub fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A chain position for events a test makes up: chain 31337 (anvil's), block `block`.
pub fn chain_ref(block: u64) -> merit_messages::ChainRef {
    merit_messages::ChainRef {
        chain_id: 31337,
        block_number: block,
        block_hash: merit_messages::TxHash([7; 32]),
        tx_hash: merit_messages::TxHash([8; 32]),
        log_index: 0,
    }
}

/// Step `step` of `tokens` NFTs (token ids `0..tokens`): their mint (step 0) to `wallet(t)`,
/// then transfer `step`, from `wallet(t + step - 1)` to `wallet(t + step)`, at block
/// `step + 1`. The NftActor ignores a change older than the last it applied, so a
/// reordered transfer is dropped, and with it the two `user.holdings.changed` it emits:
/// strict per-key order emits exactly `1 + 2 × hops` per token.
pub fn nft_step(step: u32, tokens: u32) -> Vec<merit_mailbox::Outgoing> {
    use merit_messages::{Envelope, NftMinted, NftTransferred};
    (0..tokens)
        .map(|t| {
            let token = t.to_string().parse().expect("token");
            let chain = chain_ref(u64::from(step) + 1);
            let env = if step == 0 {
                Envelope::new(
                    "order-test",
                    NftMinted {
                        token,
                        to: wallet(t),
                        achievement_id: None,
                        tier: None,
                        chain,
                    },
                )
            } else {
                Envelope::new(
                    "order-test",
                    NftTransferred {
                        token,
                        from: wallet(t + step - 1),
                        to: wallet(t + step),
                        chain,
                    },
                )
            };
            merit_mailbox::Outgoing::from_envelope(&env)
        })
        .collect()
}

/// Waits up to `secs` until every one of `tokens` NftActors has applied its mint and `hops`
/// transfers (version `hops + 1`), as [`nft_step`] publishes them.
pub async fn nft_chains_applied(store: &Store, tokens: u32, hops: u32, secs: u64) {
    use merit_storage::{
        entities::actor,
        sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter},
    };
    eventually(secs, "every NFT change applied", || {
        let db = store.db().clone();
        async move {
            actor::Entity::find()
                .filter(actor::Column::Kind.eq("nft"))
                .filter(actor::Column::Version.eq(i64::from(hops) + 1))
                .count(&db)
                .await
                .expect("count")
                == u64::from(tokens)
        }
    })
    .await;
}

/// The `user.holdings.changed` events the NftActors emitted (outbox rows).
pub async fn holdings_changes_emitted(store: &Store) -> u64 {
    use merit_storage::{
        entities::outbox,
        sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter},
    };
    outbox::Entity::find()
        .filter(outbox::Column::RoutingKey.eq("user.holdings.changed"))
        .count(store.db())
        .await
        .expect("count")
}

/// A RabbitMQ transport on `url` with `shards` shards per kind, its topology declared.
pub async fn declared_transport(url: &str, shards: u16) -> merit_mailbox::RabbitTransport {
    use merit_mailbox::Transport;
    let t = merit_mailbox::RabbitTransport::connect(
        url,
        merit_mailbox::Topology {
            prefix: String::new(),
            shards,
        },
    )
    .await
    .expect("connect");
    t.declare().await.expect("declare");
    t
}

/// Every dead letter, wherever it is: recorded in the dead-letter table (any state, in
/// arrival order) or still in the queue, not yet taken by a node's recorder. One the
/// recorder holds between taking and committing is in neither for a moment, so callers
/// that expect some wait with [`eventually`].
pub async fn all_dead_letters<T: merit_mailbox::Transport + ?Sized>(
    transport: &T,
    store: &Store,
) -> Vec<merit_mailbox::DeadLetter> {
    let mut all: Vec<merit_mailbox::DeadLetter> = store
        .dead_letters(&merit_storage::DeadLetterFilter::default(), 0, 1_000_000)
        .await
        .expect("read the dead-letter table")
        .iter()
        .map(merit_supervisors::dead_letters::dead_letter_of)
        .collect();
    let queued = transport
        .dead_letters(100_000)
        .await
        .expect("peek the dead-letter queue");
    for dl in queued {
        if !all.iter().any(|d| d.id == dl.id) {
            all.push(dl);
        }
    }
    all
}

// ---- Test nodes as child processes, for the service-tier HTTP tests ----

/// A free local TCP port (free when asked; a test passes it to a node at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// A node log of `name` under [`artefacts`], any earlier run's removed.
pub fn fresh_log(name: &str) -> std::path::PathBuf {
    let log = artefacts().join(name);
    let _ = std::fs::remove_file(&log);
    log
}

/// The variables of a test node: its database, its broker (`None`: the embedded one), its
/// id and admin token, then `extra` (a JWT secret, a shard count, ...).
pub fn serve_env<'a>(
    db_url: &'a str,
    amqp_url: Option<&'a str>,
    node_id: &'a str,
    admin: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("MERIT_DATABASE_URL", db_url)];
    env.extend(amqp_url.map(|url| ("MERIT_AMQP_URL", url)));
    env.push(("MERIT_NODE_ID", node_id));
    env.push(("MERIT_ADMIN_TOKEN", admin));
    env.extend_from_slice(extra);
    env
}

/// `GET url` with `token` as the bearer: the body as JSON (the request must succeed).
pub async fn get_json(url: &str, token: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("a JSON body")
}

/// `merit serve` on a fresh PostgreSQL database and RabbitMQ vhost of its own, with fresh
/// secrets: what most service-tier HTTP tests start from.
pub struct ServedNode {
    pub process: NodeProcess,
    /// The node's HTTP base URL.
    pub base: String,
    pub admin: String,
    pub jwt: String,
    pub log: std::path::PathBuf,
    pub db: TestDb,
    pub vhost: Vhost,
}

impl ServedNode {
    /// Starts node `node_id` (its JWT secret set, then `extra`) logging to [`fresh_log`]
    /// `log`, and waits for its HTTP address (not for readiness).
    pub async fn start(node_id: &str, log: &str, extra: &[(&str, &str)]) -> Self {
        init_crypto();
        let db = TestDb::empty(Backend::Postgres).await;
        let vhost = Vhost::create();
        Self::spawn_on(db, vhost, node_id, fresh_log(log), extra)
    }

    /// As [`ServedNode::start`], on a database and vhost the caller made (and may have
    /// prepared, e.g. declared), appending to `log` as it is.
    pub fn spawn_on(
        db: TestDb,
        vhost: Vhost,
        node_id: &str,
        log: std::path::PathBuf,
        extra: &[(&str, &str)],
    ) -> Self {
        let (admin, jwt) = secrets();
        let mut more = vec![("MERIT_JWT_SECRET", jwt.as_str())];
        more.extend_from_slice(extra);
        let env = serve_env(&db.url, Some(&vhost.url), node_id, &admin, &more);
        let process = NodeProcess::spawn(&env, &log);
        let base = process.http_url(60);
        Self {
            process,
            base,
            admin,
            jwt,
            log,
            db,
            vhost,
        }
    }

    /// A user token for `wallet`, valid for an hour.
    pub fn user(&self, wallet: &merit_messages::Address) -> String {
        merit_api::sign(self.jwt.as_bytes(), &wallet.to_string(), 3600)
    }

    /// Stops the node (SIGTERM) and removes its vhost and database.
    pub async fn finish(self) {
        self.process.stop();
        self.vhost.delete();
        self.db.cleanup().await;
    }
}

// ---------------------------------------------------------------------------------------
// the AchievementUnlock saga's tests (tests/unlock.rs, tests/chain_saga.rs)
// ---------------------------------------------------------------------------------------

/// `governance.proposal.created` for proposal `id` by `creator`, from `source`: a first
/// proposal unlocks the "first-proposal" achievement.
pub fn proposal_created_by(
    source: &str,
    creator: merit_messages::Address,
    id: &str,
) -> merit_messages::Envelope {
    let now = chrono::Utc::now();
    merit_messages::Envelope::new(
        source,
        merit_messages::ProposalCreated {
            proposal: id.parse().expect("proposal id"),
            creator,
            title: "A proposal".into(),
            description: String::new(),
            starts_at: now,
            ends_at: now + chrono::Duration::days(1),
            quorum: 1,
            threshold_bps: 5_000,
        },
    )
}

/// `user`'s "first-proposal" achievement row, if there is one.
pub async fn first_proposal_of(
    store: &Store,
    user: merit_messages::Address,
) -> Option<merit_storage::entities::achievement::Model> {
    use merit_storage::{
        entities::achievement,
        sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    };
    achievement::Entity::find()
        .filter(achievement::Column::User.eq(user.to_string()))
        .filter(achievement::Column::RuleId.eq("first-proposal"))
        .one(store.db())
        .await
        .expect("achievements")
}

/// The token an unlocked achievement row mints.
pub fn token_of(row: &merit_storage::entities::achievement::Model) -> merit_messages::TokenId {
    row.token_id
        .as_deref()
        .expect("an unlocked achievement has its token id")
        .parse()
        .expect("a token id")
}

/// How many outbox rows have `routing_key`.
pub async fn outbox_count(store: &Store, routing_key: &str) -> usize {
    use merit_storage::{
        entities::outbox,
        sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    };
    outbox::Entity::find()
        .filter(outbox::Column::RoutingKey.eq(routing_key))
        .all(store.db())
        .await
        .expect("outbox")
        .len()
}

/// Sends `request`: its status, and its body as JSON where it is JSON, else as a string.
pub async fn answer(request: reqwest::RequestBuilder) -> (reqwest::StatusCode, serde_json::Value) {
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body)
}

// ---- the `merit` binary run by a test (tests/cli.rs, tests/minter_start.rs, …) ----

/// Removes every `MERIT_*` variable of the outer environment from `cmd`: a test sets what
/// it needs and nothing else.
pub fn without_merit_env(cmd: &mut std::process::Command) -> &mut std::process::Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("MERIT_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// `merit args` in the crate's directory with only `envs` as its `MERIT_*` variables.
pub fn merit_command(args: &[&str], envs: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_merit"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    without_merit_env(&mut cmd).envs(envs.iter().copied());
    cmd
}

/// What a finished command printed: its stdout, then its stderr.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// ---------------------------------------------------------------------------------------
// Redis for the cache tests (tests/cache.rs, tests/cache_nodes.rs).
// ---------------------------------------------------------------------------------------

/// The shared Redis of the cache tests: `MERIT_TEST_REDIS_URL`, by default
/// `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("MERIT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Test logs to the test writer, filtered by `RUST_LOG` or else by `default_filter`.
pub fn init_test_logs(default_filter: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_test_writer()
        .try_init();
}

/// A `redis-server` of a test's own on `port` (no persistence), so a test can stop, hang
/// or kill it without touching the shared one; SIGKILLed when dropped.
pub struct OwnRedis {
    child: std::process::Child,
}

impl OwnRedis {
    /// Starts it and waits (up to 10 s) until it accepts connections.
    pub fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (redis-server must be installed)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { child }
    }

    /// Sends `signal` (`-STOP`, `-CONT`): SIGSTOP hangs the server (connections stay
    /// open, nothing answers), SIGCONT resumes it.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal}");
    }

    /// SIGKILL: the server vanishes mid-conversation, with everything it held.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes an open proposal (see [`open_proposal`]) for each of `p-0` .. `p-{n-1}`.
pub async fn publish_open_proposals<T: merit_mailbox::Transport + ?Sized>(producer: &T, n: u32) {
    let proposals: Vec<merit_mailbox::Outgoing> = (0..n)
        .map(|p| merit_mailbox::Outgoing::from_envelope(&open_proposal(&format!("p-{p}"))))
        .collect();
    producer
        .publish(proposals)
        .await
        .expect("publish proposals");
}

/// A fresh migrated PostgreSQL database (with a pool on it) and a fresh RabbitMQ vhost:
/// where most service-tier node tests start.
pub async fn pg_and_vhost() -> (TestDb, Store, Vhost) {
    let (db, store) = TestDb::migrated(Backend::Postgres).await;
    (db, store, Vhost::create())
}

/// Every user's projection row.
pub async fn users(store: &Store) -> Vec<merit_storage::entities::user::Model> {
    use merit_storage::sea_orm::EntityTrait;
    let all = merit_storage::entities::user::Entity::find().all(store.db());
    all.await.expect("read users")
}
