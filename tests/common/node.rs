//! In-process nodes and their broker: options, services, transports, and the system
//! they run in.

use merit_storage::Store;

use super::{init_crypto, Backend, TestDb, Vhost};

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

/// Starts node `name` with `shards` shards per kind on `store` and `transport`, with the
/// test options ([`node_options`]) and services ([`services`]).
pub async fn start_node(
    name: &str,
    shards: u16,
    store: Store,
    transport: std::sync::Arc<dyn merit_mailbox::Transport>,
) -> merit_supervisors::Node {
    merit_supervisors::Node::start(node_options(name, shards), store, services(name), transport)
        .await
        .expect("node starts")
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

/// A fresh migrated PostgreSQL database (with a pool on it) and a fresh RabbitMQ vhost:
/// where most service-tier node tests start.
pub async fn pg_and_vhost() -> (TestDb, Store, Vhost) {
    let (db, store) = TestDb::migrated(Backend::Postgres).await;
    (db, store, Vhost::create())
}
