//! A `/ready` flood runs at most one probe a second; `/metrics` can move to a listener of
//! its own.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::{
    common::{self, answer},
    harness::Node,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_ready_flood_probes_at_most_once_a_second_and_metrics_can_live_elsewhere() {
    let metrics_addr = format!("127.0.0.1:{}", common::free_port());
    let node = Node::start(
        "trust-ready",
        &[("MERIT_METRICS_ADDR", metrics_addr.as_str())],
    )
    .await;
    let metrics_url = format!("http://{metrics_addr}/metrics");
    let before = node
        .metric(&metrics_url, "merit_ready_probes_total")
        .await
        .expect("merit_ready_probes_total on the metrics listener");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url) = (node.http.clone(), format!("{}/ready", node.base));
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..50 {
                if http
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK)
                {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.expect("task");
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(ok, 400, "every /ready of the flood answered 200");
    // Let the metrics snapshot (itself cached for a second) catch up.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = node
        .metric(&metrics_url, "merit_ready_probes_total")
        .await
        .expect("counter");
    let probes = after - before;
    assert!(
        probes <= elapsed.ceil() + 2.0,
        "400 /ready calls in {elapsed:.1}s ran {probes} probes: at most one a second expected"
    );
    // The public listener no longer serves /metrics once a metrics listener is set.
    let (status, body) = answer(node.http.get(format!("{}/metrics", node.base))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    node.stop().await;
}
