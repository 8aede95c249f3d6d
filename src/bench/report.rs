//! The run's figures: as JSON, and as the table printed at the end.

use serde::Serialize;

use merit_config::Settings;

use super::{
    cpu, listen, percentile,
    stages::{EndToEnd, Latency, Measured},
    verify, BenchArgs, Shape,
};

#[derive(Debug, Serialize)]
pub(super) struct Figures {
    pub(super) database: String,
    pub(super) shards: u16,
    pub(super) prefetch: u16,
    pub(super) shape: Shape,
    /// The clock tick the CPU figures were read with (`getconf CLK_TCK`; 100 if unreadable).
    pub(super) clock_ticks_per_sec: f64,
    pub(super) raw_messages: u32,
    pub(super) raw_msgs_per_sec: f64,
    /// The broker-only stage: a vote's messages on merit's topology, without merit.
    pub(super) baseline_votes: u32,
    pub(super) baseline_votes_per_sec: f64,
    pub(super) baseline_msgs_per_sec: f64,
    pub(super) baseline_cpu_ms_per_vote: cpu::PerVote,
    pub(super) e2e_events: u32,
    pub(super) e2e_events_per_sec: f64,
    pub(super) e2e_deliveries_per_sec: f64,
    pub(super) e2e_cpu_ms_per_vote: cpu::PerVote,
    /// End-to-end votes/s ÷ broker-only votes/s.
    pub(super) ratio_events_to_baseline: f64,
    /// End-to-end votes/s ÷ raw loop messages/s (the earlier yardstick).
    pub(super) ratio_events_to_raw: f64,
    pub(super) e2e_checked: verify::Counted,
    pub(super) latency_offered_per_sec: u32,
    pub(super) latency_events: usize,
    pub(super) latency_p50_ms: f64,
    pub(super) latency_p99_ms: f64,
    pub(super) latency_p999_ms: f64,
    pub(super) latency_checked: verify::Counted,
    /// Publish → the node's hub.
    pub(super) hub: listen::Heard,
    /// Publish → a WebSocket client on `/ws`.
    pub(super) websocket: listen::Heard,
    pub(super) activated: usize,
    pub(super) activations_per_sec: f64,
    pub(super) rss_per_actor_bytes: f64,
}
impl Figures {
    /// The run's figures from its stages' outcomes.
    pub(super) fn new(
        settings: &Settings,
        args: &BenchArgs,
        before: Measured,
        e2e: &EndToEnd,
        lat: Latency,
        (activated, activations_per_sec, rss_per_actor_bytes): (usize, f64, f64),
    ) -> Self {
        let e2e_per_sec = f64::from(args.events) / e2e.run.secs;
        let latencies = &lat.run.latencies;
        Self {
            database: before.db_name,
            shards: settings.mailbox.shards,
            prefetch: settings.mailbox.prefetch,
            shape: args.shape,
            clock_ticks_per_sec: cpu::clock_ticks(),
            raw_messages: args.events,
            raw_msgs_per_sec: before.raw,
            baseline_votes: args.events,
            baseline_votes_per_sec: before.baseline.votes_per_sec,
            baseline_msgs_per_sec: before.baseline.msgs_per_sec,
            baseline_cpu_ms_per_vote: before.baseline.cpu_per_vote,
            e2e_events: args.events,
            e2e_events_per_sec: e2e_per_sec,
            e2e_deliveries_per_sec: 2.0 * e2e_per_sec,
            e2e_cpu_ms_per_vote: e2e.cpu,
            ratio_events_to_baseline: e2e_per_sec / before.baseline.votes_per_sec,
            ratio_events_to_raw: e2e_per_sec / before.raw,
            e2e_checked: e2e.counted,
            latency_offered_per_sec: args.rate,
            latency_events: latencies.len(),
            latency_p50_ms: percentile(latencies, 0.50),
            latency_p99_ms: percentile(latencies, 0.99),
            latency_p999_ms: percentile(latencies, 0.999),
            latency_checked: lat.counted,
            hub: lat.hub,
            websocket: lat.websocket,
            activated,
            activations_per_sec,
            rss_per_actor_bytes,
        }
    }
}
pub(super) fn print_table(f: &Figures) {
    println!("| measure | value |");
    println!("|---|---|");
    println!("| database | {} |", f.database);
    println!("| shards × prefetch | {} × {} |", f.shards, f.prefetch);
    let shape = match f.shape {
        Shape::Spread => "spread (consecutive votes on different actors)",
        Shape::PerVoter => "per-voter (each voter's 50 votes back to back)",
        Shape::HotProposal => "hot-proposal (every vote on one proposal, distinct voters)",
    };
    println!("| load shape | {shape} |");
    println!(
        "| raw RabbitMQ publish-confirm + consume-ack, one quorum queue | {:.0} msg/s |",
        f.raw_msgs_per_sec
    );
    println!(
        "| broker only, merit's topology: vote → proposal shard → vote.recorded → user shard, confirms + acks | {:.0} votes/s ({:.0} msg/s) |",
        f.baseline_votes_per_sec, f.baseline_msgs_per_sec
    );
    println!("| merit end-to-end (publish → actors → commit → ack) | {:.0} votes/s ({:.0} deliveries/s) |", f.e2e_events_per_sec, f.e2e_deliveries_per_sec);
    println!(
        "| ratio end-to-end votes / broker-only votes | {:.2} |",
        f.ratio_events_to_baseline
    );
    println!(
        "| ratio end-to-end votes / raw messages | {:.2} |",
        f.ratio_events_to_raw
    );
    print_cpu("broker only", &f.baseline_cpu_ms_per_vote);
    print_cpu("end-to-end", &f.e2e_cpu_ms_per_vote);
    println!(
        "| every vote counted once (rows, tallies, inboxes, votes_cast) | end-to-end {} of {}, latency {} of {} |",
        f.e2e_checked.vote_rows, f.e2e_checked.sent, f.latency_checked.vote_rows, f.latency_checked.sent
    );
    println!(
        "| publish → commit at {} events/s | p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms ({} events) |",
        f.latency_offered_per_sec, f.latency_p50_ms, f.latency_p99_ms, f.latency_p999_ms, f.latency_events
    );
    print_heard(
        "publish → hub",
        f.latency_offered_per_sec,
        &f.hub,
        "subscribers",
    );
    print_heard(
        "publish → WebSocket client",
        f.latency_offered_per_sec,
        &f.websocket,
        "clients",
    );
    println!(
        "| actor activation from storage (+ one inbox commit) | {:.0} actors/s ({} actors) |",
        f.activations_per_sec, f.activated
    );
    println!(
        "| resident memory per actor | {:.1} KiB |",
        f.rss_per_actor_bytes / 1024.0
    );
}

/// A row of CPU time per vote.
fn print_cpu(stage: &str, c: &cpu::PerVote) {
    println!(
        "| CPU per vote, {stage} | {:.3} ms: merit {:.3}, RabbitMQ {:.3}, PostgreSQL {:.3} |",
        c.total_ms(),
        c.merit_ms,
        c.rabbitmq_ms,
        c.postgres_ms
    );
}

/// A row of notification latency, with what was due against what arrived.
fn print_heard(path: &str, rate: u32, h: &listen::Heard, listeners: &str) {
    let ended = if h.ended.is_empty() {
        String::new()
    } else {
        let why: Vec<String> = h.ended.iter().map(|(w, n)| format!("{n}× {w}")).collect();
        format!("; ended early: {}", why.join(", "))
    };
    println!(
        "| {path} at {rate} events/s | p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms ({} of {} notifications, {} missing, {} duplicate; {} {listeners}, {} short{ended}) |",
        h.p50_ms,
        h.p99_ms,
        h.p999_ms,
        h.received,
        h.expected,
        h.expected - h.received,
        h.duplicates,
        h.listeners,
        h.short,
    );
}
