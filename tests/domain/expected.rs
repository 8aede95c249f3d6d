//! The scripted community's end state, computed by hand.

use std::collections::{BTreeMap, BTreeSet};

use merit_messages::Tally;

use crate::{
    events::{addr, id},
    reading::{tally, unlocked, AchievementRow, EndState, NftRow, UserRow, VoteRow},
    script::{badge_token, benefits_after_gold_moves, refused_votes},
};

/// The end state of the script, computed by hand.
pub(crate) fn expected_end_state() -> EndState {
    EndState {
        achievements: expected_achievements(),
        proposals: expected_proposals(),
        refused: refused_votes(),
        votes: expected_votes(),
        benefits: benefits_after_gold_moves(),
        users: expected_users(),
        nfts: expected_nfts(),
    }
}

/// The boosts on `voter`'s vote on `proposal`.
///
/// Weights (1000 = a plain vote): u6 holds gold #1 until after the first round (x1.5 →
/// 1500); u8 holds 4 golds + 2 silvers + a bronze: the four golds add 4 × 5000 bps and
/// reach the x3 cap → 3000, so only they boost (a token that adds nothing is not used); u9 a silver (x1.25 → 1250); u11 a bronze (x1.1 → 1100);
/// u7 and u10 nothing (1000) — until u7 receives gold #1, which boosts only on p10, the
/// one proposal where it boosted nobody yet.
fn expected_boosts(voter: u32, proposal: &str) -> Vec<(String, String, u64)> {
    let boosts = |tokens: &[(&str, &str, u64)]| {
        tokens
            .iter()
            .map(|(t, tier, b)| (t.to_string(), tier.to_string(), *b))
            .collect()
    };
    let gold1 = [("1", "gold", 5_000)];
    match voter {
        6 => boosts(&gold1),
        7 if proposal == "p10" => boosts(&gold1),
        8 => boosts(&[
            ("11", "gold", 5_000),
            ("12", "gold", 5_000),
            ("13", "gold", 5_000),
            ("5", "gold", 5_000),
        ]),
        9 => boosts(&[("2", "silver", 2_500)]),
        11 => boosts(&[("3", "bronze", 1_000)]),
        _ => vec![],
    }
}

/// (proposal, voter, choice, weight) of every counted vote.
const COUNTED: [(&str, u32, &str, i64); 36] = [
    ("p1", 6, "for", 1_500),
    ("p1", 8, "for", 3_000),
    ("p1", 11, "against", 1_100),
    ("p1", 9, "abstain", 1_250),
    ("p1", 10, "against", 1_000),
    ("p1", 7, "for", 1_000),
    ("p2", 6, "for", 1_500),
    ("p2", 11, "for", 1_100),
    ("p2", 7, "against", 1_000),
    ("p3", 6, "for", 1_500),
    ("p3", 11, "abstain", 1_100),
    ("p3", 8, "against", 3_000),
    ("p3", 9, "for", 1_250),
    ("p3", 10, "for", 1_000),
    ("p4", 6, "for", 1_500),
    ("p4", 8, "against", 3_000),
    ("p4", 11, "for", 1_100),
    ("p5", 6, "for", 1_500),
    ("p5", 11, "for", 1_100),
    ("p6", 6, "for", 1_500),
    ("p6", 11, "against", 1_100),
    ("p6", 7, "for", 1_000),
    ("p7", 6, "for", 1_500),
    ("p7", 11, "for", 1_100),
    ("p7", 8, "for", 3_000),
    ("p7", 9, "against", 1_250),
    ("p7", 7, "against", 1_000),
    ("p8", 6, "against", 1_500),
    ("p8", 11, "for", 1_100),
    ("p9", 6, "for", 1_500),
    ("p9", 11, "for", 1_100),
    ("p9", 10, "abstain", 1_000),
    ("p10", 11, "for", 1_100),
    ("p10", 7, "for", 1_500),
    ("p10", 8, "abstain", 3_000),
    ("p10", 10, "against", 1_000),
];

fn expected_votes() -> BTreeMap<(String, String), VoteRow> {
    COUNTED
        .iter()
        .map(|&(p, voter, choice, weight)| {
            (
                (p.to_string(), addr(voter)),
                VoteRow {
                    choice: choice.to_string(),
                    weight,
                    boosts: expected_boosts(voter, p),
                    event_id: id(&format!("vote:{p}:u{voter}")).to_string(),
                },
            )
        })
        .collect()
}

