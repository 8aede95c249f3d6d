//! 2. One NFT, one boost per proposal.

use std::collections::BTreeMap;

use chrono::Utc;
use merit_messages::{ActorKind, Envelope, Tally, VoteChoice};
use merit_storage::Store;

use crate::{
    common::{eventually, run_in_system},
    events::{addr, created, id, mint, transfer, vote, vote_at},
    harness::{settles, Community},
    reading::{
        held, read_benefits, read_proposals, read_users, read_votes, status_of, tally, BenefitRow,
        VoteRow,
    },
};

async fn vote_row(store: &Store, proposal_id: &str, voter: u32) -> Option<VoteRow> {
    read_votes(store)
        .await
        .remove(&(proposal_id.to_string(), addr(voter)))
}

async fn tally_of(store: &Store, proposal_id: &str) -> Option<Tally> {
    read_proposals(store)
        .await
        .remove(proposal_id)
        .map(|(_, t)| t)
}

fn open_proposal(proposal_id: &str) -> Envelope {
    let now = Utc::now();
    created(
        &format!("create:{proposal_id}"),
        proposal_id,
        99,
        now - chrono::Duration::minutes(1),
        now + chrono::Duration::days(7),
        1,
        5_000,
    )
}

/// The voters of the revote test: A first holds the gold, B receives it.
const A: u32 = 1;
const B: u32 = 2;

/// The benefits while `owner` (A or B) holds gold #42 and the other holds nothing.
fn gold_held_by(owner: u32) -> BTreeMap<String, BenefitRow> {
    let mut rows = BTreeMap::new();
    rows.insert(addr(owner), (15_000, held(&[("42", "gold")]), 0));
    rows.insert(addr(A + B - owner), (10_000, vec![], 0));
    rows
}

/// The boost gold #42 gives.
fn gold42() -> Vec<(String, String, u64)> {
    vec![("42".to_string(), "gold".to_string(), 5_000)]
}

/// The `votes` row expected for the event labelled `label`.
fn vote_row_for(
    choice: &str,
    weight: i64,
    boosts: Vec<(String, String, u64)>,
    label: &str,
) -> Option<VoteRow> {
    Some(VoteRow {
        choice: choice.to_string(),
        weight,
        boosts,
        event_id: id(label).to_string(),
    })
}

/// The revote test's name for `user` (A or B).
fn who(user: u32) -> &'static str {
    if user == A {
        "A"
    } else {
        "B"
    }
}

/// `voter` votes for `proposal`, and its `votes` row settles to `expected`.
async fn votes_for(c: &Community, proposal: &str, voter: u32, expected: Option<VoteRow>) {
    c.publish(&[vote(proposal, voter, VoteChoice::For)], 1)
        .await;
    settles(
        60,
        &format!("{}'s vote on {proposal}", who(voter)),
        || vote_row(&c.store, proposal, voter),
        &expected,
    )
    .await;
}

/// Gold #42 moves from `from` to `to` at block `block`, and the benefits settle.
async fn gold_moves(c: &Community, (from, to): (u32, u32), block: u64, what: &str) {
    c.publish(&[transfer(42, from, to, block, 0)], 1).await;
    settles(60, what, || read_benefits(&c.store), &gold_held_by(to)).await;
}

/// A holds the gold and votes on P: x1.5.
async fn check_a_votes_on_p_with_the_gold(c: &Community) {
    let store = &c.store;
    c.publish(&[mint(42, A, Some("gold"), 1, 0)], 1).await;
    let only_a: BTreeMap<_, _> = [(addr(A), (15_000, held(&[("42", "gold")]), 0))]
        .into_iter()
        .collect();
    settles(60, "A holds the gold", || read_benefits(store), &only_a).await;
    votes_for(c, "P", A, vote_row_for("for", 1_500, gold42(), "vote:P:u1")).await;
}

/// The gold moves to B, who votes on P too: the gold already boosted a vote on P. On Q
/// the gold has boosted nobody yet: B's vote there is x1.5.
async fn check_the_gold_boosts_b_only_where_it_boosted_nobody(c: &Community) {
    gold_moves(c, (A, B), 2, "B holds the gold").await;
    votes_for(c, "P", B, vote_row_for("for", 1_000, vec![], "vote:P:u2")).await;
    assert_eq!(
        tally_of(&c.store, "P").await,
        Some(tally(2_500, 0, 0, 2)),
        "P counts the gold once"
    );
    votes_for(c, "Q", B, vote_row_for("for", 1_500, gold42(), "vote:Q:u2")).await;
}

/// Lent back to A: A's second vote on P is refused (the first vote is final), and A's vote
/// on Q gets no boost (the gold boosted B's vote on Q).
async fn check_the_gold_lent_back_gains_a_nothing(c: &Community) {
    let store = &c.store;
    gold_moves(c, (B, A), 3, "A holds the gold again").await;
    c.publish(
        &[
            vote_at("P", A, VoteChoice::Against, ":again", Utc::now()),
            vote("Q", A, VoteChoice::For),
        ],
        1,
    )
    .await;
    settles(
        60,
        "A's second vote on P is refused",
        || async move {
            store
                .load_actor(ActorKind::Proposal, "P")
                .await
                .expect("load P")
                .map(|(_, s)| s["refused_votes"].as_u64())
        },
        &Some(Some(1)),
    )
    .await;
    settles(
        60,
        "A's vote on Q",
        || vote_row(store, "Q", A),
        &vote_row_for("for", 1_000, vec![], "vote:Q:u1"),
    )
    .await;
    assert_eq!(
        vote_row(store, "P", A).await,
        vote_row_for("for", 1_500, gold42(), "vote:P:u1"),
        "A's first vote on P stands"
    );
}

/// Each proposal counts two votes of 2500 in all, and each voter two votes.
async fn check_the_tallies_count_the_gold_once_per_proposal(c: &Community) {
    let store = &c.store;
    assert_eq!(tally_of(store, "P").await, Some(tally(2_500, 0, 0, 2)));
    assert_eq!(tally_of(store, "Q").await, Some(tally(2_500, 0, 0, 2)));
    settles(
        60,
        "each voter's counted votes",
        || async move {
            let users = read_users(store).await;
            [A, B].map(|u| users.get(&addr(u)).map(|r| r.votes))
        },
        &[Some(2), Some(2)],
    )
    .await;
}

#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn transfer_and_revote_gains_no_extra_weight() {
    run_in_system(async {
        let c = Community::start("revote").await;
        let store = &c.store;
        c.publish(&[open_proposal("P"), open_proposal("Q")], 1)
            .await;
        eventually(60, "P and Q are created", move || async move {
            status_of(store, "P").await.is_some() && status_of(store, "Q").await.is_some()
        })
        .await;
        check_a_votes_on_p_with_the_gold(&c).await;
        check_the_gold_boosts_b_only_where_it_boosted_nobody(&c).await;
        check_the_gold_lent_back_gains_a_nothing(&c).await;
        check_the_tallies_count_the_gold_once_per_proposal(&c).await;
        c.stop().await;
    });
}
