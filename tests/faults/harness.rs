//! Harness: the fault-tier gate, a fault run's setup, its nodes and `merit simulate` load,
//! and the settle-and-check that ends every run.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::{Child, Command},
    time::Duration,
};

use merit_chain::{Chain, EthersChain};
use merit_storage::{entities::vote, sea_orm::EntityTrait, Store};
use serde_json::Value;

use crate::{
    checker::{check, Tally, Verdict},
    common::{self, anvil::Anvil, Backend, NodeProcess, TestDb, Vhost},
    ledger::Ledger,
};

/// Whether this fault test must not run here: it restarts services other tests share, so
/// it runs only where `MERIT_FAULT_TIER=1` says the fault tier runs alone. A skip is
/// written straight to stderr, past libtest's capture, so `cargo test` shows it.
pub(crate) fn skipped_outside_fault_tier() -> bool {
    if std::env::var("MERIT_FAULT_TIER").is_ok_and(|v| v == "1") {
        return false;
    }
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "fault tier skipped: it restarts shared services, so it runs alone with \
         MERIT_FAULT_TIER=1 (README: Test tiers)"
    );
    true
}

/// Votes per second `merit simulate` offers, and for how long.
const RATE: u32 = 250;
const SECONDS: u32 = 20;

/// Runs `merit simulate` against `amqp`, writing its JSON summary to `out` and its
/// ledger (what became of each message) to `ledger`.
fn simulate(amqp: &str, out: &PathBuf, ledger: &PathBuf) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_merit"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MERIT_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["simulate", "--amqp-url", amqp])
        .args(["--users", "400", "--proposals", "20"])
        .args(["--rate", &RATE.to_string()])
        .args(["--seconds", &SECONDS.to_string()])
        .args(["--duplicate-fraction", "0.02", "--seed", "11"])
        .arg("--json")
        .arg(out)
        .arg("--ledger")
        .arg(ledger)
        .env("MERIT_ENV", "test")
        .env(
            "MERIT_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn merit simulate")
}

/// How a fault run is set up.
#[derive(Clone, Copy, Default)]
pub(crate) struct Setup {
    /// Nodes sharing the database and the shard queues.
    nodes: usize,
    /// Give the nodes Redis (the L2 cache and discovery).
    redis: bool,
    /// Mint on a real chain (anvil, a block a second, state kept across restarts)
    /// instead of each node's in-process dev chain.
    anvil: bool,
    /// Use the 3-node test broker cluster (`scripts/rabbit-cluster.sh`), every queue
    /// replicated on all three, instead of the machine's broker.
    broker_cluster: bool,
}

impl Setup {
    /// `nodes` nodes on the machine's broker, without Redis, each minting on its dev chain.
    pub(crate) fn nodes(nodes: usize) -> Self {
        Self {
            nodes,
            ..Self::default()
        }
    }

    /// The same, minting on anvil.
    pub(crate) fn on_anvil(self) -> Self {
        Self {
            anvil: true,
            ..self
        }
    }

    /// The same, with Redis.
    pub(crate) fn with_redis(self) -> Self {
        Self {
            redis: true,
            ..self
        }
    }

    /// The same, on the 3-node test broker cluster.
    pub(crate) fn on_broker_cluster(self) -> Self {
        Self {
            broker_cluster: true,
            ..self
        }
    }
}

