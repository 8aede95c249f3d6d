//! Unit tests of the ethers client's error classification and log decoding.

use ethers::{
    providers::{HttpClientError, JsonRpcError, ProviderError},
    types::Log,
};

use super::*;
use crate::error::ErrorClass;

fn rpc_error(code: i64, message: &str, data: Option<serde_json::Value>) -> ProviderError {
    ProviderError::JsonRpcClientError(Box::new(HttpClientError::JsonRpcError(JsonRpcError {
        code,
        message: message.into(),
        data,
    })))
}

#[test]
fn a_missing_role_revert_is_permanent_and_names_the_account_and_role() {
    let account = H160([0x11; 20]);
    let revert = binding::AccessControlUnauthorizedAccount {
        account,
        needed_role: ethers::utils::keccak256("MINTER_ROLE"),
    }
    .encode();
    let data = serde_json::Value::String(format!("0x{}", hex::encode(revert)));
    let err = classify("mint", &rpc_error(3, "execution reverted", Some(data)));
    assert_eq!(err.class(), ErrorClass::Permanent);
    let text = err.to_string();
    assert!(text.contains("AccessControlUnauthorizedAccount"), "{text}");
    assert!(text.contains(&from_h160(account).to_string()), "{text}");
}

#[test]
fn an_owner_changed_revert_is_its_own_error_naming_the_holder() {
    let revert = binding::MeritOwnerChanged {
        token_id: U256::from(42),
        expected_owner: H160([0x0a; 20]),
        owner: H160([0x0b; 20]),
    }
    .encode();
    let data = serde_json::Value::String(format!("0x{}", hex::encode(revert)));
    let err = classify("burn", &rpc_error(3, "execution reverted", Some(data)));
    assert_eq!(
        err.owner_changed(),
        Some(Some(Address([0x0b; 20]))),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);
    let text = err.to_string();
    assert!(text.contains("token 42"), "{text}");
    assert!(text.contains(&Address([0x0a; 20]).to_string()), "{text}");
    // Other reverts are not mistaken for it.
    let other = classify("burn", &rpc_error(3, "execution reverted", None));
    assert_eq!(other.owner_changed(), None);
}

#[test]
fn nonce_races_and_rate_limits_are_transient_other_refusals_permanent() {
    for message in [
        "nonce too low",
        "Nonce too high",
        "already known",
        "rate limit exceeded",
    ] {
        let err = classify("mint", &rpc_error(-32000, message, None));
        assert_eq!(err.class(), ErrorClass::Transient, "{message}");
    }
    let funds = classify(
        "mint",
        &rpc_error(-32000, "insufficient funds for gas", None),
    );
    assert_eq!(funds.class(), ErrorClass::Permanent);
}

#[test]
fn a_bad_key_is_refused_without_echoing_it() {
    let secret = "0xnot-a-key-but-secret-material";
    let err = Minter::from_key(&Secret::new(secret)).expect_err("invalid key");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(!format!("{err} {err:?}").contains("secret-material"));
}

#[test]
fn an_undecodable_log_keeps_the_abi_error_as_its_source() {
    use std::error::Error as _;
    // A Transfer log with its indexed fields missing.
    let raw = vec![Log {
        address: H160([0xcc; 20]),
        topics: vec![TransferFilter::signature()],
        block_number: Some(5u64.into()),
        block_hash: Some(H256([0x05; 32])),
        transaction_hash: Some(H256([0xaa; 32])),
        log_index: Some(0u64.into()),
        ..Log::default()
    }];
    let err = decode_logs(&raw).expect_err("undecodable");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert!(
        err.to_string().contains("undecodable Transfer log: "),
        "{err}"
    );
    let source = err.source().expect("the ABI error is kept");
    let abi = source
        .downcast_ref::<ethers::abi::Error>()
        .expect("an ethers ABI error");
    assert!(err.to_string().ends_with(&abi.to_string()), "{err}");
}

#[tokio::test]
async fn a_transport_error_names_no_url_and_keeps_no_source() {
    use std::error::Error as _;
    // Nothing listens on port 1: the request fails with a reqwest error naming the URL.
    let url = "http://merit-user:merit-password@127.0.0.1:1/rpc-path-secret";
    let provider = Provider::<Http>::try_from(url).expect("a valid URL");
    let e = provider.get_block_number().await.expect_err("refused");
    assert!(matches!(e, ProviderError::HTTPError(_)), "{e:?}");
    assert!(
        format!("{e:?}").contains("127.0.0.1"),
        "the raw error names the URL"
    );
    let err = classify("head_block", &e);
    assert_eq!(err.class(), ErrorClass::Unavailable, "{err}");
    assert!(err.source().is_none(), "{err:?}");
    let shown = format!("{err} {err:?}");
    for secret in [
        "merit-user",
        "merit-password",
        "127.0.0.1",
        "rpc-path-secret",
    ] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[test]
fn transfer_logs_get_their_mint_achievement_and_sort_by_position() {
    let ach = Uuid::new_v4();
    let contract = H160([0xcc; 20]);
    let tx = H256([0xaa; 32]);
    let word = |v: U256| {
        let mut b = [0u8; 32];
        v.to_big_endian(&mut b);
        H256(b)
    };
    let addr_word = |a: H160| {
        let mut b = [0u8; 32];
        b[12..].copy_from_slice(&a.0);
        H256(b)
    };
    let base = |index: u64, topics: Vec<H256>| Log {
        address: contract,
        topics,
        block_number: Some(5u64.into()),
        block_hash: Some(H256([0x05; 32])),
        transaction_hash: Some(tx),
        log_index: Some(index.into()),
        ..Log::default()
    };
    let raw = vec![
        base(
            1,
            vec![
                AchievementMintedFilter::signature(),
                word(U256::from(8)),
                H256(achievement_to_bytes32(ach)),
            ],
        ),
        base(
            0,
            vec![
                TransferFilter::signature(),
                addr_word(H160::zero()),
                addr_word(H160([0x01; 20])),
                word(U256::from(8)),
            ],
        ),
    ];
    let logs = decode_logs(&raw).expect("decodable");
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].achievement_id, Some(ach));
    assert_eq!(logs[0].token_id.as_str(), "8");
    assert_eq!(logs[0].to, Address([0x01; 20]));
    assert_eq!(logs[0].position(), (5, 0));
}
