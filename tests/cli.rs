//! The `merit` binary as an operator uses it: migrations on fresh databases, changing the
//! shard count, the effective config with secrets redacted, and production's refusal of
//! development secrets.

mod common;

use std::process::Output;

use common::{output_text as text, Backend, TestDb, Vhost};
use merit_mailbox::{Outgoing, RabbitTransport, Transport};
use merit_messages::ActorKind;

/// Runs `merit args` with only `envs` as `MERIT_*` variables.
fn merit(args: &[&str], envs: &[(&str, &str)]) -> Output {
    common::merit_command(args, envs)
        .output()
        .expect("run merit")
}

async fn migrate_fresh_then_again(backend: Backend) {
    let db = TestDb::empty(backend).await;
    let first = merit(
        &["migrate"],
        &[("MERIT_DATABASE_URL", &db.url), ("MERIT_ENV", "test")],
    );
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("applied m20261124_000001_initial"),
        "{}",
        text(&first)
    );
    let second = merit(
        &["migrate"],
        &[("MERIT_DATABASE_URL", &db.url), ("MERIT_ENV", "test")],
    );
    assert!(second.status.success(), "{}", text(&second));
    assert!(text(&second).contains("is up to date"), "{}", text(&second));
    db.cleanup().await;
}

on_both_backends! {
    merit_migrate_creates_the_schema_and_twice_is_a_no_op => migrate_fresh_then_again;
}

/// Nodes of a cluster starting together on a fresh PostgreSQL: four `merit migrate` at the
/// same moment all succeed, exactly one applies the migrations and the others find the
/// schema up to date (they wait on the migration lock instead of racing to create it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn nodes_migrating_a_fresh_postgres_together_take_turns() {
    let db = TestDb::empty(Backend::Postgres).await;
    let runs: Vec<std::thread::JoinHandle<Output>> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                merit(
                    &["migrate"],
                    &[("MERIT_DATABASE_URL", &url), ("MERIT_ENV", "test")],
                )
            })
        })
        .collect();
    let outputs: Vec<Output> = runs
        .into_iter()
        .map(|r| r.join().expect("merit migrate ran"))
        .collect();
    for o in &outputs {
        assert!(o.status.success(), "{}", text(o));
    }
    let applied = outputs
        .iter()
        .filter(|o| text(o).contains("applied m20261124_000001_initial"))
        .count();
    let up_to_date = outputs
        .iter()
        .filter(|o| text(o).contains("is up to date"))
        .count();
    assert_eq!(
        (applied, up_to_date),
        (1, 3),
        "one applies, the others wait"
    );
    db.cleanup().await;
}

/// Shard queues per kind on the broker.
async fn shard_counts(t: &RabbitTransport) -> Vec<usize> {
    let mut counts = Vec::new();
    for kind in ActorKind::ALL {
        counts.push(t.shard_queues(kind).await.expect("shard queues").len());
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn reshard_refuses_an_undrained_deployment_then_grows_and_shrinks_the_shards() {
    let (db, store) = TestDb::migrated(Backend::Postgres).await;
    store.close().await.expect("close");
    let vhost = Vhost::create();
    let t = common::declared_transport(&vhost.url, 2).await;
    let envs = [
        ("MERIT_ENV", "test"),
        ("MERIT_DATABASE_URL", db.url.as_str()),
        ("MERIT_AMQP_URL", vhost.url.as_str()),
    ];
    let reshard = |to: &str, dry: bool| {
        let mut args = vec!["reshard", "--to", to];
        if dry {
            args.push("--dry-run");
        }
        merit(&args, &envs)
    };

    // A message waits in a shard queue: refused, nothing created.
    t.publish(vec![Outgoing::from_envelope(&common::open_proposal("p-1"))])
        .await
        .expect("published");
    let refused = reshard("3", false);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("not drained, nothing changed"),
        "{}",
        text(&refused)
    );
    assert!(
        text(&refused).contains("holds 1 messages"),
        "{}",
        text(&refused)
    );
    assert_eq!(shard_counts(&t).await, [2, 2, 2]);

    // Drained: a dry run says what it would do and does nothing.
    for shard in 0..2 {
        vhost.purge(&format!("merit.proposal.{shard}"));
    }
    let dry = reshard("3", true);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("merit.user: 2 -> 3 shard queues (create merit.user.2"),
        "{}",
        text(&dry)
    );
    assert_eq!(shard_counts(&t).await, [2, 2, 2]);

    // Grow, then shrink below the start.
    let grown = reshard("3", false);
    assert!(grown.status.success(), "{}", text(&grown));
    assert_eq!(shard_counts(&t).await, [3, 3, 3]);
    let shrunk = reshard("1", false);
    assert!(shrunk.status.success(), "{}", text(&shrunk));
    assert!(
        text(&shrunk).contains("deleted merit.nft.2"),
        "{}",
        text(&shrunk)
    );
    assert_eq!(shard_counts(&t).await, [1, 1, 1]);

    // Every key now routes to the one queue left.
    let one = common::declared_transport(&vhost.url, 1).await;
    for i in 0..20 {
        one.publish(vec![Outgoing::from_envelope(&common::open_proposal(
            &format!("p-{i}"),
        ))])
        .await
        .expect("published");
    }
    let depths = one.queue_depths().await.expect("depths");
    let depth = depths
        .iter()
        .find(|(q, _)| q == "merit.proposal.0")
        .map(|(_, n)| *n);
    assert_eq!(depth, Some(20), "{depths:?}");
    drop((t, one));
    vhost.delete();
    db.cleanup().await;
}

