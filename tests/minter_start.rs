//! `merit serve` and `merit config show` with each way of holding the minter key, as an
//! operator meets them at start: a wrong keystore password or an unreachable signer stops
//! the start with a clear error that shows no secret; production refuses a plaintext key
//! unless told otherwise, and warns when told. (Keystore and signer minting on chain:
//! `tests/chain_saga.rs` and `chain/tests/anvil.rs`.)

mod common;

use std::{path::PathBuf, process::Output, time::Duration};

use common::{free_port, output_text as text};

/// anvil's first dev key, encrypted with [`KEYSTORE_PASSWORD`] (scrypt, n = 8192).
fn keystore_fixture() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anvil-0-keystore.json"
    ))
}

const KEYSTORE_PASSWORD: &str = "merit-test-keystore-password";

/// Runs `merit args` with only `envs` as `MERIT_*` variables; killed after 60 s.
fn merit(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut child = common::merit_command(args, envs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run merit");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// A test node on a SQLite file of its own, in-process transport, a chain RPC URL (the
/// minter is built before the chain is reached, so nothing need listen there).
fn serve_envs(dir: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("MERIT_ENV".into(), "test".into()),
        (
            "MERIT_DATABASE_URL".into(),
            format!("sqlite://{}?mode=rwc", dir.join("merit.db").display()),
        ),
        ("MERIT_HTTP_ADDR".into(), "127.0.0.1:0".into()),
        (
            "MERIT_CHAIN_RPC_URL".into(),
            format!("http://127.0.0.1:{}", free_port()),
        ),
        (
            "MERIT_CHAIN_CONTRACT_ADDRESS".into(),
            "0x5fbdb2315678afecb367f032d93f642f64180aa3".into(),
        ),
        ("MERIT_NODE_ID".into(), "minter-start".into()),
    ]
}

fn as_refs(envs: &[(String, String)]) -> Vec<(&str, &str)> {
    envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// [`serve_envs`] with the minter in [`keystore_fixture`], its password file (in `dir`)
/// holding `password_file_text`.
fn keystore_serve_envs(dir: &std::path::Path, password_file_text: &str) -> Vec<(String, String)> {
    let password_file = dir.join("password");
    std::fs::write(&password_file, password_file_text).expect("write");
    let mut envs = serve_envs(dir);
    envs.push((
        "MERIT_MINTER_KEYSTORE".into(),
        keystore_fixture().display().to_string(),
    ));
    envs.push((
        "MERIT_MINTER_KEYSTORE_PASSWORD_FILE".into(),
        password_file.display().to_string(),
    ));
    envs
}

#[test]
fn a_wrong_keystore_password_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let wrong = "wrong-keystore-password-S3CRET";
    let envs = keystore_serve_envs(dir.path(), &format!("{wrong}\n"));
    let out = merit(&["serve"], &as_refs(&envs));
    let all = text(&out);
    assert!(
        !out.status.success(),
        "started with a wrong password: {all}"
    );
    assert!(all.contains("MERIT_MINTER_KEYSTORE"), "{all}");
    assert!(all.contains("wrong password"), "{all}");
    assert!(all.contains("anvil-0-keystore.json"), "{all}");
    assert!(!all.contains(wrong), "the password was printed: {all}");
    assert!(
        !all.contains("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
        "{all}"
    );
}

#[test]
fn the_right_keystore_password_gets_past_the_minter() {
    // Same as above with the right password: the start fails later, at the chain RPC
    // (nothing listens there), never at the minter.
    let dir = tempfile::tempdir().expect("tmp");
    let envs = keystore_serve_envs(dir.path(), KEYSTORE_PASSWORD);
    let out = merit(&["serve"], &as_refs(&envs));
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(!all.contains("MERIT_MINTER_KEYSTORE"), "{all}");
    assert!(all.contains("connect to the chain"), "{all}");
    assert!(!all.contains(KEYSTORE_PASSWORD), "{all}");
}

#[test]
fn an_unreachable_signer_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let signer = format!("http://op:S3CRET-pw@127.0.0.1:{}", free_port());
    let mut envs = serve_envs(dir.path());
    envs.push(("MERIT_MINTER_SIGNER_URL".into(), signer));
    envs.push((
        "MERIT_MINTER_ADDRESS".into(),
        "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266".into(),
    ));
    let out = merit(&["serve"], &as_refs(&envs));
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("MERIT_MINTER_SIGNER_URL"), "{all}");
    assert!(all.contains("external signer is unreachable"), "{all}");
    assert!(!all.contains("S3CRET"), "{all}");
}

#[test]
fn production_refuses_a_plaintext_minter_key_unless_allowed_and_then_warns() {
    let key = "0x1111111111111111111111111111111111111111111111111111111111111111";
    let base = [
        ("MERIT_ENV", "production"),
        ("MERIT_DATABASE_URL", "postgres://merit@db/merit"),
        ("MERIT_ADMIN_TOKEN", "admin-token-for-production-1234"),
        (
            "MERIT_JWT_SECRET",
            "jwt-secret-for-production-0123456789abcdef",
        ),
        ("MERIT_MINTER_KEY", key),
    ];
    let out = merit(&["config", "show"], &base);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("production refuses a plaintext minter key"),
        "{all}"
    );
    assert!(
        all.contains("MERIT_MINTER_ALLOW_PLAINTEXT_KEY=true"),
        "{all}"
    );
    assert!(!all.contains(&key[2..]), "{all}");

    let mut allowed = base.to_vec();
    allowed.push(("MERIT_MINTER_ALLOW_PLAINTEXT_KEY", "true"));
    let out = merit(&["config", "show"], &allowed);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("warning: production runs with a plaintext minter key"),
        "{all}"
    );
    assert!(!all.contains(&key[2..]), "{all}");
}
