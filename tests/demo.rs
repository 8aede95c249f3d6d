//! `merit demo` as a user runs it: on embedded defaults, it drives a community through a
//! node and its summary shows achievements minted, a compensated saga and trades.

use std::process::Command;

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

#[test]
fn the_demo_unlocks_mints_compensates_and_trades() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_merit"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MERIT_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args([
            "demo",
            "--users",
            "30",
            "--proposals",
            "6",
            "--failures",
            "2",
            "--trades",
            "4",
        ])
        .env("MERIT_ENV", "test")
        .env(
            "MERIT_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .output()
        .expect("run merit demo");
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
    assert!(stdout.contains("/dashboard"), "{stdout}");
}
