//! Per-key order under concurrency.

use std::time::Duration;

use merit_mailbox::{Outgoing, Transport};
use merit_messages::ActorKind;

use crate::{
    common::{self, eventually, run_in_system, start_node, wallet},
    harness::world,
};

/// 1,000 tokens, each minted then transferred 9 times along a chain of owners, all
/// published interleaved. The NftActor ignores a change older than the last it applied,
/// so any reordering within a key would drop transfers and the `user.holdings.changed`
/// events they emit; strict per-key order emits exactly 1 + 2 × 9 per token.
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn per_key_order_holds_under_concurrency_across_1000_keys() {
    run_in_system(async {
        const TOKENS: u32 = 1_000;
        const HOPS: u32 = 9;
        let (db, store, vhost, transport) = world(4).await;
        let node = start_node("order", 4, store.clone(), transport.clone()).await;

        let batch: Vec<Outgoing> = (0..=HOPS)
            .flat_map(|step| common::nft_step(step, TOKENS))
            .collect();
        for chunk in batch.chunks(2_000) {
            transport.publish(chunk.to_vec()).await.expect("publish");
        }
        let expected_emitted = u64::from(TOKENS) * (1 + 2 * u64::from(HOPS));
        common::nft_chains_applied(&store, TOKENS, HOPS, 120).await;
        let emitted = common::holdings_changes_emitted(&store).await;
        assert_eq!(
            emitted, expected_emitted,
            "a reordered change would have been ignored"
        );
        // The holdings flowed on to the users, in order too: each token ends with its last owner.
        let last_owner = wallet(5 + HOPS).to_string();
        eventually(60, "holdings reach the users", || {
            let store = store.clone();
            let last_owner = last_owner.clone();
            async move {
                store
                    .load_actor(ActorKind::User, &last_owner)
                    .await
                    .expect("load")
                    .is_some_and(|(_, s)| s["holdings"].get("5").is_some())
            }
        })
        .await;
        node.shutdown(Duration::from_secs(5)).await;
        vhost.delete();
        db.cleanup().await;
    });
}
