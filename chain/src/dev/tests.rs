//! Unit tests of the in-process chain: logs, owners, refusals, injected failures,
//! confirmations and reorgs.

use super::*;
use crate::api::TxStatus;

fn addr(b: u8) -> Address {
    Address([b; 20])
}

#[tokio::test]
async fn mint_transfer_burn_produce_ordered_logs_and_owners() {
    let chain = DevChain::new(1337);
    let token = TokenId::from(1u128);
    let ach = Uuid::new_v4();
    chain.mint(addr(1), &token, ach).await.expect("mint");
    chain.transfer(addr(1), addr(2), &token).expect("transfer");
    assert_eq!(
        chain.owner_of(&token, None).await.expect("owner"),
        Some(addr(2))
    );
    assert_eq!(
        chain.owner_of(&token, Some(1)).await.expect("owner"),
        Some(addr(1))
    );
    chain.burn(&token, addr(2)).await.expect("burn");
    assert_eq!(chain.owner_of(&token, None).await.expect("owner"), None);
    let logs = chain.logs(0, 10).await.expect("logs");
    let kinds: Vec<(Address, Address)> = logs.iter().map(|l| (l.from, l.to)).collect();
    assert_eq!(
        kinds,
        vec![
            (ZERO_ADDRESS, addr(1)),
            (addr(1), addr(2)),
            (addr(2), ZERO_ADDRESS)
        ]
    );
    assert_eq!(logs[0].achievement_id, Some(ach));
    assert!(logs.windows(2).all(|w| w[0].position() < w[1].position()));
}

#[tokio::test]
async fn a_burn_for_a_holder_who_passed_the_token_on_leaves_it_alone() {
    let chain = DevChain::new(1);
    let token = TokenId::from(21u128);
    chain
        .mint(addr(1), &token, Uuid::new_v4())
        .await
        .expect("mint");
    // merit's check saw addr(1); the holder moved it on before the burn.
    chain.transfer(addr(1), addr(2), &token).expect("transfer");
    let err = chain
        .burn(&token, addr(1))
        .await
        .expect_err("the burn is refused: addr(1) no longer holds it");
    assert_eq!(err.owner_changed(), Some(Some(addr(2))), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(
        chain.owner_of(&token, None).await.expect("owner"),
        Some(addr(2)),
        "the new holder's token was burned"
    );
    // The holder it expects is burned from.
    chain
        .burn(&token, addr(2))
        .await
        .expect("burn from the holder");
    assert_eq!(chain.owner_of(&token, None).await.expect("owner"), None);
}

#[tokio::test]
async fn a_second_mint_of_a_token_and_a_mint_without_the_role_are_permanent() {
    let chain = DevChain::new(1);
    let token = TokenId::from(5u128);
    chain
        .mint(addr(1), &token, Uuid::new_v4())
        .await
        .expect("first mint");
    let again = chain
        .mint(addr(2), &token, Uuid::new_v4())
        .await
        .expect_err("exists");
    assert_eq!(again.class(), ErrorClass::Permanent);
    chain.set_minter_role(false);
    let denied = chain
        .mint(addr(2), &TokenId::from(6u128), Uuid::new_v4())
        .await
        .expect_err("no role");
    assert_eq!(denied.class(), ErrorClass::Permanent);
    assert!(denied.to_string().contains("MINTER_ROLE"), "{denied}");
}

#[tokio::test]
async fn a_refused_token_stays_refused_and_other_tokens_mint() {
    let chain = DevChain::new(1);
    chain.refuse_mints(1);
    let refused = TokenId::from(7u128);
    for _ in 0..3 {
        let err = chain
            .mint(addr(1), &refused, Uuid::new_v4())
            .await
            .expect_err("refused on every attempt");
        assert_eq!(err.class(), ErrorClass::Permanent);
    }
    chain
        .mint(addr(1), &TokenId::from(8u128), Uuid::new_v4())
        .await
        .expect("another token mints");
    assert_eq!(chain.owner_of(&refused, None).await.expect("owner"), None);
}

#[tokio::test]
async fn injected_failures_apply_to_the_next_calls_only() {
    let chain = DevChain::new(1);
    chain.fail_next(2, ErrorClass::Unavailable);
    chain.fail_next(1, ErrorClass::Transient);
    for expected in [
        ErrorClass::Unavailable,
        ErrorClass::Unavailable,
        ErrorClass::Transient,
    ] {
        assert_eq!(
            chain.head_block().await.expect_err("injected").class(),
            expected
        );
    }
    assert_eq!(chain.head_block().await.expect("recovered"), 0);
}

#[tokio::test]
async fn confirmations_grow_with_blocks_and_a_reorg_unmines_the_transaction() {
    let chain = DevChain::new(1);
    let tx = chain
        .mint(addr(1), &TokenId::from(9u128), Uuid::new_v4())
        .await
        .expect("mint");
    assert!(chain
        .confirmations(&tx)
        .await
        .expect("status")
        .is_confirmed(1));
    assert!(!chain
        .confirmations(&tx)
        .await
        .expect("status")
        .is_confirmed(3));
    chain.mine(2);
    assert!(chain
        .confirmations(&tx)
        .await
        .expect("status")
        .is_confirmed(3));
    let before = chain.block_hash(1).await.expect("hash");
    chain.reorg(3);
    assert_eq!(
        chain.confirmations(&tx).await.expect("status"),
        TxStatus::NotMined
    );
    assert_ne!(chain.block_hash(1).await.expect("hash"), before);
    assert_eq!(
        chain.head_block().await.expect("head"),
        3,
        "a reorg keeps the height"
    );
    assert_eq!(
        chain
            .owner_of(&TokenId::from(9u128), None)
            .await
            .expect("owner"),
        None
    );
}

#[tokio::test]
async fn the_miner_advances_the_head_on_a_timer() {
    let chain = Arc::new(DevChain::new(1));
    let miner = chain.spawn_miner(Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(100)).await;
    miner.abort();
    assert!(chain.head_block().await.expect("head") >= 3);
}
