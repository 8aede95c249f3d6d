//! The fault suite: a node under load from `merit simulate` while a service it depends on
//! is restarted. After each fault a checker counts what was lost, doubled or unexpected:
//! all zero.
//!
//! These faults hit services the whole machine shares (RabbitMQ, PostgreSQL, Redis), so
//! the tests are `#[ignore]`d in the parallel run and `.ci/run` runs them afterwards, one
//! at a time: `cargo test --test faults -- --ignored --test-threads=1`.

mod common;

use std::{path::PathBuf, process::Command, time::Duration};

use common::{Backend, NodeProcess, TestDb, Vhost};
use merit_storage::{
    entities::{proposal, user, vote},
    sea_orm::{EntityTrait, PaginatorTrait},
    Store,
};
use serde_json::Value;

/// What the checker found.
#[derive(Debug)]
struct Verdict {
    sent: u64,
    unconfirmed: u64,
    counted: u64,
    lost: u64,
    doubled_at_users: i64,
    doubled_in_tallies: i64,
}

/// Runs `merit simulate` against `amqp` for `seconds` at `rate` (votes/s), returning its
/// JSON summary.
fn simulate(amqp: &str, seconds: u32, rate: u32, out: &PathBuf) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_merit"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MERIT_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["simulate", "--amqp-url", amqp])
        .args(["--users", "400", "--proposals", "20"])
        .args([
            "--rate",
            &rate.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .args(["--duplicate-fraction", "0.02", "--seed", "11"])
        .arg("--json")
        .arg(out)
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

async fn check(store: &Store, summary: &Value) -> Verdict {
    let sent = summary["sent"]["votes"].as_u64().expect("votes sent");
    let unconfirmed = summary["unconfirmed"].as_u64().unwrap_or(0)
        + summary["confirm_failures"].as_u64().unwrap_or(0);
    let db = store.db();
    let counted = vote::Entity::find().count(db).await.expect("votes");
    let at_users: i64 = user::Entity::find()
        .all(db)
        .await
        .expect("users")
        .iter()
        .map(|u| u.votes_cast)
        .sum();
    let in_tallies: i64 = proposal::Entity::find()
        .all(db)
        .await
        .expect("proposals")
        .iter()
        .map(|p| p.tally["voters"].as_i64().unwrap_or(0))
        .sum();
    let counted_i = i64::try_from(counted).expect("count");
    Verdict {
        sent,
        unconfirmed,
        counted,
        // A vote the broker never confirmed may or may not have been stored: only a
        // confirmed one missing is lost.
        lost: (sent - unconfirmed).saturating_sub(counted),
        doubled_at_users: at_users - counted_i,
        doubled_in_tallies: in_tallies - counted_i,
    }
}

/// A node on PostgreSQL and its own vhost under load while `fault` runs `after` into the
/// load; then waits for the counts to settle and checks them.
async fn under_load(
    name: &str,
    redis: bool,
    after: Duration,
    fault: impl FnOnce() + Send + 'static,
) -> Verdict {
    common::init_crypto();
    let db = TestDb::empty(Backend::Postgres).await;
    let vhost = Vhost::create();
    let log = common::artefacts().join(format!("fault-{name}.log"));
    let _ = std::fs::remove_file(&log);
    let mut envs = vec![
        ("MERIT_DATABASE_URL", db.url.clone()),
        ("MERIT_AMQP_URL", vhost.url.clone()),
        ("MERIT_NODE_ID", format!("fault-{name}")),
        ("MERIT_MAILBOX_SHARDS", "2".to_string()),
    ];
    if redis {
        envs.push(("MERIT_REDIS_URL", "redis://127.0.0.1:6379".to_string()));
    }
    let refs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let node = NodeProcess::spawn(&refs, &log);
    let base = node.http_url(60);
    common::wait_ready(&base, 60).await;
    let out = common::artefacts().join(format!("fault-{name}-simulate.json"));
    let _ = std::fs::remove_file(&out);
    let mut load = simulate(&vhost.url, 20, 250, &out);
    tokio::time::sleep(after).await;
    tokio::task::spawn_blocking(fault).await.expect("fault");
    let status = tokio::task::spawn_blocking(move || load.wait())
        .await
        .expect("join")
        .expect("simulate ran");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("summary"))
        .expect("summary JSON");
    eprintln!("{name}: simulate exited {status}; sent {}", summary["sent"]);
    let store = db.connect().await;
    // Settle: every confirmed vote counted by its proposal, and each counted vote recorded
    // by its voter's actor too (the second hop goes through the outbox relay), or the
    // counts stop moving for 15 s.
    let mut last = None;
    let mut still = 0;
    for _ in 0..360 {
        let v = check(&store, &summary).await;
        let settled = v.lost == 0 && v.doubled_at_users == 0 && v.doubled_in_tallies == 0;
        let now = (v.counted, v.doubled_at_users, v.doubled_in_tallies);
        still = if Some(now) == last { still + 1 } else { 0 };
        last = Some(now);
        if settled || still >= 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let verdict = check(&store, &summary).await;
    eprintln!("{name}: {verdict:?}");
    store.close().await.expect("close");
    node.stop();
    vhost.delete();
    db.cleanup().await;
    verdict
}

fn run(cmd: &str, args: &[&str]) {
    let status = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(status.success(), "{cmd} {args:?}: {status}");
}

fn assert_clean(v: &Verdict) {
    assert!(v.sent > 1_000, "load was held: {v:?}");
    assert!(
        v.counted + v.unconfirmed >= v.sent,
        "every confirmed vote counted: {v:?}"
    );
    assert_eq!(v.lost, 0, "nothing lost: {v:?}");
    assert_eq!(v.doubled_at_users, 0, "nothing doubled at the users: {v:?}");
    assert_eq!(
        v.doubled_in_tallies, 0,
        "nothing doubled in the tallies: {v:?}"
    );
    assert!(v.counted <= v.sent, "nothing unexpected: {v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared RabbitMQ: run serially (see the module docs)"]
async fn rabbitmq_restarted_under_load_loses_and_doubles_nothing() {
    let v = under_load("rabbitmq", false, Duration::from_secs(5), || {
        run("rabbitmqctl", &["stop_app"]);
        std::thread::sleep(Duration::from_secs(3));
        run("rabbitmqctl", &["start_app"]);
        run("rabbitmqctl", &["await_startup", "--timeout", "60"]);
    })
    .await;
    assert_clean(&v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared PostgreSQL: run serially (see the module docs)"]
async fn postgresql_restarted_under_load_loses_and_doubles_nothing() {
    let v = under_load("postgresql", false, Duration::from_secs(5), || {
        let version = std::fs::read_dir("/etc/postgresql")
            .expect("a Debian PostgreSQL cluster")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .next()
            .expect("a version");
        run(
            "pg_ctlcluster",
            &[
                "--skip-systemctl-redirect",
                &version,
                "main",
                "restart",
                "-m",
                "fast",
            ],
        );
    })
    .await;
    assert_clean(&v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "flushes and stops the shared Redis: run serially (see the module docs)"]
async fn redis_flushed_and_stopped_under_load_loses_and_doubles_nothing() {
    let v = under_load("redis", true, Duration::from_secs(5), || {
        run("redis-cli", &["FLUSHALL"]);
        let _ = Command::new("redis-cli")
            .args(["shutdown", "nosave"])
            .status();
        std::thread::sleep(Duration::from_secs(4));
        run(
            "redis-server",
            &[
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        );
        std::thread::sleep(Duration::from_secs(1));
    })
    .await;
    assert_clean(&v);
}
