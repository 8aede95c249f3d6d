//! `merit demo` as a user runs it: on embedded defaults, it drives a community through a
//! node and its summary shows achievements minted, a compensated saga and trades; with
//! the service variables set, the same command runs on RabbitMQ, PostgreSQL, Redis and
//! anvil, and every NFT it reports is on chain.

mod common;

use std::process::Command;

use common::anvil::Anvil;
use merit_chain::{Chain, ZERO_ADDRESS};

/// The number on the summary line that starts with `label`.
fn figure(summary: &str, label: &str) -> Vec<u64> {
    let line = summary
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("summary has {label:?}:\n{summary}"));
    line[line.find(label).unwrap_or(0) + label.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("a number"))
        .collect()
}

/// `merit demo` with no `MERIT_*` variable of the caller's, plus `envs`.
fn demo(args: &[&str], envs: &[(&str, String)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_merit"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MERIT_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("demo")
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .env("MERIT_ENV", "test")
        .env(
            "MERIT_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .output()
        .expect("run merit demo")
}

#[test]
fn the_demo_unlocks_mints_compensates_and_trades() {
    let out = demo(
        &[
            "--users",
            "30",
            "--proposals",
            "6",
            "--failures",
            "2",
            "--trades",
            "4",
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "merit demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted = figure(&stdout, "minted as NFTs")[0];
    let compensated = figure(&stdout, "failed and compensated")[0];
    let sagas = figure(&stdout, "sagas completed / compensated");
    let unlocked = figure(&stdout, "achievements unlocked")[0];
    assert!(minted > 0, "{stdout}");
    assert_eq!(
        compensated, 2,
        "the two refused mints were compensated: {stdout}"
    );
    assert_eq!(sagas, [minted, compensated], "{stdout}");
    assert_eq!(
        unlocked,
        minted + compensated,
        "every unlock settled: {stdout}"
    );
    assert_eq!(figure(&stdout, "NFTs traded on chain")[0], 4, "{stdout}");
    assert!(figure(&stdout, "votes counted")[0] > 0, "{stdout}");
    assert!(
        stdout.contains("load  ") && stdout.contains("spread: "),
        "{stdout}"
    );
    // Without --keep-serving the node stops after the summary: it names no dashboard
    // address that would not answer, and says how to keep one up.
    assert!(!stdout.contains("/dashboard"), "{stdout}");
    assert!(stdout.contains("merit demo --keep-serving"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn the_same_command_runs_on_the_real_services_and_mints_on_chain() {
    let (db, vhost) = common::served_pg_and_vhost().await;
    let anvil = Anvil::start(Some(1));
    let (admin, reader) = anvil.deploy().await;
    let prefix = format!("merit-test-{}:", vhost.name);
    let envs = vec![
        ("MERIT_DATABASE_URL", db.url.clone()),
        ("MERIT_AMQP_URL", vhost.url.clone()),
        ("MERIT_REDIS_URL", "redis://127.0.0.1:6379".to_string()),
        ("MERIT_CACHE_REDIS_PREFIX", prefix),
        ("MERIT_CHAIN_RPC_URL", anvil.url()),
        ("MERIT_CHAIN_CONTRACT_ADDRESS", admin.contract().to_string()),
        ("MERIT_CHAIN_CONFIRMATIONS", "1".to_string()),
        ("MERIT_CHAIN_POLL_INTERVAL_MS", "200".to_string()),
        ("MERIT_MAILBOX_SHARDS", "2".to_string()),
    ];
    let args = [
        "--users",
        "30",
        "--proposals",
        "6",
        "--shape",
        "hot-proposal",
    ];
    let out = tokio::task::spawn_blocking(move || demo(&args, &envs))
        .await
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "merit demo failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("(database postgres://"),
        "it ran on PostgreSQL: {stderr}"
    );
    assert!(
        stdout.contains("hot proposal: 30 votes on one proposal"),
        "{stdout}"
    );
    assert_eq!(
        figure(&stdout, "votes counted")[0],
        30,
        "every user voted on the hot proposal, once: {stdout}"
    );
    let minted = figure(&stdout, "minted as NFTs")[0];
    assert!(minted > 0, "{stdout}");
    // Refused mints and trades need the dev chain: none on a real one.
    assert_eq!(figure(&stdout, "failed and compensated")[0], 0, "{stdout}");
    assert_eq!(
        figure(&stdout, "sagas completed / compensated"),
        [minted, 0],
        "{stdout}"
    );
    assert_eq!(
        figure(&stdout, "achievements unlocked")[0],
        minted,
        "every unlock settled: {stdout}"
    );
    // Every NFT the summary reports is one mint on chain, and there is no other.
    let head = reader.head_block().await.expect("head");
    let mints = reader
        .logs(0, head)
        .await
        .expect("Transfer logs")
        .into_iter()
        .filter(|log| log.from == ZERO_ADDRESS)
        .count() as u64;
    assert_eq!(mints, minted, "{stdout}");
    vhost.delete();
    db.cleanup().await;
}