/// The `merit simulate` of a run, killed if the run is dropped before it ends (a test that
/// panics): left running, it would go on writing its ledger into the file the next run of
/// the same fault reads, and that run would count the stale lines as lost votes. (That
/// happened once: a broker-node run "lost" 4 confirmed votes that its ledger held beyond
/// its own simulate's confirmed tally, written by the orphan of the run before.)
struct Load(Option<Child>);

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One fault run: a fresh PostgreSQL database and vhost, its nodes, maybe an anvil, and
/// the load.
pub(crate) struct Run {
    name: &'static str,
    db: TestDb,
    pub(crate) vhost: Vhost,
    envs: Vec<(&'static str, String)>,
    pub(crate) log: PathBuf,
    pub(crate) nodes: Vec<NodeProcess>,
    pub(crate) anvil: Option<Anvil>,
    reader: Option<EthersChain>,
    load: Option<Load>,
    out: PathBuf,
    /// `merit simulate`'s ledger: what became of each message, by event id.
    ledger: PathBuf,
}

impl Run {
    /// Starts the nodes one by one, waits until they are ready, and starts the load.
    pub(crate) async fn start(name: &'static str, setup: Setup) -> Self {
        common::init_crypto();
        let db = TestDb::empty(Backend::Postgres).await;
        let vhost = if setup.broker_cluster {
            Vhost::on_cluster()
        } else {
            Vhost::create()
        };
        let log = common::artefacts().join(format!("fault-{name}.log"));
        let _ = std::fs::remove_file(&log);
        let mut envs = vec![
            ("MERIT_DATABASE_URL", db.url.clone()),
            ("MERIT_AMQP_URL", vhost.url.clone()),
            ("MERIT_MAILBOX_SHARDS", "2".to_string()),
        ];
        if setup.redis {
            envs.push(("MERIT_REDIS_URL", "redis://127.0.0.1:6379".to_string()));
        }
        if setup.broker_cluster {
            envs.push(("MERIT_MAILBOX_QUORUM_GROUP_SIZE", "3".to_string()));
        }
        let (mut anvil, mut reader) = (None, None);
        if setup.anvil {
            let state = common::artefacts().join(format!("fault-{name}-anvil.json"));
            let _ = std::fs::remove_file(&state);
            let chain = Anvil::start_persistent(Some(1), &state);
            let (admin, read) = chain.deploy().await;
            envs.extend([
                ("MERIT_CHAIN_RPC_URL", chain.url()),
                ("MERIT_CHAIN_CONTRACT_ADDRESS", admin.contract().to_string()),
                ("MERIT_CHAIN_CONFIRMATIONS", "1".to_string()),
                ("MERIT_CHAIN_POLL_INTERVAL_MS", "200".to_string()),
            ]);
            anvil = Some(chain);
            reader = Some(read);
        }
        let vhost_name = vhost.name.clone();
        let mut run = Self {
            name,
            db,
            vhost,
            envs,
            log,
            nodes: Vec::new(),
            anvil,
            reader,
            load: None,
            out: common::artefacts().join(format!("fault-{name}-simulate.json")),
            // Named after the run's own vhost: no other process can be writing it.
            ledger: common::artefacts().join(format!("fault-{name}-ledger-{}.tsv", vhost_name)),
        };
        for i in 0..setup.nodes.max(1) {
            let node = run.spawn(i);
            common::wait_ready(&node.http_url(60), 60).await;
            run.nodes.push(node);
        }
        let _ = std::fs::remove_file(&run.out);
        run.load = Some(Load(Some(simulate(&run.vhost.url, &run.out, &run.ledger))));
        run
    }

    /// Starts node `i` (`fault-NAME-i`; the same id again after a crash).
    pub(crate) fn spawn(&self, i: usize) -> NodeProcess {
        let id = format!("fault-{}-{i}", self.name);
        let mut envs: Vec<(&str, &str)> = self.envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        envs.push(("MERIT_NODE_ID", &id));
        NodeProcess::spawn(&envs, &self.log)
    }

    /// Runs `fault` (blocking) now.
    pub(crate) async fn fault(&self, fault: impl FnOnce() + Send + 'static) {
        tokio::task::spawn_blocking(fault).await.expect("fault");
    }

