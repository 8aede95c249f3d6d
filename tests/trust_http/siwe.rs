//! Sign-In with Ethereum: a wallet signs in once per nonce; stale, phished, foreign-chain,
//! forged and never-issued sign-ins are refused naming the check; sign-in has its own
//! budget.

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    common::{self, answer},
    harness::Node,
};

/// anvil's second dev key: the wallet that signs in.
const WALLET_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// anvil's third dev key: someone else.
const OTHER_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9e8eb35f6b6cf";
const DOMAIN: &str = "merit.test";

struct Siwe {
    domain: String,
    address: String,
    chain_id: u64,
    nonce: String,
    issued_at: chrono::DateTime<chrono::Utc>,
    expiration: Option<chrono::DateTime<chrono::Utc>>,
}

impl Siwe {
    fn text(&self) -> String {
        let mut text = format!(
            "{} wants you to sign in with your Ethereum account:\n{}\n\nSign in to merit.\n\n\
             URI: https://{DOMAIN}/login\nVersion: 1\nChain ID: {}\nNonce: {}\nIssued At: {}",
            self.domain,
            self.address,
            self.chain_id,
            self.nonce,
            self.issued_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        if let Some(exp) = self.expiration {
            text.push_str(&format!(
                "\nExpiration Time: {}",
                exp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        text
    }
}

async fn fresh_nonce(node: &Node) -> String {
    let (status, body) = answer(node.http.post(format!("{}/api/v1/auth/nonce", node.base))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let nonce = body["nonce"].as_str().expect("nonce").to_string();
    assert!(nonce.len() >= 8 && nonce.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(body["expires_at"].is_string(), "{body}");
    nonce
}

async fn login(
    node: &Node,
    message: &str,
    signer: &ethers::signers::LocalWallet,
) -> (StatusCode, Value) {
    use ethers::signers::Signer;
    let signature = signer.sign_message(message).await.expect("sign");
    answer(
        node.http
            .post(format!("{}/api/v1/auth/login", node.base))
            .json(&serde_json::json!({"message": message, "signature": format!("0x{signature}")})),
    )
    .await
}

fn refused(answer: &(StatusCode, Value), needle: &str) {
    assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], "unauthorized", "{}", answer.1);
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "{message:?} should name {needle:?}"
    );
}

/// The wallets of the sign-in test and the message it signs, as of `now`.
struct SignIn {
    wallet: ethers::signers::LocalWallet,
    other: ethers::signers::LocalWallet,
    address: String,
    now: chrono::DateTime<chrono::Utc>,
}

impl SignIn {
    fn new() -> Self {
        use ethers::signers::Signer;
        let wallet: ethers::signers::LocalWallet = WALLET_KEY.parse().expect("key");
        let address = ethers::utils::to_checksum(&wallet.address(), None);
        Self {
            wallet,
            other: OTHER_KEY.parse().expect("key"),
            address,
            now: chrono::Utc::now(),
        }
    }

    /// The wallet's sign-in message with `nonce`, valid for ten minutes.
    fn message(&self, nonce: String) -> Siwe {
        Siwe {
            domain: DOMAIN.to_string(),
            address: self.address.clone(),
            chain_id: 31337,
            nonce,
            issued_at: self.now,
            expiration: Some(self.now + chrono::Duration::minutes(10)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_wallet_signs_in_with_ethereum_once_per_nonce() {
    let node = Node::start("trust-siwe", &[("MERIT_HTTP_SIWE_DOMAIN", DOMAIN)]).await;
    let sign_in = SignIn::new();
    let (token, signed_in) = check_a_signed_in_token_reads_only_its_own_data(&node, &sign_in).await;
    // The same signed message again: its nonce is spent.
    refused(&login(&node, &signed_in, &sign_in.wallet).await, "Nonce");
    check_stale_phished_foreign_or_forged_sign_ins_are_refused(&node, &sign_in).await;
    check_sign_in_has_its_own_budget_per_client(&node, &token).await;
    node.stop().await;
}

/// The happy path: the token it returns reads the wallet's own data, not another's.
/// Returns the token and the message signed.
async fn check_a_signed_in_token_reads_only_its_own_data(
    node: &Node,
    sign_in: &SignIn,
) -> (String, String) {
    let lower = sign_in.address.to_lowercase();
    let signed_in = sign_in.message(fresh_nonce(node).await).text();
    let (status, body) = login(node, &signed_in, &sign_in.wallet).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["address"], lower.as_str());
    let token = body["token"].as_str().expect("token").to_string();
    let (status, body) = node.get_as(&format!("/api/v1/users/{lower}"), &token).await;
    assert!(
        status == StatusCode::OK || body["error"]["code"] == "not_found",
        "the token reads its own subject: {status} {body}"
    );
    let other = format!("/api/v1/users/{}", common::wallet(40));
    let (status, body) = node.get_as(&other, &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    (token, signed_in)
}

/// Expired, another domain or chain, another signer, a nonce never issued: refused naming
/// what is wrong; not an EIP-4361 message at all: 400.
async fn check_stale_phished_foreign_or_forged_sign_ins_are_refused(node: &Node, sign_in: &SignIn) {
    let (wallet, now) = (&sign_in.wallet, sign_in.now);
    // Expired.
    let mut expired = sign_in.message(fresh_nonce(node).await);
    expired.issued_at = now - chrono::Duration::minutes(20);
    expired.expiration = Some(now - chrono::Duration::minutes(10));
    refused(&login(node, &expired.text(), wallet).await, "expired");
    // Another domain (a phishing site relaying the user's signature).
    let mut phished = sign_in.message(fresh_nonce(node).await);
    phished.domain = "evil.test".to_string();
    refused(&login(node, &phished.text(), wallet).await, "domain");
    // Another chain.
    let mut other_chain = sign_in.message(fresh_nonce(node).await);
    other_chain.chain_id = 1;
    refused(&login(node, &other_chain.text(), wallet).await, "Chain ID");
    // Signed by another key than the address the message names.
    let forged = sign_in.message(fresh_nonce(node).await).text();
    refused(&login(node, &forged, &sign_in.other).await, "signature");
    // A nonce merit never issued.
    let never = sign_in.message("NeverIssued12345".to_string()).text();
    refused(&login(node, &never, wallet).await, "Nonce");
    // Not an EIP-4361 message: 400 naming what is wrong.
    let (status, body) = answer(
        node.http
            .post(format!("{}/api/v1/auth/login", node.base))
            .json(&serde_json::json!({"message": "hello", "signature": "0x00"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("message"));
}

/// Sign-in has its own budget per client (2/s, bursts of 20), far below the API's.
async fn check_sign_in_has_its_own_budget_per_client(node: &Node, token: &str) {
    let mut limited = None;
    for _ in 0..40 {
        let r = node
            .http
            .post(format!("{}/api/v1/auth/nonce", node.base))
            .send()
            .await
            .expect("send");
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r.json::<Value>().await.expect("json"));
            break;
        }
    }
    let limited = limited.expect("40 nonce requests in a row were never limited");
    assert!(
        limited["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("sign-in"),
        "{limited}"
    );
    let (status, body) = node.get_as("/api/v1/proposals", token).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the rest of the API is not limited by it: {body}"
    );
}
