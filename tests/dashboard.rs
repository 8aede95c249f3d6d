//! The supervisor dashboard in a real headless Chromium (Debian's `chromium`, driven by
//! playwright-core from `tests/browser`) against a running node: the page logs in with
//! the admin token, shows the node, replays a dead letter by clicking, and writes a
//! screenshot to `target/dashboard.png`. A wrong token is refused first.

mod common;

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use common::{Backend, NodeProcess, TestDb, Vhost};
use merit_mailbox::{Outgoing, Transport};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn the_dashboard_shows_the_node_and_replays_a_dead_letter_by_clicking() {
    common::init_crypto();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is installed: run `npm ci` in tests/browser (bash .ci/run does)"
    );
    let db = TestDb::empty(Backend::Sqlite).await;
    let vhost = Vhost::create();
    let (admin, _) = common::secrets();
    let log = common::fresh_log("dashboard.log");
    let env = common::serve_env(&db.url, Some(&vhost.url), "dashboard-node", &admin, &[]);
    let node = NodeProcess::spawn(&env, &log);
    let base = node.http_url(60);
    let id = a_listed_dead_letter(&vhost, &base, &admin).await;

    // Load while the browser watches: the charts must draw from it.
    let mut simulate = simulate_load(root, &vhost.url);
    let screenshot = root.join("target/dashboard.png");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking({
            let args = [base.clone(), admin.clone(), id.clone()];
            let screenshot = screenshot.clone();
            move || run_the_browser(root, &args, &screenshot)
        }),
    )
    .await
    .expect("the browser run finished within 120 s")
    .expect("join");
    let _ = simulate.kill();
    let _ = simulate.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dashboard run failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("one JSON line ({e}): {stdout}"));
    check_the_report(&report, &screenshot);
    // The replay really happened: the dead letter with that id is marked replayed.
    let body = common::get_json(&format!("{base}/api/v1/dlq/{id}"), &admin).await;
    assert_eq!(body["state"], "replayed", "{body}");
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(&admin),
        "the admin token is not in the node's log"
    );
    node.stop();
    vhost.delete();
    db.cleanup().await;
}

/// A dead letter to replay (an envelope that is not JSON), once the node lists it: its id.
async fn a_listed_dead_letter(vhost: &Vhost, base: &str, admin: &str) -> String {
    let http = reqwest::Client::new();
    let producer = common::producer(vhost, 2).await;
    let mut bad = Outgoing::new("governance.vote.cast", "dash-1", &b"{oops"[..]);
    bad.headers
        .insert("merit-proposal".to_string(), "p".to_string());
    producer.publish(vec![bad]).await.expect("publish");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body: Value = match http
            .get(format!("{base}/api/v1/dlq"))
            .bearer_auth(admin)
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        if let Some(found) = body["items"][0]["id"].as_str() {
            return found.to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead letter is listed within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `merit simulate` for a minute of votes on `amqp_url`, quietly.
fn simulate_load(root: &Path, amqp_url: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_merit"))
        .args(["simulate", "--amqp-url", amqp_url])
        .args([
            "--users",
            "50",
            "--proposals",
            "3",
            "--rate",
            "40",
            "--seconds",
            "60",
        ])
        .args(["--malformed-fraction", "0", "--duplicate-fraction", "0"])
        .env("MERIT_CONFIG_DIR", root.join("config"))
        .env("MERIT_ENV", "test")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start merit simulate")
}

/// The browser script against the node at `base` with `admin`, replaying dead letter `id`
/// (`[base, admin, id]`), writing `screenshot`.
fn run_the_browser(root: &Path, [base, admin, id]: &[String; 3], screenshot: &Path) -> Output {
    Command::new("node")
        .current_dir(root)
        .args([
            "tests/browser/dashboard.mjs",
            "--url",
            base,
            "--token",
            admin,
        ])
        .arg("--screenshot")
        .arg(screenshot)
        .args([
            "--expect-node",
            "dashboard-node",
            "--replay-id",
            id,
            "--check-refused",
            "--check-charts",
        ])
        .output()
        .expect("node runs (Node.js is installed by .ci/run)")
}

/// What the browser saw: the replay clicked, live charts, a followed correlation id, the
/// node listed, and a screenshot written.
fn check_the_report(report: &Value, screenshot: &Path) {
    assert_eq!(report["replayed"], true, "{report}");
    // The charts drew from live samples: events in above 0, and the line moved.
    let charts = &report["charts"];
    assert!(charts["before"]["peak"].as_f64() > Some(0.0), "{report}");
    assert_ne!(
        charts["before"]["line"], charts["after"]["line"],
        "{report}"
    );
    let turns = charts["drawn"]
        .as_array()
        .and_then(|d| d.iter().find(|c| c["id"] == "chart-turns"))
        .and_then(|c| c["lines"].as_u64());
    assert_eq!(turns, Some(3), "a turns line per actor kind: {report}");
    // A saga's correlation id links to that operation: the saga list narrows to it.
    let corr = &report["correlation"];
    assert!(
        corr["followed"].as_str().is_some_and(|c| !c.is_empty()),
        "{report}"
    );
    assert!(corr["after"].as_u64() >= Some(1), "{report}");
    assert!(
        report["nodes"].to_string().contains("dashboard-node"),
        "{report}"
    );
    assert!(
        std::fs::metadata(screenshot).is_ok_and(|m| m.len() > 10_000),
        "a screenshot was written to {}",
        screenshot.display()
    );
}
