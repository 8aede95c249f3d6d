//! The users a dry run judges: activity facts, unlock ledgers and actor snapshots stored
//! as turns.

use chrono::{DateTime, Duration, TimeZone, Utc};
use merit_config::{
    rules::{evaluate, Activity, ActivityKind, RuleFacts, UnlockLedger},
    DynamicConfig,
};
use merit_messages::{ActorKind, EventId};
use merit_storage::{no_projection, StateWrite, Store, Turn};

use crate::harness::doc;

pub(crate) fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid time")
        + Duration::minutes(minutes)
}

pub(crate) fn facts(proposals: u32, votes: u32) -> RuleFacts {
    let mut facts = RuleFacts::default();
    let mut minute = 0;
    for _ in 0..proposals {
        minute += 1;
        facts.record(Activity {
            kind: ActivityKind::ProposalCreated,
            at: at(minute),
            proposal_seq: None,
            tiers_held: vec![],
        });
    }
    for seq in 0..votes {
        minute += 1;
        facts.record(Activity {
            kind: ActivityKind::VoteCast,
            at: at(minute),
            proposal_seq: Some(u64::from(seq)),
            tiers_held: vec![],
        });
    }
    facts
}

pub(crate) async fn store_user(
    store: &Store,
    n: u32,
    facts: &RuleFacts,
    ledger: &UnlockLedger,
) -> String {
    let key = format!("0x{n:040x}");
    let state = serde_json::json!({
        "proposals_created": 0,
        "votes_cast": 0,
        "facts": facts,
        "ledger": ledger,
    });
    store_actor(store, "user", ActorKind::User, &key, state).await;
    key
}

/// Stores `state` as the snapshot of the `kind` actor `key`, as `consumer`'s turn.
pub(crate) async fn store_actor(
    store: &Store,
    consumer: &str,
    kind: ActorKind,
    key: &str,
    state: serde_json::Value,
) {
    store
        .commit_turn(
            Turn {
                consumer: consumer.to_string(),
                event_id: EventId::new_random(),
                batched: Vec::new(),
                state: Some(StateWrite {
                    kind,
                    key: key.to_string(),
                    expected_version: 0,
                    state,
                }),
                outbox: vec![],
            },
            no_projection,
        )
        .await
        .unwrap_or_else(|e| panic!("store {kind} {key}: {e}"));
}

/// The users a dry run of `doc(3)` at `now` judges, by what it should find.
pub(crate) struct Population {
    /// Voters with 3+ votes who never unlocked `voter`, in address order.
    pub(crate) newly: Vec<String>,
    /// The one user who created a proposal.
    pub(crate) proposer: String,
}

/// Stores 13 users: 5 voters with 3+ votes who never unlocked `voter`; 2 with 3+ votes
/// who did; 4 with too few votes; 1 proposer; 1 snapshot without facts (an old user
/// state). And a proposal whose state has facts, which a dry run must not scan.
pub(crate) async fn store_population(store: &Store, now: DateTime<Utc>) -> Population {
    let proposed = DynamicConfig::parse(doc(3).as_bytes(), 0).expect("valid");
    let mut newly = Vec::new();
    let mut n = 0;
    for votes in [3, 4, 5, 10, 3] {
        n += 1;
        newly.push(store_user(store, n, &facts(0, votes), &UnlockLedger::default()).await);
    }
    for votes in [3, 8] {
        n += 1;
        let f = facts(0, votes);
        let mut ledger = UnlockLedger::default();
        let unlocked = evaluate(&proposed.rules, 1, &f, &mut ledger, now);
        assert_eq!(unlocked.len(), 1, "the ledger now holds `voter`");
        store_user(store, n, &f, &ledger).await;
    }
    for votes in [0, 1, 2, 2] {
        n += 1;
        store_user(store, n, &facts(0, votes), &UnlockLedger::default()).await;
    }
    n += 1;
    let proposer = store_user(store, n, &facts(1, 0), &UnlockLedger::default()).await;
    n += 1;
    let old = serde_json::json!({ "proposals_created": 0 });
    store_actor(store, "user", ActorKind::User, &format!("0x{n:040x}"), old).await;
    let proposal = serde_json::json!({ "facts": facts(0, 9) });
    store_actor(store, "proposal", ActorKind::Proposal, "p-1", proposal).await;
    Population { newly, proposer }
}
