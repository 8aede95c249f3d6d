//! The messages: proposals, votes (each user × proposal pair at most once), duplicates
//! of earlier votes, and votes broken in one of seven ways.

use std::collections::HashMap;

use anyhow::Result;
use chrono::Utc;
use merit_mailbox::Outgoing;
use merit_messages::{
    Address, Envelope, ProposalCreated, ProposalId, VoteCast, VoteChoice, MAX_ENVELOPE_BYTES,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};

use super::Plan;

/// The `source` of every envelope the simulator publishes.
const SOURCE: &str = "merit-simulate";
/// Most earlier votes kept as candidates for duplicates.
const DUPLICATE_POOL: usize = 100_000;
/// A routing key and `type` no merit version knows.
const UNKNOWN_TYPE: &str = "governance.vote.retracted";

/// The ways a malformed message is broken, published in this order, round robin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Broken {
    BadJson,
    WrongType,
    UnknownType,
    UnknownVersion,
    MissingField,
    Oversized,
    BadChecksum,
}

impl Broken {
    pub(super) const ALL: [Broken; 7] = [
        Broken::BadJson,
        Broken::WrongType,
        Broken::UnknownType,
        Broken::UnknownVersion,
        Broken::MissingField,
        Broken::Oversized,
        Broken::BadChecksum,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::WrongType => "wrong_type",
            Self::UnknownType => "unknown_type",
            Self::UnknownVersion => "unknown_version",
            Self::MissingField => "missing_field",
            Self::Oversized => "oversized",
            Self::BadChecksum => "bad_checksum",
        }
    }

    /// The dead-letter class merit gives it (`x-merit-reason-class`).
    pub(super) fn dead_letter_class(self) -> &'static str {
        match self {
            Self::BadJson => "malformed",
            Self::WrongType | Self::BadChecksum => "invalid_field",
            Self::UnknownType => "unknown_type",
            Self::UnknownVersion => "unknown_version",
            Self::MissingField => "missing_field",
            Self::Oversized => "oversized",
        }
    }
}

/// Messages by kind.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts {
    pub(super) proposals: u64,
    pub(super) votes: u64,
    pub(super) duplicates: u64,
    pub(super) malformed: [u64; Broken::ALL.len()],
}

impl Counts {
    pub(super) fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }

    pub(super) fn total(&self) -> u64 {
        self.proposals + self.votes + self.duplicates + self.malformed_total()
    }

    pub(super) fn paced(&self) -> u64 {
        self.total() - self.proposals
    }

    pub(super) fn add(&mut self, other: &Counts) {
        self.proposals += other.proposals;
        self.votes += other.votes;
        self.duplicates += other.duplicates;
        for (mine, theirs) in self.malformed.iter_mut().zip(other.malformed) {
            *mine += theirs;
        }
    }
}

/// What one paced slot became.
pub(super) enum Kind {
    Vote,
    Duplicate,
    Malformed(Broken),
}

/// Draws `0..n` without replacement, uniformly: a Fisher-Yates shuffle done lazily, so
/// memory grows with the draws, not with `n` (users × proposals can be large).
struct Draw {
    remaining: u64,
    moved: HashMap<u64, u64>,
}

impl Draw {
    fn new(n: u64) -> Self {
        Self {
            remaining: n,
            moved: HashMap::new(),
        }
    }

    fn next(&mut self, rng: &mut StdRng) -> Option<u64> {
        if self.remaining == 0 {
            return None;
        }
        let j = rng.gen_range(0..self.remaining);
        let last = self.remaining - 1;
        let picked = self.moved.get(&j).copied().unwrap_or(j);
        let tail = self.moved.remove(&last).unwrap_or(last);
        if j != last {
            self.moved.insert(j, tail);
        }
        self.remaining = last;
        Some(picked)
    }
}

