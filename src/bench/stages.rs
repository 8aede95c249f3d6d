//! The node's stages: end-to-end, latency (with the API served and listeners on the hub
//! and on `/ws`) and activation, each bounded by `--stage-timeout` and checked.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use merit_config::Settings;
use merit_mailbox::Topology;
use merit_messages::Address;
use merit_storage::Store;
use serde::Serialize;

use super::{
    broker, cpu, listen,
    node::{activation, serve_api, UnderTest},
    report::Figures,
    stage, verify, voter,
    votes::{run_votes, Run},
    BenchArgs,
};

/// Validity of the latency run's user tokens: the whole run.
const TOKEN_TTL_SECS: i64 = 24 * 3600;
/// The broker-only stage's figures.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Baseline {
    /// Votes (publish → relay → ack chains) per second.
    pub(super) votes_per_sec: f64,
    /// Messages published (and consumed) per second: two per vote.
    pub(super) msgs_per_sec: f64,
    /// CPU milliseconds per vote, by process.
    pub(super) cpu_per_vote: cpu::PerVote,
}

/// What the stages before the node's measured.
pub(super) struct Measured {
    pub(super) store: Store,
    pub(super) db_name: String,
    pub(super) db_url: String,
    pub(super) raw: f64,
    pub(super) baseline: Baseline,
}

/// Runs the node's stages (end-to-end, latency, activation) on the run's database, each
/// checked and bounded; removes the node's broker objects afterwards.
pub(super) async fn measure(
    settings: &Settings,
    args: &BenchArgs,
    run_id: &str,
    before: Measured,
) -> Result<Figures> {
    let amqp = settings
        .amqp_url
        .as_ref()
        .context("merit bench measures RabbitMQ: set MERIT_AMQP_URL")?;
    let limit = args.limit();
    let store = before.store.clone();
    stage("migrate", limit, async {
        anyhow::Ok(store.migrate().await?)
    })
    .await?;
    let topology = Topology {
        prefix: format!("bench-{run_id}."),
        shards: settings.mailbox.shards,
    };
    let node = stage(
        "node start",
        limit,
        UnderTest::start(settings, store, amqp.expose(), &topology),
    )
    .await?;
    // Votes each voter should have counted so far, by voter index, over both stages.
    let mut votes_cast = HashMap::new();
    let e2e = end_to_end(&node, args, &before.db_name, &mut votes_cast).await?;
    let (lat, api) = latency(settings, &node, args, &mut votes_cast).await?;
    let UnderTest {
        transport,
        load,
        node,
        ..
    } = node;
    stage("stop the node", limit, async {
        api.stop().await;
        node.shutdown(Duration::from_secs(10)).await;
        anyhow::Ok(())
    })
    .await?;
    drop(load);

    eprintln!("activation: every user actor of a fresh node from storage ...");
    let activated = stage(
        "activation",
        limit,
        activation(settings, &before.db_url, transport.clone()),
    )
    .await?;
    drop(transport);
    if let Err(e) = stage("remove the node's topology", limit, async {
        let conn = crate::serve::amqp_connection(amqp.expose()).await?;
        let removed = broker::remove_topology(&conn, &topology).await;
        let _ = conn.close(200, "bench done".into()).await;
        removed
    })
    .await
    {
        eprintln!("warning: {e:#}");
    }
    Ok(Figures::new(settings, args, before, &e2e, lat, activated))
}
/// The end-to-end stage's outcome.
pub(super) struct EndToEnd {
    pub(super) run: Run,
    /// CPU milliseconds per vote, by process, over the run.
    pub(super) cpu: cpu::PerVote,
    pub(super) counted: verify::Counted,
}