    /// Waits for the load to end and the work to settle, checks it, and cleans up.
    pub(crate) async fn finish(mut self) -> Verdict {
        let mut load = self
            .load
            .take()
            .and_then(|mut l| l.0.take())
            .expect("the load is running");
        let status = tokio::task::spawn_blocking(move || load.wait())
            .await
            .expect("join")
            .expect("simulate ran");
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.out).expect("summary"))
                .expect("summary JSON");
        let name = self.name;
        eprintln!("{name}: simulate exited {status}; sent {}", summary["sent"]);
        let ledger = Ledger::read(&self.ledger);
        let store = self.db.connect().await;
        // Settle: every count clean (votes through both hops, every unlock minted and
        // notified), or nothing moving for 60 s (a saga whose step failed during the fault
        // waits out its retry backoff).
        let mut last = None;
        let mut still = 0;
        for _ in 0..600 {
            let v = check(&store, &ledger, self.reader.as_ref()).await;
            let clean = v.clean();
            still = if Some(&v) == last.as_ref() {
                still + 1
            } else {
                0
            };
            last = Some(v);
            if clean || still >= 120 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let verdict = check(&store, &ledger, self.reader.as_ref()).await;
        eprintln!("{name}: {verdict:#?}");
        if !verdict.clean() {
            self.explain(&store, &ledger).await;
        }
        store.close().await.expect("close");
        for node in self.nodes.drain(..) {
            node.stop();
        }
        drop(self.anvil.take());
        self.vhost.delete();
        self.db.cleanup().await;
        verdict
    }
}

impl Run {
    /// Prints what a failed run leaves behind, for whoever reads the log: each lost
    /// vote's id, proposal and inbox rows, and the broker's queues (depth, unacked,
    /// consumers), dead-letter queue included.
    async fn explain(&self, store: &Store, ledger: &Ledger) {
        use merit_storage::entities::inbox;
        let rows: BTreeSet<String> = vote::Entity::find()
            .all(store.db())
            .await
            .map(|v| v.into_iter().map(|r| r.event_id).collect())
            .unwrap_or_default();
        let inboxed: Vec<(String, String)> = inbox::Entity::find()
            .all(store.db())
            .await
            .map(|v| v.into_iter().map(|r| (r.event_id, r.consumer)).collect())
            .unwrap_or_default();
        for (id, sent) in ledger
            .votes
            .iter()
            .filter(|(id, s)| s.confirmed && !rows.contains(*id))
        {
            let consumers: Vec<&str> = inboxed
                .iter()
                .filter(|(e, _)| e == id)
                .map(|(_, c)| c.as_str())
                .collect();
            eprintln!(
                "{}: lost vote {id} on {} by {}; inbox rows: {consumers:?}",
                self.name, sent.proposal, sent.user
            );
        }
        let columns = [
            "list_queues",
            "-p",
            &self.vhost.name,
            "name",
            "messages_ready",
            "messages_unacknowledged",
            "consumers",
        ];
        let queues = if self.vhost.url.contains(',') {
            let mut args = vec!["ctl", "1"];
            args.extend(columns);
            common::rabbit_cluster(&args)
        } else {
            // Bounded: a wedged broker must not hang the report of a failure.
            Command::new("timeout")
                .args(["60", "rabbitmqctl"])
                .args(columns)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        eprintln!("{}: broker queues:\n{queues}", self.name);
    }
}

pub(crate) fn run(cmd: &str, args: &[&str]) {
    let status = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(status.success(), "{cmd} {args:?}: {status}");
}

pub(crate) fn assert_clean(v: &Verdict) {
    assert!(v.confirmed > 1_000, "load was held: {v:#?}");
    assert!(v.achievements > 0, "the load unlocked achievements: {v:#?}");
    assert_eq!(v.votes, Tally::default(), "votes: {v:#?}");
    assert_eq!(
        v.achievements_tally,
        Tally::default(),
        "achievements: {v:#?}"
    );
    assert_eq!(v.nfts, Tally::default(), "NFTs: {v:#?}");
    assert_eq!(
        v.notifications_tally,
        Tally::default(),
        "notifications: {v:#?}"
    );
    assert_eq!(v.sagas_not_completed, 0, "every saga completed: {v:#?}");
}

/// Starts the run `name` on `setup`, runs `fault` (blocking) 5 s into the load, and
/// asserts that nothing was lost or doubled.
pub(crate) async fn fault_five_seconds_in(
    name: &'static str,
    setup: Setup,
    fault: impl FnOnce() + Send + 'static,
) {
    let r = Run::start(name, setup).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    r.fault(fault).await;
    assert_clean(&r.finish().await);
}