fn expected_proposals() -> BTreeMap<String, (String, Tally)> {
    [
        // for 1500+3000+1000, against 1100+1000, abstain 1250: 72% for, quorum 3000 met.
        ("p1", "executed", tally(5_500, 2_100, 1_250, 6)),
        ("p2", "succeeded", tally(2_600, 1_000, 0, 3)),
        // 3750 for vs 3000 against: 55.6% ≥ 50%.
        ("p3", "succeeded", tally(3_750, 3_000, 1_100, 5)),
        // 2600 for vs 3000 against.
        ("p4", "defeated", tally(2_600, 3_000, 0, 3)),
        // All for, but 2600 < quorum 100000.
        ("p5", "defeated", tally(2_600, 0, 0, 2)),
        // The tally when it was cancelled; the vote after it refused.
        ("p6", "cancelled", tally(2_500, 1_100, 0, 3)),
        ("p7", "active", tally(5_600, 2_250, 0, 5)),
        ("p8", "active", tally(1_100, 1_500, 0, 2)),
        ("p9", "active", tally(2_600, 0, 1_000, 3)),
        ("p10", "active", tally(2_600, 1_000, 3_000, 4)),
    ]
    .into_iter()
    .map(|(p, status, t)| (p.to_string(), (status.to_string(), t)))
    .collect()
}

fn expected_achievements() -> BTreeSet<AchievementRow> {
    [
        unlocked(0, "first-proposal", "bronze", 0),
        // p1, p2 and p3 succeeded.
        unlocked(0, "passed-3", "gold", 0),
        unlocked(1, "first-proposal", "bronze", 0),
        unlocked(2, "first-proposal", "bronze", 0),
        unlocked(3, "first-proposal", "bronze", 0),
        unlocked(4, "first-proposal", "bronze", 0),
        unlocked(5, "first-proposal", "bronze", 0),
        // Voted on seqs 1..9: a streak of 9, but 9 votes (< 10).
        unlocked(6, "streak-5", "gold", 0),
        // Voted on seqs 1..10.
        unlocked(11, "streak-5", "gold", 0),
        unlocked(11, "voter-10", "silver", 0),
    ]
    .into_iter()
    .collect()
}

fn expected_users() -> BTreeMap<String, UserRow> {
    let user = |created, votes, passed, nfts, streak| UserRow {
        created,
        votes,
        passed,
        nfts,
        streak,
    };
    [
        (0, user(3, 0, 3, 1, 0)),
        (1, user(2, 0, 0, 0, 0)),
        (2, user(2, 0, 0, 0, 0)),
        (3, user(1, 0, 0, 0, 0)),
        (4, user(1, 0, 0, 0, 0)),
        (5, user(1, 0, 0, 0, 0)),
        (6, user(0, 9, 0, 0, 9)),
        // seqs {1, 2, 6, 7, 10}; holds gold #1.
        (7, user(0, 5, 0, 1, 2)),
        // seqs {1, 3, 4, 7, 10}: five votes, no streak of five.
        (8, user(0, 5, 0, 7, 2)),
        // seqs {1, 3, 7}; holds silver #2 and the untiered #14.
        (9, user(0, 3, 0, 2, 1)),
        // seqs {1, 3, 9, 10}.
        (10, user(0, 4, 0, 0, 2)),
        (11, user(0, 10, 0, 1, 10)),
    ]
    .into_iter()
    .map(|(u, row)| (addr(u), row))
    .collect()
}

fn expected_nfts() -> BTreeMap<String, NftRow> {
    let nft = |owner: Option<u32>, tier: Option<&str>, burned, block, log| {
        (
            owner.map(addr),
            tier.map(str::to_string),
            burned,
            (block, log),
        )
    };
    let badge = badge_token();
    [
        (badge.as_str(), nft(Some(0), Some("bronze"), false, 9, 0)),
        ("1", nft(Some(7), Some("gold"), false, 20, 0)),
        ("2", nft(Some(9), Some("silver"), false, 14, 0)),
        ("3", nft(Some(11), Some("bronze"), false, 15, 0)),
        ("4", nft(None, Some("gold"), true, 16, 0)),
        ("5", nft(Some(8), Some("gold"), false, 12, 0)),
        ("11", nft(Some(8), Some("gold"), false, 12, 1)),
        ("12", nft(Some(8), Some("gold"), false, 12, 2)),
        ("13", nft(Some(8), Some("gold"), false, 12, 3)),
        ("6", nft(Some(8), Some("silver"), false, 12, 4)),
        ("7", nft(Some(8), Some("silver"), false, 12, 5)),
        ("8", nft(Some(8), Some("bronze"), false, 12, 6)),
        ("14", nft(Some(9), None, false, 13, 0)),
    ]
    .into_iter()
    .map(|(t, row)| (t.to_string(), row))
    .collect()
}
