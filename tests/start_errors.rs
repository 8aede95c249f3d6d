//! A start that cannot succeed fails at once with one line that says what to do, instead
//! of retrying as if the service were down: a missing RabbitMQ vhost, a broker user with
//! the wrong password or without permissions, a missing PostgreSQL database or role, and a
//! chain RPC on another chain than the configured one. (A broker without the
//! consistent-hash plugin cannot be made per test: its message is checked where the
//! broker's reply is classified, in `mailbox/src/error.rs`.)

mod common;

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use common::{anvil::Anvil, Vhost};
use uuid::Uuid;

/// Runs `merit serve` with `envs` on a fresh SQLite database (bounded by 120 s: a start
/// that retries for ever fails the test) and returns its output and how long it ran.
fn serve(envs: &[(&str, &str)]) -> (Output, Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}/merit.db?mode=rwc", dir.path().display());
    let mut cmd = Command::new("timeout");
    cmd.args(["120", env!("CARGO_BIN_EXE_merit"), "serve"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    common::without_merit_env(&mut cmd)
        .env("MERIT_ENV", "test")
        .env("MERIT_DATABASE_URL", db)
        .env("MERIT_HTTP_ADDR", "127.0.0.1:0")
        .env("MERIT_LOG_FILTER", "warn")
        .envs(envs.iter().copied());
    let started = Instant::now();
    let out = cmd.output().expect("run merit serve");
    (out, started.elapsed())
}

/// The start failed (not killed by the 120 s bound) and its last line names `fix`.
fn assert_fails_naming(out: &Output, took: Duration, fix: &str) {
    let stderr = common::strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "merit serve exits 1 (124 is the 120 s bound), after {took:?}:\n{stderr}"
    );
    let last = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(
        last.contains(fix),
        "the error line names {fix:?}:\n{stderr}"
    );
    eprintln!("failed after {took:?}: {last}");
}

#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn a_missing_vhost_names_the_command_that_creates_it() {
    let url = format!(
        "amqp://guest:guest@127.0.0.1:5672/merit-missing-{}",
        Uuid::new_v4().simple()
    );
    let (out, took) = serve(&[("MERIT_AMQP_URL", &url)]);
    assert_fails_naming(&out, took, "rabbitmqctl add_vhost");
}

#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn a_wrong_broker_password_names_the_credentials() {
    let vhost = Vhost::create();
    let url = format!(
        "amqp://guest:not-the-password@127.0.0.1:5672/{}",
        vhost.name
    );
    let (out, took) = serve(&[("MERIT_AMQP_URL", &url)]);
    assert_fails_naming(
        &out,
        took,
        "check the user name and password in MERIT_AMQP_URL",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    vhost.delete();
}

#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn a_broker_user_without_permissions_names_set_permissions() {
    let vhost = Vhost::create();
    // No permission at all on the vhost: the broker refuses to open it.
    let user = format!("noperm-{}", Uuid::new_v4().simple());
    common::rabbitmqctl(&["add_user", &user, "pw"]);
    let url = format!("amqp://{user}:pw@127.0.0.1:5672/{}", vhost.name);
    let (out, took) = serve(&[("MERIT_AMQP_URL", &url)]);
    assert_fails_naming(&out, took, "rabbitmqctl set_permissions -p VHOST USER");
    common::rabbitmqctl(&["delete_user", &user]);

    // A producer's permissions (write on merit.events only) are not enough to run merit.
    let (producer, producer_url) = vhost.producer_user();
    let (out, took) = serve(&[("MERIT_AMQP_URL", &producer_url)]);
    assert_fails_naming(&out, took, "needs configure, write and read permissions");
    vhost.delete_user(&producer);
    vhost.delete();
}

#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn a_missing_database_or_role_names_how_to_create_it() {
    let missing_db = format!(
        "postgres://postgres@127.0.0.1:5432/merit_missing_{}",
        Uuid::new_v4().simple()
    );
    let (out, took) = serve(&[("MERIT_DATABASE_URL", &missing_db)]);
    assert_fails_naming(&out, took, "createdb NAME");

    let missing_role = format!(
        "postgres://merit_nobody_{}@127.0.0.1:5432/postgres",
        Uuid::new_v4().simple()
    );
    let (out, took) = serve(&[("MERIT_DATABASE_URL", &missing_role)]);
    assert_fails_naming(&out, took, "CREATE ROLE NAME LOGIN");
}

#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn a_chain_rpc_on_another_chain_is_refused_before_anything_is_sent() {
    let anvil = Anvil::start(None);
    let rpc = anvil.url();
    // anvil's chain id is 31337; the node is configured for mainnet.
    let (out, took) = serve(&[("MERIT_CHAIN_RPC_URL", &rpc), ("MERIT_CHAIN_CHAIN_ID", "1")]);
    assert_fails_naming(
        &out,
        took,
        "has chain id 31337, but MERIT_CHAIN_CHAIN_ID is 1",
    );
}
