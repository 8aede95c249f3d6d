//! One vote, one trace: with `MERIT_OTEL_ENDPOINT` set, a vote's spans reach an OTLP/HTTP
//! receiver (this test's) and share one trace id across the proposal's delivery and
//! turn, the outbox relay, and the voter's delivery and turn. A producer's `traceparent`
//! header makes them part of the producer's trace; an API request's `traceparent` does
//! the same for the HTTP request that published the vote.

mod common;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{Backend, NodeProcess, TestDb, Vhost};
use merit_mailbox::{Outgoing, RabbitTransport, Transport};
use merit_messages::VoteChoice;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value,
};
use prost::Message;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};

/// One exported span, as this test looks at it.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: BTreeMap<String, String>,
}

/// A minimal OTLP/HTTP receiver: accepts protobuf `POST`s on any path, answers 200, and
/// keeps every span.
async fn receiver() -> (String, Arc<Mutex<Vec<Span>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/v1/traces",
        listener.local_addr().expect("address")
    );
    let spans = Arc::new(Mutex::new(Vec::new()));
    let kept = spans.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut read = BufReader::new(read);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if read.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if let Ok(request) = ExportTraceServiceRequest::decode(body.as_slice()) {
                        kept.lock().expect("lock").extend(flatten(request));
                    }
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, spans)
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for span in scope.spans {
                let attributes = span
                    .attributes
                    .iter()
                    .map(|kv| {
                        let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(any_value::Value::StringValue(s)) => s.clone(),
                            Some(other) => format!("{other:?}"),
                            None => String::new(),
                        };
                        (kv.key.clone(), value)
                    })
                    .collect();
                out.push(Span {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    attributes,
                });
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans of `trace_id` once they include every name of `expected` (each with the
/// `kind` attribute given, if any), or a failure listing what arrived.
async fn trace_of(
    spans: &Arc<Mutex<Vec<Span>>>,
    trace_id: &str,
    expected: &[(&str, Option<&str>)],
) -> Vec<Span> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mine: Vec<Span> = spans
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect();
        let has = |(name, kind): &(&str, Option<&str>)| {
            mine.iter().any(|s| {
                s.name == *name
                    && kind.is_none_or(|k| s.attributes.get("kind").map(String::as_str) == Some(k))
            })
        };
        if expected.iter().all(has) {
            return mine;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "trace {trace_id} lacks {:?}; it has {:?}",
            expected.iter().filter(|e| !has(e)).collect::<Vec<_>>(),
            mine.iter()
                .map(|s| (&s.name, s.attributes.get("kind")))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The path of one vote through merit, in spans.
const VOTE_PATH: [(&str, Option<&str>); 5] = [
    ("merit.delivery", Some("proposal")),
    ("actor.turn", Some("proposal")),
    ("outbox.relay", None),
    ("merit.delivery", Some("user")),
    ("actor.turn", Some("user")),
];

/// What the checks of one traced node share: the spans received, the node's address and
/// JWT secret, and a producer.
struct Traced {
    spans: Arc<Mutex<Vec<Span>>>,
    base: String,
    jwt: String,
    producer: RabbitTransport,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn one_vote_is_one_trace_from_the_producer_or_the_api_through_both_turns_and_the_relay() {
    common::init_crypto();
    let (url, spans) = receiver().await;
    let (db, _store) = TestDb::migrated(Backend::Sqlite).await;
    let vhost = Vhost::create();
    let (admin, jwt) = common::secrets();
    let log = common::fresh_log("tracing.log");
    let extra = [
        ("MERIT_MAILBOX_SHARDS", "2"),
        ("MERIT_JWT_SECRET", jwt.as_str()),
        ("MERIT_OTEL_ENDPOINT", url.as_str()),
        // Export every 100 ms instead of every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let env = common::serve_env(&db.url, Some(&vhost.url), "traced-node", &admin, &extra);
    let node = NodeProcess::spawn(&env, &log);
    let base = node.http_url(60);
    common::wait_ready(&base, 60).await;
    let producer = common::producer(&vhost, 2).await;
    producer
        .publish(vec![Outgoing::from_envelope(&common::open_proposal(
            "traced",
        ))])
        .await
        .expect("proposal published");
    let ctx = Traced {
        spans,
        base,
        jwt,
        producer,
    };
    let trace_id = check_a_producer_s_traceparent_runs_through_both_turns_and_the_relay(&ctx).await;
    check_an_api_request_s_traceparent_runs_on_to_the_turns(&ctx).await;
    check_a_burst_in_batched_turns_continues_each_producer_s_trace(&ctx).await;
    check_untraced_traffic_never_joins_another_trace(&ctx, trace_id);
    node.stop();
    vhost.delete();
    db.cleanup().await;
}

/// A traced vote on the test's proposal by `voter`, as a child of span `parent` of `trace`.
fn traced_vote(voter: u32, choice: VoteChoice, trace: &str, parent: &str) -> Outgoing {
    let mut vote = Outgoing::from_envelope(&common::vote_cast(
        "test",
        "traced",
        common::wallet(voter),
        choice,
    ));
    vote.headers
        .insert("traceparent".to_string(), format!("00-{trace}-{parent}-01"));
    vote
}

/// 1. A producer that traces: its vote carries its own `traceparent`. Returns its trace id.
async fn check_a_producer_s_traceparent_runs_through_both_turns_and_the_relay(
    ctx: &Traced,
) -> &'static str {
    let (trace_id, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let vote = traced_vote(1, VoteChoice::For, trace_id, parent);
    ctx.producer
        .publish(vec![vote])
        .await
        .expect("vote published");
    let trace = trace_of(&ctx.spans, trace_id, &VOTE_PATH).await;
    let find = |name: &str, kind: Option<&str>| {
        trace
            .iter()
            .find(|s| s.name == name && kind.is_none_or(|k| s.attributes["kind"] == k))
            .unwrap_or_else(|| panic!("a {name} span of {kind:?}"))
    };
    let delivered = find("merit.delivery", Some("proposal"));
    assert_eq!(
        delivered.parent_span_id, parent,
        "the delivery is a child of the producer's span"
    );
    let proposal_turn = find("actor.turn", Some("proposal"));
    let relay = find("outbox.relay", None);
    assert_eq!(
        relay.parent_span_id, proposal_turn.span_id,
        "the relay's span is a child of the turn that wrote the row"
    );
    let user_delivery = find("merit.delivery", Some("user"));
    assert_eq!(
        user_delivery.parent_span_id, proposal_turn.span_id,
        "the derived event's delivery continues the proposal turn's trace"
    );
    assert_eq!(
        find("actor.turn", Some("user")).parent_span_id,
        user_delivery.span_id
    );
    trace_id
}

/// 2. A front-end that traces: the API request's `traceparent` runs on to the turns.
async fn check_an_api_request_s_traceparent_runs_on_to_the_turns(ctx: &Traced) {
    let api_trace = "0af7651916cd43dd8448eb211c80319c";
    let token = merit_api::sign(ctx.jwt.as_bytes(), &common::wallet(2).to_string(), 3600);
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/proposals/traced/votes", ctx.base))
        .bearer_auth(token)
        .header("traceparent", format!("00-{api_trace}-b7ad6b7169203331-01"))
        .json(&serde_json::json!({"choice": "against"}))
        .send()
        .await
        .expect("vote request");
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let mut api_path = vec![("http", None)];
    api_path.extend(VOTE_PATH);
    let trace = trace_of(&ctx.spans, api_trace, &api_path).await;
    let http = trace.iter().find(|s| s.name == "http").expect("http span");
    assert_eq!(http.parent_span_id, "b7ad6b7169203331");
}

/// 3. A burst of traced votes on the hot proposal: the actor batches them into few turns,
///    and each vote's derived event still continues its own producer's trace.
async fn check_a_burst_in_batched_turns_continues_each_producer_s_trace(ctx: &Traced) {
    let burst: Vec<(String, Outgoing)> = (0..50u32)
        .map(|i| {
            let trace = format!("{:032x}", 0x000b_0057_0000_u128 + u128::from(i));
            let parent = format!("{:016x}", 1 + u64::from(i));
            let vote = traced_vote(100 + i, VoteChoice::For, &trace, &parent);
            (trace, vote)
        })
        .collect();
    ctx.producer
        .publish(burst.iter().map(|(_, v)| v.clone()).collect())
        .await
        .expect("burst published");
    // A batched turn is a span of the first vote's trace (the others link to it), so a
    // later vote's trace holds its delivery, the relay of its derived event and the
    // voter's side.
    let batched_path = [
        ("merit.delivery", Some("proposal")),
        ("outbox.relay", None),
        ("merit.delivery", Some("user")),
        ("actor.turn", Some("user")),
    ];
    for (trace, _) in &burst {
        trace_of(&ctx.spans, trace, &batched_path).await;
    }
    let batched = ctx.spans.lock().expect("lock").iter().any(|s| {
        s.name == "actor.turn"
            && s.attributes["kind"] == "proposal"
            && burst.iter().any(|(t, _)| *t == s.trace_id)
            && s.attributes
                .get("events")
                .is_some_and(|n| n != "IntValue(1)")
    });
    assert!(batched, "the burst was applied in batched turns");
}

/// 4. Untraced traffic starts traces of its own and never joins another's.
fn check_untraced_traffic_never_joins_another_trace(ctx: &Traced, trace_id: &str) {
    let others: Vec<String> = ctx
        .spans
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| s.name == "actor.turn" && s.attributes["kind"] == "proposal")
        .map(|s| s.trace_id.clone())
        .collect();
    assert!(
        others.iter().filter(|t| *t == trace_id).count() == 1,
        "one proposal turn in the producer's trace: {others:?}"
    );
}
