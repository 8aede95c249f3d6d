//! The minter's key: from an encrypted keystore, or held by an external signer; a wrong
//! password, a missing signer or one without the address is refused clearly.

use ethers::providers::Middleware;
use merit_chain::{Chain, ErrorClass, EthersChain, Minter};
use merit_config::Secret;
use uuid::Uuid;

use crate::common::*;

/// A keystore for anvil's account `i`, encrypted with `password` in `dir` (ethers'
/// encrypt function: Web3 Secret Storage v3, as geth writes it).
fn keystore(dir: &std::path::Path, i: usize, password: &str) -> std::path::PathBuf {
    let key = hex::decode(ACCOUNTS[i].1.trim_start_matches("0x")).expect("hex key");
    ethers::signers::LocalWallet::encrypt_keystore(
        dir,
        &mut ethers::core::rand::thread_rng(),
        key,
        password,
        Some("minter.json"),
    )
    .expect("encrypt the keystore");
    dir.join("minter.json")
}

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_keystore_minter_decrypts_and_mints_and_a_wrong_password_is_refused_clearly() {
    let anvil = Anvil::start(None);
    let dir = tempfile::tempdir().expect("temp dir");
    let password = "keystore-pw-S3CRET";
    let path = keystore(dir.path(), 0, password);

    let minter = Minter::from_keystore(&path, &Secret::new(password))
        .await
        .expect("decrypt the keystore");
    assert_eq!(minter.address(), account(0));
    assert!(!format!("{minter:?}").contains(ACCOUNTS[0].1.trim_start_matches("0x")));
    let chain = EthersChain::deploy_with(&anvil.url(), minter, fast_options())
        .await
        .expect("deploy signed by the keystore's key");
    mint_mined(&chain, account(1), 1).await;
    assert_eq!(
        chain.owner_of(&token(1), None).await.expect("owner"),
        Some(account(1))
    );

    let wrong = "not-the-password-S3CRET";
    let err = Minter::from_keystore(&path, &Secret::new(wrong))
        .await
        .expect_err("a wrong password");
    assert_eq!(err.class(), ErrorClass::Permanent);
    let text = format!("{err} {err:?}");
    assert!(text.contains("wrong password"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    for secret in [wrong, password, ACCOUNTS[0].1.trim_start_matches("0x")] {
        assert!(!text.contains(secret), "secret in {text}");
    }

    let missing = dir.path().join("nope.json");
    let err = Minter::from_keystore(&missing, &Secret::new(password))
        .await
        .expect_err("no such file");
    assert!(err.to_string().contains("cannot read it"), "{err}");
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"not\": \"a keystore\"}").expect("write");
    let err = Minter::from_keystore(&garbage, &Secret::new(password))
        .await
        .expect_err("not a keystore");
    assert!(
        err.to_string().contains("not a valid JSON keystore"),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn an_external_signer_signs_the_mints_and_the_key_never_enters_merit() {
    // anvil plays the signer (it signs for its unlocked dev accounts) and the chain.
    let anvil = Anvil::start(None);
    let admin = anvil.deploy_fast().await;
    let minter = Minter::external(&anvil.url(), account(1))
        .await
        .expect("the signer holds account 1");
    assert_eq!(minter.kind(), "external signer");
    let grant = admin.set_minter(account(1), true).await.expect("grant");
    mined(&admin, &grant).await;
    let chain = EthersChain::connect_with(&anvil.url(), admin.contract(), minter, fast_options())
        .await
        .expect("connect");
    assert_eq!(chain.minter(), account(1));
    for n in 1..=2 {
        let tx = chain
            .mint(account(2), &token(n), Uuid::new_v4())
            .await
            .expect("mint signed by the external signer");
        mined(&chain, &tx).await;
        let onchain = anvil
            .provider()
            .get_transaction(ethers::types::H256(tx.0))
            .await
            .expect("get tx")
            .expect("tx exists");
        assert_eq!(onchain.from.0, account(1).0, "signed by the minter address");
    }
    assert_eq!(
        chain.owner_of(&token(2), None).await.expect("owner"),
        Some(account(2))
    );
    // The compensation path works through the signer too, with the owner check.
    let burn = chain.burn(&token(2), account(2)).await.expect("burn");
    mined(&chain, &burn).await;
    assert_eq!(chain.owner_of(&token(2), None).await.expect("owner"), None);
}

#[tokio::test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn an_unreachable_signer_or_one_without_the_address_fails_the_start_clearly() {
    let port = merit_testkit::free_port();
    // Nothing listens there any more; the URL carries a password that must not show.
    let url = format!("http://merit:S3CRET-pw@127.0.0.1:{port}");
    let err = Minter::external(&url, account(1))
        .await
        .expect_err("unreachable signer");
    assert_eq!(err.class(), ErrorClass::Unavailable, "{err}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("external signer is unreachable"), "{text}");
    assert!(!text.contains("S3CRET"), "{text}");

    let anvil = Anvil::start(None);
    let stranger: merit_messages::Address = "0x1111111111111111111111111111111111111111"
        .parse()
        .expect("address");
    let err = Minter::external(&anvil.url(), stranger)
        .await
        .expect_err("anvil does not hold that address");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(
        err.to_string().contains(
            "does not hold the minter address 0x1111111111111111111111111111111111111111"
        ),
        "{err}"
    );
}
