//! The adapter's error classes: a minter whose role was revoked gets a permanent error, a
//! node that is down is unavailable, and the adapter recovers once it is back.

use merit_chain::{Chain, ErrorClass, EthersChain};
use uuid::Uuid;

use crate::common::*;

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_minter_whose_role_was_revoked_gets_a_permanent_error() {
    let anvil = Anvil::start(None);
    let admin = anvil.deploy_fast().await;
    let minter = EthersChain::connect(&anvil.url(), admin.contract(), &key(1), fast_options())
        .await
        .expect("connect");
    let grant = admin.set_minter(account(1), true).await.expect("grant");
    mined(&admin, &grant).await;
    let ok = minter
        .mint(account(2), &token(1), Uuid::new_v4())
        .await
        .expect("mint with the role");
    mined(&minter, &ok).await;

    let revoke = admin.set_minter(account(1), false).await.expect("revoke");
    mined(&admin, &revoke).await;
    let err = minter
        .mint(account(2), &token(2), Uuid::new_v4())
        .await
        .expect_err("mint without the role");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(
        err.to_string().contains("AccessControlUnauthorizedAccount"),
        "{err}"
    );
    // A second mint of an existing token is refused as permanent too.
    let exists = admin
        .mint(account(2), &token(1), Uuid::new_v4())
        .await
        .expect_err("token exists");
    assert_eq!(exists.class(), ErrorClass::Permanent, "{exists}");
    // The key never shows.
    let secret_hex = ACCOUNTS[1].1.trim_start_matches("0x");
    for text in [err.to_string(), format!("{err:?}"), format!("{minter:?}")] {
        assert!(!text.contains(secret_hex), "key leaked in {text}");
    }
}

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn an_unreachable_node_is_unavailable_and_the_adapter_recovers_after_a_restart() {
    let mut anvil = Anvil::start(None);
    let chain = anvil.deploy_fast().await;
    let contract = chain.contract();
    mint_mined(&chain, account(1), 1).await;

    anvil.kill();
    let down = chain.head_block().await.expect_err("node is down");
    assert_eq!(down.class(), ErrorClass::Unavailable, "{down}");
    let mint = chain
        .mint(account(1), &token(2), Uuid::new_v4())
        .await
        .expect_err("node is down");
    assert_eq!(mint.class(), ErrorClass::Unavailable, "{mint}");

    // Back on the same port, with a fresh chain: redeploying from the same key at nonce 0
    // yields the same contract address, and the adapter's nonce is read again.
    let anvil = Anvil::start_on(anvil.port);
    let redeployed = anvil.deploy_fast().await;
    assert_eq!(redeployed.contract(), contract);
    let again = chain
        .mint(account(1), &token(2), Uuid::new_v4())
        .await
        .expect("mint after restart");
    mined(&chain, &again).await;
    assert_eq!(
        chain.owner_of(&token(2), None).await.expect("owner"),
        Some(account(1))
    );
}
