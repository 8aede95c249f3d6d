//! Proposal sequence numbers: creation order from 1, with no gap, however many proposals
//! are created at once.

use std::collections::BTreeSet;

use crate::common::{Backend, TestDb};

merit_testkit::on_both_backends! {
    proposals_created_at_once_each_get_one_number_from_one_to_n => created_at_once;
}

/// A burst of proposals (a bulk replay, many producers at once) allocates every number on
/// the first call: none fails and none is skipped, and asking again gives the same number.
/// The allocation once raced on the unique `seq`; under 64 allocators a loser could lose
/// 20 times in a row, and each such failure cost the proposal's turn an attempt.
async fn created_at_once(backend: Backend) {
    const N: usize = 400;
    let (db, store) = TestDb::migrated(backend).await;
    let allocations: Vec<_> = (0..N)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.proposal_seq(&format!("burst-{i}")).await })
        })
        .collect();
    let mut seqs = Vec::with_capacity(N);
    for (i, allocation) in allocations.into_iter().enumerate() {
        match allocation.await.expect("the task ran") {
            Ok(seq) => seqs.push(seq),
            Err(e) => panic!("proposal burst-{i} got no number: {e}"),
        }
    }
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), N, "each number is given once");
    assert_eq!(distinct.first(), Some(&1));
    assert_eq!(distinct.last(), Some(&(N as u64)), "no gap");
    for (i, seq) in seqs.iter().enumerate().step_by(37) {
        let again = store
            .proposal_seq(&format!("burst-{i}"))
            .await
            .expect("read again");
        assert_eq!(again, *seq, "a proposal keeps its number");
    }
    db.cleanup().await;
}
