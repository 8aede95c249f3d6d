//! A transfer made directly on chain reaches the new owner's benefits, once.

use std::time::Duration;

use merit_chain::Chain;
use merit_messages::{Address, TokenId, TxHash};
use merit_storage::{
    entities::{benefit, nft, outbox},
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    Store,
};

use crate::{
    common::{eventually, token_of, wallet},
    world::{mined, Node, World},
};

/// `user`'s benefits row, if the UserActor wrote one.
pub(crate) async fn benefits_of(store: &Store, user: Address) -> Option<benefit::Model> {
    benefit::Entity::find_by_id(user.to_string())
        .one(store.db())
        .await
        .expect("benefits")
}

/// Whether `benefits` lists `token` with `tier` (`boosting_nfts` is `[[token, tier], ...]`).
pub(crate) fn lists_token(benefits: &benefit::Model, token: &TokenId, tier: &str) -> bool {
    benefits.boosting_nfts.as_array().is_some_and(|a| {
        a.iter().any(|t| {
            t.get(0).and_then(|v| v.as_str()) == Some(token.as_str())
                && t.get(1).and_then(|v| v.as_str()) == Some(tier)
        })
    })
}

/// Sends `transferFrom(from, to, token)` to the contract as `from`, a test wallet without a
/// key: anvil impersonates it and funds it for the gas. Returns the transaction.
async fn transfer_on_chain(world: &World, from: Address, to: Address, token: &TokenId) -> TxHash {
    let anvil = &world.anvil;
    anvil
        .rpc(
            "anvil_impersonateAccount",
            serde_json::json!([from.to_string()]),
        )
        .await;
    // 1 ether for the gas.
    anvil
        .rpc(
            "anvil_setBalance",
            serde_json::json!([from.to_string(), "0xde0b6b3a7640000"]),
        )
        .await;
    let word = |a: Address| format!("{:0>64}", hex_of(&a.0));
    let id: u128 = token
        .as_str()
        .parse()
        .expect("merit's token ids fit in u128");
    // transferFrom(address,address,uint256)
    let data = format!("0x23b872dd{}{}{id:064x}", word(from), word(to));
    let tx = anvil
        .rpc(
            "eth_sendTransaction",
            serde_json::json!([{
                "from": from.to_string(),
                "to": world.admin.contract().to_string(),
                "data": data,
                "gas": "0x30d40",
            }]),
        )
        .await;
    anvil
        .rpc(
            "anvil_stopImpersonatingAccount",
            serde_json::json!([from.to_string()]),
        )
        .await;
    tx.as_str()
        .expect("a transaction hash")
        .parse()
        .expect("a transaction hash")
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_transfer_made_directly_on_chain_reaches_the_new_owners_benefits() {
    let confirmations = 2;
    let world = World::new("direct-transfer", Some(1), confirmations).await;
    let mut node = Node(Some(world.spawn_node()));
    let (holder, new_owner) = (wallet(404), wallet(405));

    // The holder's first proposal mints "first-proposal" (bronze) to it through the saga.
    world.publish_first_proposal(holder, "p-direct").await;
    let row = world.achievement_in(holder, "minted", 60).await;
    let token = token_of(&row);
    assert_eq!(row.tier, "bronze");
    world.wait_benefits_list(holder, &token, 60).await;

    // The holder gives the token away on chain, without merit.
    let tx = transfer_on_chain(&world, holder, new_owner, &token).await;
    mined(&world.reader, &tx).await;
    assert_eq!(
        world.reader.owner_of(&token, None).await.expect("ownerOf"),
        Some(new_owner),
        "the chain moved the token"
    );
    world.anvil.mine(confirmations + 1).await;

    // merit follows: the new owner's benefits gain it, the old owner's lose it.
    world.wait_benefits_list(new_owner, &token, 60).await;
    let what = format!(
        "{holder}'s benefits drop to 10000 bps with no boosting NFTs (log: {})",
        world.log.display()
    );
    eventually(60, &what, || {
        let store = world.store.clone();
        async move {
            benefits_of(&store, holder).await.is_some_and(|b| {
                b.multiplier_bps == 10_000
                    && b.boosting_nfts.as_array().is_some_and(|a| a.is_empty())
            })
        }
    })
    .await;
    check_registered_to(&world, &token, new_owner, &tx).await;

    // More blocks and polls go by: still exactly one nft.transferred for the token.
    world.anvil.mine(confirmations + 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    check_transferred_once(&world, &token, holder, new_owner).await;

    node.stop();
    world.cleanup().await;
}

/// The NftActor has `token` at `new_owner`, moved by `tx`, the second of its transfers.
async fn check_registered_to(world: &World, token: &TokenId, new_owner: Address, tx: &TxHash) {
    let stored = nft::Entity::find_by_id(token.to_string())
        .one(world.store.db())
        .await
        .expect("nfts")
        .expect("the token is registered");
    assert_eq!(stored.owner, Some(new_owner.to_string()), "{stored:?}");
    assert!(!stored.burned);
    assert_eq!(stored.tier.as_deref(), Some("bronze"));
    let transfers = world.transfers_of(token).await;
    assert_eq!(transfers.len(), 2, "a mint and a transfer: {transfers:?}");
    assert_eq!(&transfers[1].tx_hash, tx);
    assert_eq!(stored.last_block as u64, transfers[1].block);
}

/// One `nft.transferred` for `token`, to `new_owner`, after one `nft.minted`; the benefits
/// of `holder` and `new_owner` say so.
async fn check_transferred_once(
    world: &World,
    token: &TokenId,
    holder: Address,
    new_owner: Address,
) {
    let transferred: Vec<serde_json::Value> = outbox::Entity::find()
        .filter(outbox::Column::RoutingKey.eq("nft.transferred"))
        .all(world.store.db())
        .await
        .expect("outbox")
        .iter()
        .map(|r| serde_json::from_str(&r.payload).expect("an envelope"))
        .filter(|e: &serde_json::Value| e["payload"]["token"].as_str() == Some(token.as_str()))
        .collect();
    assert_eq!(
        transferred.len(),
        1,
        "one nft.transferred for the token: {transferred:?}"
    );
    assert_eq!(
        transferred[0]["payload"]["to"].as_str(),
        Some(new_owner.to_string().as_str())
    );
    assert_eq!(world.outbox_count("nft.minted").await, 1);
    let holder_benefits = benefits_of(&world.store, holder).await.expect("benefits");
    assert_eq!(
        holder_benefits.multiplier_bps, 10_000,
        "{holder_benefits:?}"
    );
    let owner_benefits = benefits_of(&world.store, new_owner)
        .await
        .expect("benefits");
    assert_eq!(owner_benefits.multiplier_bps, 11_000, "{owner_benefits:?}");
}