/// The wallet of simulated user `i`: fixed across runs (so `--users N` is always the same
/// community) and spread over the address space.
fn user_address(i: u32) -> Address {
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let mut state = 0x6d65_7269_742d_7369 ^ u64::from(i);
    let mut bytes = [0u8; 20];
    for chunk in bytes.chunks_mut(8) {
        let word = splitmix(&mut state).to_be_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    Address(bytes)
}

/// `addr` in mixed case with a wrong EIP-55 checksum (one letter's case flipped so that
/// both cases remain), or `None` when it has too few letters for that.
fn bad_checksum(addr: &Address) -> Option<String> {
    let good = addr.to_checksum();
    let hex: Vec<char> = good[2..].chars().collect();
    for (i, c) in hex.iter().enumerate() {
        if !c.is_ascii_alphabetic() {
            continue;
        }
        let mut flipped = hex.clone();
        flipped[i] = if c.is_ascii_uppercase() {
            c.to_ascii_lowercase()
        } else {
            c.to_ascii_uppercase()
        };
        let upper = flipped.iter().any(char::is_ascii_uppercase);
        let lower = flipped.iter().any(char::is_ascii_lowercase);
        if upper && lower {
            return Some(format!("0x{}", flipped.into_iter().collect::<String>()));
        }
    }
    None
}

/// Builds the messages: proposals, votes (each user × proposal pair at most once),
/// duplicates of earlier votes, broken messages.
pub(super) struct Generator {
    rng: StdRng,
    users: u32,
    proposals: Vec<ProposalId>,
    pairs: Draw,
    earlier_votes: Vec<Outgoing>,
    duplicate_fraction: f64,
    malformed_fraction: f64,
    duplicate_credit: f64,
    malformed_credit: f64,
    next_broken: usize,
}

impl Generator {
    pub(super) fn new(plan: &Plan, run: &str) -> Result<Self> {
        let proposals = (0..plan.proposals)
            .map(|p| {
                format!("sim-{run}-{p}")
                    .parse::<ProposalId>()
                    .map_err(|e| anyhow::anyhow!("proposal id sim-{run}-{p}: {e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut rng = StdRng::seed_from_u64(plan.seed);
        // Random phases, so that duplicates and broken messages do not fall on the same
        // slots of every run.
        let duplicate_credit = rng.gen::<f64>() * plan.duplicate_fraction;
        let malformed_credit = rng.gen::<f64>() * plan.malformed_fraction;
        Ok(Self {
            rng,
            users: plan.users,
            pairs: Draw::new(u64::from(plan.users) * u64::from(plan.proposals)),
            proposals,
            earlier_votes: Vec::new(),
            duplicate_fraction: plan.duplicate_fraction,
            malformed_fraction: plan.malformed_fraction,
            duplicate_credit,
            malformed_credit,
            next_broken: 0,
        })
    }

    fn random_user(&mut self) -> Address {
        user_address(self.rng.gen_range(0..self.users))
    }

    fn random_proposal(&mut self) -> ProposalId {
        self.proposals[self.rng.gen_range(0..self.proposals.len())].clone()
    }

    fn choice(&mut self) -> VoteChoice {
        match self.rng.gen_range(0..10) {
            0..=5 => VoteChoice::For,
            6..=8 => VoteChoice::Against,
            _ => VoteChoice::Abstain,
        }
    }

    /// `governance.proposal.created` for every proposal: open since a minute ago, for a
    /// day, quorum 1, a random creator.
    pub(super) fn creations(&mut self) -> Vec<Outgoing> {
        let now = Utc::now();
        let ids = self.proposals.clone();
        ids.into_iter()
            .enumerate()
            .map(|(i, proposal)| {
                let creator = self.random_user();
                Outgoing::from_envelope(&Envelope::new(
                    SOURCE,
                    ProposalCreated {
                        proposal,
                        creator,
                        title: format!("Simulated proposal {i}"),
                        description: "Created by merit simulate.".into(),
                        starts_at: now - chrono::Duration::minutes(1),
                        ends_at: now + chrono::Duration::days(1),
                        quorum: 1,
                        threshold_bps: 5_000,
                    },
                ))
            })
            .collect()
    }

    /// The next paced message, or `None` when every user has voted on every proposal.
    pub(super) fn next(&mut self) -> Option<(Kind, Outgoing)> {
        self.malformed_credit += self.malformed_fraction;
        self.duplicate_credit += self.duplicate_fraction;
        if self.malformed_credit >= 1.0 {
            self.malformed_credit -= 1.0;
            let broken = Broken::ALL[self.next_broken % Broken::ALL.len()];
            self.next_broken += 1;
            return Some((Kind::Malformed(broken), self.broken(broken)));
        }
        if self.duplicate_credit >= 1.0 && !self.earlier_votes.is_empty() {
            self.duplicate_credit -= 1.0;
            let i = self.rng.gen_range(0..self.earlier_votes.len());
            return Some((Kind::Duplicate, self.earlier_votes[i].clone()));
        }
        self.vote().map(|out| (Kind::Vote, out))
    }

    fn vote(&mut self) -> Option<Outgoing> {
        let pair = self.pairs.next(&mut self.rng)?;
        let count = self.proposals.len() as u64;
        let user = u32::try_from(pair / count).expect("a pair's user index is below --users");
        let proposal = self.proposals[(pair % count) as usize].clone();
        let choice = self.choice();
        let out = Outgoing::from_envelope(&Envelope::new(
            SOURCE,
            VoteCast {
                proposal,
                voter: user_address(user),
                choice,
                reason: None,
            },
        ));
        if self.earlier_votes.len() < DUPLICATE_POOL {
            self.earlier_votes.push(out.clone());
        } else {
            let i = self.rng.gen_range(0..DUPLICATE_POOL);
            self.earlier_votes[i] = out.clone();
        }
        Some(out)
    }

    /// A vote broken as `how`, with the routing key and key headers the intact vote would
    /// have, so it reaches the proposal's shard (an unknown type cannot: it goes through
    /// `merit.unrouted`) and is dead-lettered there. A fresh id each time.
    fn broken(&mut self, how: Broken) -> Outgoing {
        let mut voter = self.random_user();
        let proposal = self.random_proposal();
        let choice = self.choice();
        let env = Envelope::new(
            SOURCE,
            VoteCast {
                proposal: proposal.clone(),
                voter,
                choice,
                reason: None,
            },
        );
        let intact = Outgoing::from_envelope(&env);
        let mut wire: Value =
            serde_json::from_slice(&intact.body).expect("an encoded envelope is JSON");
        let mut routing_key = intact.routing_key.clone();
        let mut headers = intact.headers.clone();
        let body: Vec<u8> = match how {
            Broken::BadJson => {
                // Cut in the middle: not JSON any more.
                intact.body[..intact.body.len() / 2].to_vec()
            }
            Broken::WrongType => {
                wire["payload"]["choice"] = json!(42);
                wire.to_string().into_bytes()
            }
            Broken::UnknownType => {
                wire["type"] = json!(UNKNOWN_TYPE);
                routing_key = UNKNOWN_TYPE.to_string();
                wire.to_string().into_bytes()
            }
            Broken::UnknownVersion => {
                wire["version"] = json!(2);
                wire.to_string().into_bytes()
            }
            Broken::MissingField => {
                if let Some(payload) = wire["payload"].as_object_mut() {
                    payload.remove("voter");
                }
                if let Some(keys) = wire["keys"].as_object_mut() {
                    keys.remove("user");
                }
                headers.remove("merit-user");
                wire.to_string().into_bytes()
            }
            Broken::Oversized => {
                wire["payload"]["reason"] = json!("x".repeat(MAX_ENVELOPE_BYTES + 1_024));
                wire.to_string().into_bytes()
            }
            Broken::BadChecksum => {
                let mut mixed = bad_checksum(&voter);
                while mixed.is_none() {
                    voter = self.random_user();
                    mixed = bad_checksum(&voter);
                }
                let mixed = mixed.expect("the loop ends with a mixed-case address");
                wire["payload"]["voter"] = json!(mixed);
                // `keys` would be checked against the payload; leave it to merit to derive.
                if let Some(envelope) = wire.as_object_mut() {
                    envelope.remove("keys");
                }
                headers.insert("merit-user".into(), voter.to_string());
                wire.to_string().into_bytes()
            }
        };
        let mut out = Outgoing::new(routing_key, intact.message_id.clone(), body);
        out.correlation_id = intact.correlation_id.clone();
        out.headers = headers;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ledger::Ledger, Profile, SimulateArgs};
    use super::*;

    #[test]
    fn draw_yields_every_index_once() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut d = Draw::new(1_000);
        let mut seen: Vec<u64> = std::iter::from_fn(|| d.next(&mut rng)).collect();
        assert_eq!(seen.len(), 1_000);
        seen.sort_unstable();
        assert!(seen.iter().copied().eq(0..1_000));
        assert_eq!(d.next(&mut rng), None);
    }

    #[test]
    fn broken_messages_fail_with_their_class() {
        let args = SimulateArgs {
            amqp_url: None,
            users: 20,
            proposals: 3,
            rate: 10.0,
            seconds: None,
            events: None,
            profile: Profile::Steady,
            duplicate_fraction: 0.0,
            malformed_fraction: 0.0,
            seed: Some(1),
            confirm_window: 10,
            json: None,
            ledger: None,
        };
        let plan = Plan::new(&args).expect("valid arguments");
        let mut g = Generator::new(&plan, "test").expect("valid ids");
        for b in Broken::ALL {
            let out = g.broken(b);
            assert!(out.headers.contains_key("merit-proposal"), "{b:?}");
            match Envelope::decode(&out.body) {
                Ok(_) => panic!("{b:?} decoded"),
                Err(e) => assert_eq!(e.kind.as_str(), b.dead_letter_class(), "{b:?}: {e}"),
            }
        }
        let vote = g.vote().expect("pairs left");
        let env = Envelope::decode(&vote.body).expect("a vote decodes");
        assert_eq!(vote.message_id, env.id.to_string());

        // The ledger names the intact messages only, by type, id, proposal and user.
        let batch = vec![vote.clone(), g.broken(Broken::BadJson)];
        let entries = Ledger::entries(&batch, &[true, false]);
        let merit_messages::Event::VoteCast(VoteCast {
            proposal, voter, ..
        }) = &env.event
        else {
            panic!("a vote is a VoteCast: {:?}", env.event);
        };
        assert_eq!(
            entries,
            vec![[
                "governance.vote.cast".to_string(),
                env.id.to_string(),
                proposal.to_string(),
                voter.to_string().to_ascii_lowercase(),
            ]]
        );
    }

    #[test]
    fn users_have_distinct_addresses_with_bad_checksums_available() {
        let addrs: std::collections::HashSet<_> = (0..10_000).map(user_address).collect();
        assert_eq!(addrs.len(), 10_000);
        let bad = bad_checksum(&user_address(0)).expect("enough letters");
        assert!(bad.parse::<Address>().is_err());
    }
}
