//! WebSocket notifications across nodes: a client connected to one node hears of events
//! applied on another (the fan-out), hears only its own user's, and a client that
//! reconnects with the last `seq` it saw catches up on exactly what it missed.

mod common;

use std::time::Duration;

use common::NodeProcess;
use futures::{SinkExt, StreamExt};
use merit_mailbox::{Outgoing, RabbitTransport, Transport};
use merit_messages::{Address, Envelope, VoteChoice};
use serde_json::Value;
use tokio_tungstenite::{connect_async, tungstenite::Message, MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(base: &str, token: &str, after: Option<u64>) -> Socket {
    let ws = base.replacen("http://", "ws://", 1);
    let mut url = format!("{ws}/ws?token={token}");
    if let Some(after) = after {
        url.push_str(&format!("&after={after}"));
    }
    let (mut socket, _) = connect_async(url).await.expect("WebSocket connects");
    let hello = next_frame(&mut socket, 10).await.expect("hello");
    assert_eq!(hello["type"], "hello", "{hello}");
    socket
}

/// The next text frame as JSON, or `None` after `secs` without one.
async fn next_frame(socket: &mut Socket, secs: u64) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Err(_) => return None,
            Ok(None) => return None,
            Ok(Some(Ok(Message::Text(text)))) => {
                return Some(serde_json::from_str(&text).expect("JSON frame"))
            }
            Ok(Some(Ok(Message::Ping(p)))) => {
                let _ = socket.send(Message::Pong(p)).await;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!("WebSocket error: {e}"),
        }
    }
}

/// Notifications until one of `kind` arrives (all of them, in order).
async fn until_kind(socket: &mut Socket, kind: &str, secs: u64) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let frame = next_frame(socket, secs)
            .await
            .unwrap_or_else(|| panic!("no {kind} notification within {secs}s; got {seen:?}"));
        let done = frame["kind"] == kind;
        seen.push(frame);
        if done {
            return seen;
        }
    }
}

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().filter_map(|f| f["seq"].as_u64()).collect()
}

/// `voter`'s vote on the test's proposal.
fn vote(voter: Address, choice: VoteChoice) -> Envelope {
    common::vote_cast("ws-test", "ws-p1", voter, choice)
}

/// Every address mentioned in a notification's payload.
fn mentions(frame: &Value, who: &Address) -> bool {
    frame["payload"].to_string().contains(&who.to_string())
}

async fn last_seq(base: &str, admin: &str, user: &Address) -> u64 {
    let url = format!("{base}/api/v1/users/{user}/notifications?limit=1");
    common::get_json(&url, admin).await["last_seq"]
        .as_u64()
        .unwrap_or(0)
}

/// Two nodes on one database and vhost: A owns every shard, B serves the clients.
struct Pair {
    a: String,
    b: String,
    admin: String,
    jwt: String,
    producer: RabbitTransport,
}

impl Pair {
    async fn publish(&self, env: Envelope) {
        self.producer
            .publish(vec![Outgoing::from_envelope(&env)])
            .await
            .expect("publish");
    }