const JWT: &str = "jwt-S3CRET-value-0123456789-abcdefghij";
const ADMIN: &str = "admin-S3CRET-token-42";
const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

#[test]
fn config_show_names_sources_and_never_prints_secrets() {
    let dir = tempfile::tempdir().expect("tmp");
    let key_file = dir.path().join("minter");
    std::fs::write(&key_file, format!("{KEY}\n")).expect("write key");
    let envs = [
        ("MERIT_JWT_SECRET", JWT),
        ("MERIT_ADMIN_TOKEN", ADMIN),
        (
            "MERIT_MINTER_KEY_FILE",
            key_file.to_str().expect("utf-8 path"),
        ),
        (
            "MERIT_DATABASE_URL",
            "postgres://merit:Pa55-S3CRET@db.internal:5432/merit",
        ),
        ("MERIT_AMQP_URL", "amqp://merit:Amqp-S3CRET@mq:5672/%2f"),
        ("MERIT_MAILBOX_SHARDS", "8"),
    ];
    for args in [&["config", "show"][..], &["config", "show", "--json"][..]] {
        let out = merit(args, &envs);
        let all = text(&out);
        assert!(out.status.success(), "{all}");
        for secret in [JWT, ADMIN, KEY, &KEY[2..], "Pa55-S3CRET", "Amqp-S3CRET"] {
            assert!(
                !all.contains(secret),
                "`merit {}` printed a secret:\n{all}",
                args.join(" ")
            );
        }
        assert!(
            all.contains("MERIT_MAILBOX_SHARDS"),
            "source of mailbox.shards is named:\n{all}"
        );
        assert!(
            all.contains("db.internal"),
            "non-secret parts of the DSN stay visible:\n{all}"
        );
    }
}

#[test]
fn a_bad_value_fails_naming_the_key_and_its_source() {
    let out = merit(
        &["config", "show"],
        &[("MERIT_HTTP_ADDR", "not-an-address")],
    );
    assert!(!out.status.success());
    let all = text(&out);
    assert!(
        all.contains("MERIT_HTTP_ADDR") && all.contains("not-an-address"),
        "{all}"
    );
}

#[test]
fn production_refuses_development_defaults() {
    let out = merit(
        &["config", "show"],
        &[
            ("MERIT_ENV", "production"),
            ("MERIT_DATABASE_URL", "postgres://merit@db/merit"),
        ],
    );
    assert!(
        !out.status.success(),
        "production started with development secrets"
    );
    let all = text(&out);
    assert!(
        all.contains("MERIT_ADMIN_TOKEN")
            || all.contains("MERIT_JWT_SECRET")
            || all.contains("MERIT_MINTER_KEY"),
        "{all}"
    );
}
