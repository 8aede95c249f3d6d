//! A compensation's burn after the token changed hands leaves the new holder's token alone,
//! in the adapter and in the contract itself.

use merit_chain::{Chain, ErrorClass};

use crate::common::*;

/// The attack on a compensation: merit reads the owner (the user, A), then A's transfer to
/// B is mined, then merit burns for A. The burn must leave B's token alone and say why.
#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_burn_after_the_token_changed_hands_leaves_the_new_holder_s_token_alone() {
    let anvil = Anvil::start(None);
    let chain = anvil.deploy_fast().await;
    mint_mined(&chain, account(1), 11).await;
    // The compensation's owner check passes: A still holds it.
    assert_eq!(
        chain.owner_of(&token(11), None).await.expect("owner"),
        Some(account(1))
    );
    // A passes it to B (mined) before merit's burn.
    anvil
        .transfer_from(chain.contract(), account(1), account(2), 11)
        .await;
    let err = chain
        .burn(&token(11), account(1))
        .await
        .expect_err("a burn for A must be refused once B holds the token");
    assert_eq!(err.owner_changed(), Some(Some(account(2))), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert_eq!(
        chain.owner_of(&token(11), None).await.expect("owner"),
        Some(account(2)),
        "B's token was burned by a compensation meant for A"
    );

    // The contract itself refuses, not only the adapter's gas estimate: a burnFrom for A
    // sent by the minter with a fixed gas limit (no estimate) is mined and reverts.
    let raw = anvil
        .send_unchecked(
            account(0),
            chain.contract(),
            burn_from_calldata(11, account(1)),
        )
        .await;
    let receipt = chain.receipt(&raw).await.expect("receipt").expect("mined");
    assert!(!receipt.success, "burnFrom for a former owner must revert");
    assert_eq!(
        chain.owner_of(&token(11), None).await.expect("owner"),
        Some(account(2))
    );

    // Burning from the holder merit expects works.
    let burn = chain.burn(&token(11), account(2)).await.expect("burn");
    mined(&chain, &burn).await;
    assert_eq!(chain.owner_of(&token(11), None).await.expect("owner"), None);
}

fn burn_from_calldata(token: u64, expected_owner: merit_messages::Address) -> Vec<u8> {
    let selector = &ethers::utils::id("burnFrom(uint256,address)")[..4];
    let args = ethers::abi::encode(&[
        ethers::abi::Token::Uint(token.into()),
        ethers::abi::Token::Address(ethers::types::H160(expected_owner.0)),
    ]);
    [selector, &args].concat()
}
