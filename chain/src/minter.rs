//! [`Minter`]: who signs the minter's transactions, and how the key is held.
//!
//! Three ways, one per deployment style:
//! - [`Minter::from_key`]: a plaintext hex key (development, tests; production only with
//!   an explicit override, enforced by the settings);
//! - [`Minter::from_keystore`]: an encrypted JSON keystore (Web3 Secret Storage v3, as
//!   geth writes it), decrypted at start with a password;
//! - [`Minter::external`]: a JSON-RPC signer (`eth_signTransaction`) that holds the key,
//!   which never enters merit; checked at start to answer and to hold the address.
//!
//! Nothing here ever prints a key, a password or a signer URL (it may carry
//! credentials): `Debug` shows the kind and the minter's address, errors a fixed text.

use std::{path::Path, time::Duration};

use ethers::{
    providers::{Http, Middleware, Provider, ProviderError},
    signers::{LocalWallet, Signer, WalletError},
    types::{transaction::eip2718::TypedTransaction, Bytes, H160},
    utils::rlp::Rlp,
};
use merit_config::Secret;
use merit_messages::Address;

use crate::error::{ChainError, Result};

/// How long the external signer may take to answer a call.
const SIGNER_TIMEOUT: Duration = Duration::from_secs(10);

/// The minter account: its address and what signs for it.
#[derive(Clone)]
pub struct Minter {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    /// The key is in this process (plaintext setting or decrypted keystore).
    Local {
        wallet: LocalWallet,
        kind: &'static str,
    },
    /// A JSON-RPC endpoint signs; the key stays there.
    External {
        provider: Provider<Http>,
        address: H160,
    },
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("kind", &self.kind())
            .field("address", &self.address())
            .finish()
    }
}

impl Minter {
    /// A minter from a plaintext private key (32 bytes as hex, `0x` optional).
    pub fn from_key(key: &Secret) -> Result<Self> {
        Ok(Self {
            inner: Inner::Local {
                wallet: wallet(key)?,
                kind: "key",
            },
        })
    }

    /// A minter from the encrypted JSON keystore at `path`, decrypted with `password`
    /// (scrypt or pbkdf2: CPU-heavy, so it runs off the async threads). A wrong password,
    /// an unreadable or malformed file is refused with a message naming the file and
    /// never the password.
    pub async fn from_keystore(path: &Path, password: &Secret) -> Result<Self> {
        let owned_path = path.to_path_buf();
        let password = password.clone();
        let decrypted = tokio::task::spawn_blocking(move || {
            LocalWallet::decrypt_keystore(&owned_path, password.expose_secret().as_bytes())
        })
        .await
        .map_err(|_| ChainError::permanent("minter", "keystore decryption was interrupted"))?;
        let shown = path.display();
        let wallet = decrypted.map_err(|e| {
            let why = match &e {
                WalletError::EthKeystoreError(k) => {
                    let text = k.to_string();
                    if text == "Mac Mismatch" {
                        "wrong password (the keystore's MAC does not match)".to_string()
                    } else if let Some(io) = text.strip_prefix("IO: ") {
                        format!("cannot read it: {io}")
                    } else {
                        format!("not a valid JSON keystore: {text}")
                    }
                }
                _ => "it does not hold a valid secp256k1 private key".to_string(),
            };
            ChainError::permanent("minter", format!("keystore {shown}: {why}"))
        })?;
        Ok(Self {
            inner: Inner::Local {
                wallet,
                kind: "keystore",
            },
        })
    }

