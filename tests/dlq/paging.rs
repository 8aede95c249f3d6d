//! Listings page through every dead letter exactly once, in order, while more arrive.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures::StreamExt;
use lapin::{
    options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
    Connection,
};
use serde_json::json;

use crate::{
    common::Backend,
    harness::{dead_letter, Admin, Dead, Harness},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn ten_thousand_dead_letters_page_through_exactly_once_in_order_while_more_arrive() {
    let h = Harness::start(Backend::Postgres, "dlq-paging.log").await;
    let (api, ch) = (&h.api, h.ch.clone());

    let first: Vec<Dead> = (0..10_000).map(Dead::malformed).collect();
    for chunk in first.chunks(1_000) {
        dead_letter(&ch, chunk).await;
    }
    api.until_total("/api/v1/dlq?page_size=1", 10_000, 120)
        .await;

    // 500 more arrive while the operator pages.
    let more: Vec<Dead> = (10_000..10_500).map(Dead::malformed).collect();
    let more_ids: HashSet<String> = more.iter().map(|d| d.id.clone()).collect();
    let arriving = tokio::spawn(async move {
        for chunk in more.chunks(100) {
            dead_letter(&ch, chunk).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let seen = page_through_the_waiting(api).await;
    arriving
        .await
        .expect("the late dead letters were published");

    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "every page in arrival order, none repeated"
    );
    let ids: HashSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), seen.len(), "no dead letter listed twice");
    let missing = first.iter().filter(|d| !ids.contains(&d.id)).count();
    assert_eq!(missing, 0, "every one of the first 10,000 listed");
    let strangers = ids
        .iter()
        .filter(|id| !more_ids.contains(**id) && !first.iter().any(|d| &d.id == **id))
        .count();
    assert_eq!(strangers, 0, "nothing listed that was not dead-lettered");
    // What arrived after the paging passed by is found by paging on from the last cursor.
    api.until_total("/api/v1/dlq?page_size=1", 10_500, 60).await;
    let last = seen.last().expect("seen").0;
    let (_, rest) = api
        .get(&format!("/api/v1/dlq?after={last}&page_size=500"))
        .await;
    let rest = rest["items"].as_array().expect("items").len();
    assert_eq!(seen.len() + rest, 10_500, "the late ones follow the cursor");
    check_listing_filters_and_the_bulk_path_s_methods(api).await;
    h.stop().await;
}

/// Pages of 500 by cursor until the last: each dead letter's `(seq, id)`, as listed.
async fn page_through_the_waiting(api: &Admin) -> Vec<(i64, String)> {
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let (status, page) = api
            .get(&format!("/api/v1/dlq?after={after}&page_size=500"))
            .await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().expect("items").clone();
        for item in &items {
            let seq = item["seq"].as_i64().expect("seq");
            assert!(seq > after, "a page starts after the cursor");
            assert_eq!(item["state"], "waiting");
            seen.push((seq, item["id"].as_str().expect("id").to_string()));
        }
        pages += 1;
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => return seen,
        }
        assert!(pages < 100, "paging ends");
    }
}

/// An empty filter (as a form sends it) is no filter; the bulk paths are POST only; a
/// filter on a class nobody has is empty, and a bad filter is a clear 400.
async fn check_listing_filters_and_the_bulk_path_s_methods(api: &Admin) {
    let (status, all) = api.get("/api/v1/dlq?class=&state=&page_size=1").await;
    assert_eq!((status, &all["total"]), (200, &json!(10_500)), "{all}");
    let answer = api
        .http
        .get(format!("{}/api/v1/dlq/replay", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("GET");
    assert_eq!(answer.status().as_u16(), 405, "GET on the bulk replay path");
    assert_eq!(
        answer.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST"),
        "the bulk path's own methods, not those of /dlq/{{id}}"
    );
    let (_, none) = api.get("/api/v1/dlq?class=handler_error").await;
    assert_eq!(none["total"], 0, "{none}");
    let (status, bad) = api.get("/api/v1/dlq?since=yesterday").await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("since"),
        "{bad}"
    );
}

/// A tap on merit.events: a consumer of every proposal creation published there.
pub(crate) async fn tap_proposal_creations(conn: &Connection) -> lapin::Consumer {
    let tap = conn.create_channel().await.expect("tap channel");
    let q = tap
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("tap queue");
    tap.queue_bind(
        q.name().clone(),
        "merit.events".into(),
        "governance.proposal.created".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind the tap");
    tap.basic_consume(
        q.name().clone(),
        "tap".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("consume the tap")
}

/// How often each message id passed the tap: until `n` have, then any stragglers.
pub(crate) async fn count_tapped(tapped: &mut lapin::Consumer, n: u32) -> HashMap<String, u32> {
    let id_of = |d: &lapin::message::Delivery| {
        d.properties
            .message_id()
            .as_ref()
            .expect("message id")
            .to_string()
    };
    let mut counts: HashMap<String, u32> = HashMap::new();
    while counts.values().sum::<u32>() < n {
        let d = tokio::time::timeout(Duration::from_secs(30), tapped.next())
            .await
            .expect("the replays reach merit.events")
            .expect("tap open")
            .expect("delivery");
        *counts.entry(id_of(&d)).or_default() += 1;
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(Some(Ok(d))) =
        tokio::time::timeout(Duration::from_millis(200), tapped.next()).await
    {
        *counts.entry(id_of(&d)).or_default() += 1;
    }
    counts
}