/// The end-to-end stage: `--events` votes through the node as fast as it takes them,
/// then checked.
async fn end_to_end(
    t: &UnderTest,
    args: &BenchArgs,
    db_name: &str,
    votes_cast: &mut HashMap<u32, u64>,
) -> Result<EndToEnd> {
    let limit = args.limit();
    eprintln!(
        "end-to-end: {} votes ({}) through merit on {db_name} ...",
        args.events,
        args.shape.name(),
    );
    let cpu_before = cpu::sample();
    let run = stage(
        "end-to-end",
        limit,
        run_votes(t, "e2e", args.events, None, args.shape),
    )
    .await?;
    let cpu = cpu::per_vote(&cpu_before, &cpu::sample(), args.events);
    let counted = stage(
        "end-to-end check",
        limit,
        verify::votes(
            &t.store,
            "e2e",
            args.shape,
            args.events,
            &run.sent.vote_ids,
            &run.sent.recorded_ids,
            votes_cast,
        ),
    )
    .await?;
    Ok(EndToEnd { run, cpu, counted })
}

/// The latency stage's outcome.
pub(super) struct Latency {
    pub(super) run: Run,
    /// Publish → the node's hub.
    pub(super) hub: listen::Heard,
    /// Publish → a WebSocket client on `/ws`.
    pub(super) websocket: listen::Heard,
    pub(super) counted: verify::Counted,
}

/// The latency stage: with the node's API served and a listener per voter on its hub and
/// on `/ws`, `--rate` votes per second for `--seconds`, then their notifications awaited
/// and the votes checked. Returns the API still serving: it stops with the node.
async fn latency(
    settings: &Settings,
    t: &UnderTest,
    args: &BenchArgs,
    votes_cast: &mut HashMap<u32, u64>,
) -> Result<(Latency, crate::serve::Api)> {
    let limit = args.limit();
    let total = args.rate * args.seconds;
    let (api, at_hub, websocket) = listeners(settings, t, args.shape.voters(total), limit).await?;
    eprintln!("latency: {} events/s for {} s ...", args.rate, args.seconds);
    let paced = Duration::from_secs(u64::from(args.seconds));
    let run = stage(
        "latency",
        limit + paced,
        run_votes(t, "lat", total, Some(args.rate), args.shape),
    )
    .await?;
    let (hub, websocket) = stage("notifications", listen::PATIENCE + limit, async {
        let deadline = Instant::now() + listen::PATIENCE;
        let votes_of = |v: u32| args.shape.votes_of(v, total) as usize;
        let at_hub = at_hub.finish(&run.sent.published, votes_of, deadline).await;
        let websocket = websocket
            .finish(&run.sent.published, votes_of, deadline)
            .await;
        anyhow::Ok((at_hub, websocket))
    })
    .await?;
    let counted = stage(
        "latency check",
        limit,
        verify::votes(
            &t.store,
            "lat",
            args.shape,
            total,
            &run.sent.vote_ids,
            &run.sent.recorded_ids,
            votes_cast,
        ),
    )
    .await?;
    let heard = Latency {
        run,
        hub,
        websocket,
        counted,
    };
    Ok((heard, api))
}

/// Serves the node's API and puts a listener per voter (of the first `voters`) in place,
/// on the hub and on `/ws`, before any vote is published.
async fn listeners(
    settings: &Settings,
    t: &UnderTest,
    voters: u32,
    limit: Duration,
) -> Result<(crate::serve::Api, listen::Listening, listen::Listening)> {
    let voters: Vec<Address> = (0..voters).map(voter).collect();
    let (api, credentials) = stage(
        "serve the API",
        limit,
        serve_api(settings, &t.store, t.transport.clone(), &t.node, &t.hub),
    )
    .await?;
    eprintln!(
        "latency: {} WebSocket clients on ws://{}/ws ...",
        voters.len(),
        api.address
    );
    let tokens = voters
        .iter()
        .map(|v| (*v, credentials.sign_user(v, TOKEN_TTL_SECS)))
        .collect();
    let websocket = stage(
        "WebSocket clients",
        limit,
        listen::websocket(api.address, tokens),
    )
    .await?;
    let at_hub = listen::hub(&t.hub, &voters);
    Ok((api, at_hub, websocket))
}