    /// A minter whose transactions the JSON-RPC endpoint at `url` signs
    /// (`eth_signTransaction`) for `address`. Checks at once that the signer answers and
    /// holds `address` (`eth_accounts`); refused (unavailable or permanent) otherwise.
    pub async fn external(url: &str, address: Address) -> Result<Self> {
        let provider = Provider::<Http>::try_from(url).map_err(|_| {
            ChainError::permanent("minter", "the signer URL is not a valid http(s) URL")
        })?;
        let accounts: Vec<H160> =
            match tokio::time::timeout(SIGNER_TIMEOUT, provider.get_accounts()).await {
                Ok(Ok(accounts)) => accounts,
                Ok(Err(e)) => return Err(signer_error("minter", &e)),
                Err(_) => {
                    return Err(ChainError::unavailable(
                        "minter",
                        format!("the external signer did not answer within {SIGNER_TIMEOUT:?}"),
                    ))
                }
            };
        let address = H160(address.0);
        if !accounts.contains(&address) {
            return Err(ChainError::permanent(
                "minter",
                format!(
                    "the external signer does not hold the minter address {} (eth_accounts lists {} other account(s))",
                    Address(address.0),
                    accounts.len()
                ),
            ));
        }
        Ok(Self {
            inner: Inner::External { provider, address },
        })
    }

    /// The minter's address.
    pub fn address(&self) -> Address {
        match &self.inner {
            Inner::Local { wallet, .. } => Address(wallet.address().0),
            Inner::External { address, .. } => Address(address.0),
        }
    }

    /// `key`, `keystore` or `external signer`: for logs.
    pub fn kind(&self) -> &'static str {
        match &self.inner {
            Inner::Local { kind, .. } => kind,
            Inner::External { .. } => "external signer",
        }
    }

    pub(crate) fn with_chain_id(self, chain_id: u64) -> Self {
        match self.inner {
            Inner::Local { wallet, kind } => Self {
                inner: Inner::Local {
                    wallet: wallet.with_chain_id(chain_id),
                    kind,
                },
            },
            external => Self { inner: external },
        }
    }

    /// The signed, RLP-encoded `tx` (its `from`, nonce, gas, fees and chain id set), ready
    /// for `eth_sendRawTransaction`. An external signer's answer is checked: it must be
    /// this very transaction, signed by the minter's address.
    pub(crate) async fn sign(&self, op: &'static str, tx: &TypedTransaction) -> Result<Bytes> {
        match &self.inner {
            Inner::Local { wallet, .. } => {
                let signature = wallet
                    .sign_transaction(tx)
                    .await
                    .map_err(|_| ChainError::permanent(op, "signing failed"))?;
                Ok(tx.rlp_signed(&signature))
            }
            Inner::External { provider, address } => {
                let answer: serde_json::Value = match tokio::time::timeout(
                    SIGNER_TIMEOUT,
                    provider.request("eth_signTransaction", [tx]),
                )
                .await
                {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(e)) => return Err(signer_error(op, &e)),
                    Err(_) => {
                        return Err(ChainError::transient(
                            op,
                            format!("the external signer did not answer within {SIGNER_TIMEOUT:?}"),
                        ))
                    }
                };
                let raw = raw_of(&answer).ok_or_else(|| {
                    ChainError::permanent(
                        op,
                        "the external signer's answer to eth_signTransaction holds no raw transaction",
                    )
                })?;
                check_signed(op, tx, &raw, *address)?;
                Ok(raw)
            }
        }
    }
}

/// The raw transaction in an `eth_signTransaction` answer: a hex string (anvil) or an
/// object with `raw` (geth, clef).
fn raw_of(answer: &serde_json::Value) -> Option<Bytes> {
    let hex = match answer {
        serde_json::Value::String(s) => s.as_str(),
        serde_json::Value::Object(o) => o.get("raw")?.as_str()?,
        _ => return None,
    };
    hex.parse::<Bytes>().ok()
}

/// Refuses a signed transaction that is not `asked` or not signed by `address`.
fn check_signed(
    op: &'static str,
    asked: &TypedTransaction,
    raw: &Bytes,
    address: H160,
) -> Result<()> {
    let bad = |why: &str| ChainError::permanent(op, format!("the external signer returned {why}"));
    let (signed, signature) = TypedTransaction::decode_signed(&Rlp::new(raw))
        .map_err(|_| bad("an undecodable transaction"))?;
    if signed.sighash() != asked.sighash() {
        return Err(bad("a transaction other than the one asked for"));
    }
    match signature.recover(signed.sighash()) {
        Ok(signer) if signer == address => Ok(()),
        _ => Err(bad("a signature that is not the minter's")),
    }
}