    fn token(&self, user: &Address) -> String {
        merit_api::sign(self.jwt.as_bytes(), &user.to_string(), 3600)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_client_on_another_node_hears_only_its_own_and_catches_up_after_reconnecting() {
    let (db, vhost) = common::served_pg_and_vhost().await;
    let (admin, jwt) = common::secrets();
    let log = common::fresh_log("notifications.log");
    let spawn = |id: &str| {
        let extra = [("MERIT_JWT_SECRET", jwt.as_str())];
        let env = common::serve_env(&db.url, Some(&vhost.url), id, &admin, &extra);
        NodeProcess::spawn(&env, &log)
    };
    // Node A starts first, so it owns every shard (single active consumer); B stands by
    // and serves the clients.
    let node_a = spawn("node-a");
    let a = node_a.http_url(60);
    common::wait_ready(&a, 60).await;
    let node_b = spawn("node-b");
    let b = node_b.http_url(60);
    common::wait_ready(&b, 60).await;
    let producer = common::producer(&vhost, 2).await;
    let pair = Pair {
        a,
        b,
        admin: admin.clone(),
        jwt: jwt.clone(),
        producer,
    };
    let (alice, bob) = (common::wallet(11), common::wallet(12));
    let mut alice_ws = connect(&pair.b, &pair.token(&alice), None).await;
    let bob_ws = connect(&pair.b, &pair.token(&bob), None).await;
    // An admin token does not subscribe: notifications are a user's own.
    let ws_b = pair.b.replacen("http", "ws", 1);
    let refused = connect_async(format!("{ws_b}/ws?token={admin}")).await;
    assert!(
        refused.is_err(),
        "the admin token opens no notification stream"
    );
    let heard = check_an_unlock_applied_on_a_is_heard_on_b(&pair, &mut alice_ws, alice).await;
    check_bob_hears_his_vote_and_nothing_of_alice_s(&pair, bob_ws, bob, alice).await;
    check_alice_catches_up_on_exactly_what_she_missed(&pair, (alice_ws, heard), alice, bob).await;

    node_b.stop();
    node_a.stop();
    vhost.delete();
    db.cleanup().await;
}

/// Alice's first proposal, published over AMQP, is applied on node A; her client on node
/// B hears the achievement it unlocks. Returns what she heard.
async fn check_an_unlock_applied_on_a_is_heard_on_b(
    pair: &Pair,
    alice_ws: &mut Socket,
    alice: Address,
) -> Vec<Value> {
    let mut created = common::open_proposal("ws-p1");
    if let merit_messages::Event::ProposalCreated(p) = &mut created.event {
        p.creator = alice;
    }
    pair.publish(Envelope::new("ws-test", created.event)).await;
    let heard = until_kind(alice_ws, "achievement.unlocked", 60).await;
    let unlocked = heard.last().expect("unlocked");
    assert_eq!(unlocked["payload"]["user"], alice.to_string());
    assert_eq!(unlocked["payload"]["rule"], "first-proposal");
    let status = common::get_json(&format!("{}/api/v1/admin/overview", pair.b), &pair.admin).await;
    let user_turns_on_b: u64 = status["status"]["registries"]
        .as_array()
        .expect("registries")
        .iter()
        .filter_map(|r| r["applied"].as_u64())
        .sum();
    assert_eq!(
        user_turns_on_b, 0,
        "node B applied nothing: the actor ran on A"
    );
    heard
}

/// Bob votes; he hears his vote recorded with its weight, and nothing of Alice's.
async fn check_bob_hears_his_vote_and_nothing_of_alice_s(
    pair: &Pair,
    mut bob_ws: Socket,
    bob: Address,
    alice: Address,
) {
    pair.publish(vote(bob, VoteChoice::For)).await;
    let bobs = until_kind(&mut bob_ws, "governance.vote.recorded", 60).await;
    assert_eq!(bobs.last().expect("vote")["payload"]["weight"], 1000);
    for frame in &bobs {
        assert!(
            !mentions(frame, &alice) || mentions(frame, &bob),
            "Bob hears only his own: {frame}"
        );
        assert!(mentions(frame, &bob), "{frame}");
    }
}

/// Alice disconnects; while she is away her own vote is recorded; she reconnects to node
/// A with the last seq she saw and receives exactly what she missed, in order.
async fn check_alice_catches_up_on_exactly_what_she_missed(
    pair: &Pair,
    (mut alice_ws, heard): (Socket, Vec<Value>),
    alice: Address,
    bob: Address,
) {
    let seen_up_to = *seqs(&heard).last().expect("a seq");
    alice_ws.close(None).await.expect("close");
    drop(alice_ws);
    pair.publish(vote(alice, VoteChoice::Against)).await;
    common::eventually(60, "alice's vote in her log", || {
        let url = format!(
            "{}/api/v1/users/{alice}/notifications?after={seen_up_to}",
            pair.b
        );
        async move {
            let body = common::get_json(&url, &pair.admin).await;
            body["items"]
                .as_array()
                .is_some_and(|i| i.iter().any(|n| n["kind"] == "governance.vote.recorded"))
        }
    })
    .await;
    let target = last_seq(&pair.a, &pair.admin, &alice).await;
    assert!(target > seen_up_to);
    let mut again = connect(&pair.a, &pair.token(&alice), Some(seen_up_to)).await;
    let mut missed = Vec::new();
    while seqs(&missed).last().copied().unwrap_or(seen_up_to) < target {
        let frame = next_frame(&mut again, 30)
            .await
            .unwrap_or_else(|| panic!("caught up to {:?} of {target}", seqs(&missed)));
        missed.push(frame);
    }
    assert_eq!(
        seqs(&missed),
        ((seen_up_to + 1)..=target).collect::<Vec<_>>(),
        "every missed notification once, in order"
    );
    assert!(missed
        .iter()
        .any(|f| f["kind"] == "governance.vote.recorded"));
    assert!(missed
        .iter()
        .all(|f| !mentions(f, &bob) || mentions(f, &alice)));
}
