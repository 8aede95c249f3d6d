//! WebSocket sessions: a client that never reads is dropped while the node stays healthy;
//! one session over the per-user cap is refused with 429.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    common::{self, answer},
    harness::Node,
};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws(base: &str, token: &str, after: Option<u64>) -> Socket {
    let ws = base.replacen("http://", "ws://", 1);
    let mut url = format!("{ws}/ws?token={token}");
    if let Some(after) = after {
        url.push_str(&format!("&after={after}"));
    }
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket connects");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_client_that_never_reads_is_dropped_and_the_node_stays_healthy() {
    let node = Node::start(
        "trust-ws-slow",
        &[("MERIT_HTTP_WS_SEND_TIMEOUT_MS", "1000")],
    )
    .await;
    let wallet = common::wallet(31);
    let user = wallet.to_string();
    // A log of 8,000 notifications of 8 KiB each: 64 MiB, more than socket buffers hold
    // (loopback receive buffers may grow to 32 MiB here).
    let store = node.db.as_ref().expect("db").connect().await;
    use merit_storage::sea_orm::ConnectionTrait;
    store
        .db()
        .execute_unprepared(&format!(
            "INSERT INTO notifications (\"user\", seq, event_id, kind, payload, created_at) \
             SELECT '{user}', g, 'filler-' || g, 'test.filler', \
             ('{{\"pad\":\"' || repeat('x', 8192) || '\"}}')::jsonb, now() \
             FROM generate_series(1, 8000) g"
        ))
        .await
        .expect("fill the log");
    store.close().await.expect("close");
    let token = node.user(&wallet);
    let metrics = format!("{}/metrics", node.base);
    // Catch up from the start and never read a frame.
    let stuck = ws(&node.base, &token, Some(0)).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut sessions;
    loop {
        sessions = node.metric(&metrics, "merit_ws_sessions").await;
        if sessions == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session of a client that never reads is still open after 40 s ({sessions:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The node is fine: ready, and a reading client of the same user gets its hello.
    let (status, body) = answer(node.http.get(format!("{}/ready", node.base))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut fresh = ws(&node.base, &token, None).await;
    let hello = tokio::time::timeout(Duration::from_secs(10), fresh.next())
        .await
        .expect("hello in time")
        .expect("a frame")
        .expect("not an error");
    assert!(hello.to_string().contains("\"hello\""), "{hello}");
    drop(stuck);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn one_session_over_the_per_user_cap_is_refused_with_429() {
    let node = Node::start("trust-ws-cap", &[]).await;
    let token = node.user(&common::wallet(32));
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(ws(&node.base, &token, None).await);
    }
    let over = tokio_tungstenite::connect_async(format!(
        "{}/ws?token={token}",
        node.base.replacen("http://", "ws://", 1)
    ))
    .await;
    match over {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("JSON error body");
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("sessions"),
                "{body}"
            );
        }
        Ok((_, response)) => panic!(
            "the ninth session of one user was not refused: {}",
            response.status()
        ),
        Err(e) => panic!("the ninth session failed otherwise: {e}"),
    }
    // Another user is not affected, and closing one session frees a place.
    let _other = ws(&node.base, &node.user(&common::wallet(33)), None).await;
    let mut first = open.remove(0);
    first.close(None).await.expect("close");
    drop(first);
    common::eventually(10, "a freed place is taken", || {
        let (base, token) = (node.base.clone(), token.clone());
        async move {
            tokio_tungstenite::connect_async(format!(
                "{}/ws?token={token}",
                base.replacen("http://", "ws://", 1)
            ))
            .await
            .is_ok()
        }
    })
    .await;
    node.stop().await;
}