/// An external signer's failure, without its URL: unreachable is
/// [`crate::ErrorClass::Unavailable`], a refusal permanent, the rest transient.
fn signer_error(op: &'static str, e: &ProviderError) -> ChainError {
    match e {
        ProviderError::HTTPError(re) if re.is_connect() => ChainError::unavailable(
            op,
            "the external signer is unreachable (connection refused or no route)",
        ),
        ProviderError::HTTPError(re) if re.is_timeout() => {
            ChainError::transient(op, "the external signer timed out")
        }
        ProviderError::JsonRpcClientError(inner) => match inner.as_error_response() {
            Some(rpc) => ChainError::permanent(
                op,
                format!(
                    "the external signer refused: {} (code {})",
                    rpc.message, rpc.code
                ),
            ),
            None => ChainError::transient(op, "the external signer's answer is not JSON-RPC"),
        },
        _ => ChainError::transient(op, "the external signer failed to answer"),
    }
}

pub(crate) fn wallet(key: &Secret) -> Result<LocalWallet> {
    let text = key.expose_secret();
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let mut bytes = [0u8; 32];
    let decoded = hex::decode_to_slice(digits, &mut bytes);
    let wallet = decoded
        .ok()
        .and_then(|()| LocalWallet::from_bytes(&bytes).ok());
    bytes.fill(0);
    wallet.ok_or_else(|| {
        ChainError::permanent(
            "connect",
            "the minter key is not a valid secp256k1 private key",
        )
    })
}

#[cfg(test)]
mod tests {
    use ethers::types::{Eip1559TransactionRequest, U256};

    use super::*;

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    fn tx(nonce: u64) -> TypedTransaction {
        Eip1559TransactionRequest::new()
            .to(H160([0xcc; 20]))
            .data(vec![1, 2, 3])
            .nonce(nonce)
            .gas(100_000u64)
            .max_fee_per_gas(U256::from(10))
            .max_priority_fee_per_gas(U256::from(1))
            .chain_id(31337u64)
            .into()
    }

    async fn signed(tx: &TypedTransaction) -> (Bytes, H160) {
        let wallet = wallet(&Secret::new(KEY))
            .expect("key")
            .with_chain_id(31337u64);
        let sig = wallet.sign_transaction(tx).await.expect("sign");
        (tx.rlp_signed(&sig), wallet.address())
    }

    #[tokio::test]
    async fn a_signer_answer_is_accepted_only_for_the_transaction_asked_signed_by_the_minter() {
        let asked = tx(7);
        let (raw, address) = signed(&asked).await;
        check_signed("mint", &asked, &raw, address).expect("the right answer");

        let (other, _) = signed(&tx(8)).await;
        let err = check_signed("mint", &asked, &other, address).expect_err("another tx");
        assert!(
            err.to_string().contains("other than the one asked for"),
            "{err}"
        );

        let err = check_signed("mint", &asked, &raw, H160([0x11; 20])).expect_err("not ours");
        assert!(err.to_string().contains("not the minter's"), "{err}");

        let err = check_signed("mint", &asked, &Bytes::from(vec![0xde, 0xad]), address)
            .expect_err("garbage");
        assert!(err.to_string().contains("undecodable"), "{err}");
    }

    #[test]
    fn the_raw_transaction_is_read_from_anvil_and_geth_answers() {
        let hex = "0x02f8";
        assert_eq!(
            raw_of(&serde_json::json!(hex)),
            Some(Bytes::from(vec![0x02, 0xf8]))
        );
        assert_eq!(
            raw_of(&serde_json::json!({ "raw": hex, "tx": {} })),
            Some(Bytes::from(vec![0x02, 0xf8]))
        );
        assert_eq!(raw_of(&serde_json::json!(42)), None);
        assert_eq!(raw_of(&serde_json::json!({ "tx": {} })), None);
    }

    #[test]
    fn debug_shows_the_kind_and_address_never_the_key() {
        let minter = Minter::from_key(&Secret::new(KEY)).expect("key");
        let text = format!("{minter:?}");
        assert!(
            text.contains("0x70997970c51812dc3a010c7d01b50e0d17dc79c8"),
            "{text}"
        );
        assert!(!text.contains(&KEY[2..]), "{text}");
    }
}
