//! Sign-In with Ethereum (EIP-4361): parsing the message a wallet signed and checking it
//! against this deployment (domain, URI origin, chain id, times) and its `personal_sign`
//! (EIP-191) signature. The nonce's single use is the caller's part (the database).
//!
//! ```text
//! merit.example wants you to sign in with your Ethereum account:
//! 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
//!
//! Sign in to merit.
//!
//! URI: https://merit.example
//! Version: 1
//! Chain ID: 31337
//! Nonce: 9fQk2LwPz7RbXc1M
//! Issued At: 2026-12-04T14:00:00Z
//! Expiration Time: 2026-12-04T14:10:00Z
//! ```

use std::str::FromStr;

use chrono::{DateTime, Utc};
use ethers::types::Signature;

/// The preamble's fixed part.
const PREAMBLE: &str = " wants you to sign in with your Ethereum account:";
/// Longest message read.
pub(crate) const MAX_MESSAGE_LEN: usize = 4096;
/// Longest nonce accepted (EIP-4361 asks at least 8 alphanumeric characters).
pub(crate) const MAX_NONCE_LEN: usize = 64;

/// A parsed EIP-4361 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SiweMessage {
    /// The RFC 3986 authority asking for the sign-in.
    pub domain: String,
    /// The signing account, lowercase `0x…`.
    pub address: String,
    /// The human-readable statement, when there is one.
    pub statement: Option<String>,
    /// The resource the sign-in is for.
    pub uri: String,
    /// Always `1`.
    pub version: String,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The server's nonce.
    pub nonce: String,
    /// When the message was made.
    pub issued_at: DateTime<Utc>,
    /// When it stops being valid.
    pub expiration_time: Option<DateTime<Utc>>,
    /// When it starts being valid.
    pub not_before: Option<DateTime<Utc>>,
}

/// What a message must match.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// The domain the message must name.
    pub domain: String,
    /// Allowed `scheme://authority` origins of its URI.
    pub origins: Vec<String>,
    /// merit's chain id.
    pub chain_id: u64,
    /// Clock skew tolerated on `Issued At` and `Not Before`, seconds.
    pub skew_secs: i64,
}

fn time(field: &str, value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("message: {field} is not an RFC 3339 time"))
}

/// The lines of a message, `\r\n` already made `\n`.
type Lines<'a> = std::iter::Peekable<std::str::Split<'a, char>>;

/// The fields EIP-4361 defines after the statement; any other is refused.
const KNOWN_FIELDS: [&str; 8] = [
    "URI",
    "Version",
    "Chain ID",
    "Nonce",
    "Issued At",
    "Expiration Time",
    "Not Before",
    "Request ID",
];

/// Parses `message`; the error names the line or field that is wrong.
pub(crate) fn parse(message: &str) -> Result<SiweMessage, String> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(format!("message: longer than {MAX_MESSAGE_LEN} bytes"));
    }
    let message = message.replace("\r\n", "\n");
    let mut lines = message.split('\n').peekable();
    let domain = domain(lines.next().unwrap_or_default())?;
    let address = parse_address(lines.next().unwrap_or_default().trim())?;
    let statement = statement(&mut lines);
    let fields = Fields::read(lines)?;
    let nonce = fields.nonce()?;
    Ok(SiweMessage {
        domain: domain.to_string(),
        address,
        statement,
        uri: fields.required("URI")?.to_string(),
        version: fields.required("Version")?.to_string(),
        chain_id: fields
            .required("Chain ID")?
            .parse()
            .map_err(|_| "message: Chain ID is not a whole number".to_string())?,
        nonce,
        issued_at: time("Issued At", fields.required("Issued At")?)?,
        expiration_time: fields.time("Expiration Time")?,
        not_before: fields.time("Not Before")?,
    })
}

/// The domain of the preamble line `<domain> wants you to sign in …`.
fn domain(first: &str) -> Result<&str, String> {
    let domain = first.strip_suffix(PREAMBLE).ok_or_else(|| {
        format!("message: the first line must be `<domain>{PREAMBLE}` (EIP-4361)")
    })?;
    // EIP-4361 allows an optional scheme before the domain.
    let domain = domain.split_once("://").map_or(domain, |(_, d)| d);
    if domain.is_empty() || domain.contains(char::is_whitespace) {
        return Err("message: the domain is empty or has spaces".to_string());
    }
    Ok(domain)
}

/// The optional statement between the address and the fields, skipping the blank lines
/// around it.
fn statement(lines: &mut Lines<'_>) -> Option<String> {
    let mut statement = None;
    while lines.peek().is_some_and(|l| l.is_empty()) {
        lines.next();
    }
    if let Some(line) = lines.peek() {
        if !line.starts_with("URI: ") {
            statement = Some(line.to_string());
            lines.next();
        }
    }
    while lines.peek().is_some_and(|l| l.is_empty()) {
        lines.next();
    }
    statement
}

/// The `Field: value` lines, in order.
struct Fields<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Fields<'a> {
    /// Reads the field lines up to `Resources:`, then checks the resource lines and that
    /// every field is one EIP-4361 defines.
    fn read(mut lines: Lines<'a>) -> Result<Self, String> {
        let mut fields = Vec::new();
        for line in lines.by_ref() {
            if line == "Resources:" {
                break;
            }
            if line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once(": ")
                .ok_or_else(|| format!("message: line `{}` is not `Field: value`", clip(line)))?;
            fields.push((key, value));
        }
        for line in lines {
            if !(line.is_empty() || line.starts_with("- ")) {
                return Err(format!(
                    "message: resource line `{}` does not start with `- `",
                    clip(line)
                ));
            }
        }
        if let Some((key, _)) = fields.iter().find(|(k, _)| !KNOWN_FIELDS.contains(k)) {
            return Err(format!("message: unknown field `{}`", clip(key)));
        }
        Ok(Self(fields))
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn required(&self, key: &str) -> Result<&'a str, String> {
        self.get(key)
            .ok_or_else(|| format!("message: `{key}:` is missing"))
    }

    /// An optional time field.
    fn time(&self, key: &str) -> Result<Option<DateTime<Utc>>, String> {
        self.get(key).map(|t| time(key, t)).transpose()
    }

    /// The nonce: 8 to [`MAX_NONCE_LEN`] letters and digits.
    fn nonce(&self) -> Result<String, String> {
        let nonce = self.required("Nonce")?.to_string();
        if nonce.len() < 8
            || nonce.len() > MAX_NONCE_LEN
            || !nonce.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(format!(
                "message: Nonce must be 8 to {MAX_NONCE_LEN} letters and digits"
            ));
        }
        Ok(nonce)
    }
}

fn clip(text: &str) -> String {
    merit_messages::quote_untrusted(&text.chars().take(60).collect::<String>())
}

/// `0x` + 40 hex digits, in one case or mixed case with a valid EIP-55 checksum; lowercase.
fn parse_address(text: &str) -> Result<String, String> {
    text.parse::<merit_messages::Address>()
        .map(|a| a.to_string())
        .map_err(|_| {
            "message: the second line must be the 0x address (40 hex digits; mixed case with a \
             valid EIP-55 checksum)"
                .to_string()
        })
}

/// `scheme://authority` of a URI, lowercase.
fn origin(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!scheme.is_empty() && !authority.is_empty()).then(|| {
        format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            authority.to_ascii_lowercase()
        )
    })
}

/// Checks `message` against `policy` at `now` (everything but the nonce's single use).
pub(crate) fn check(
    message: &SiweMessage,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<(), String> {
    if !message.domain.eq_ignore_ascii_case(&policy.domain) {
        return Err(format!(
            "message: domain {} is not this service's ({})",
            clip(&message.domain),
            policy.domain
        ));
    }
    match origin(&message.uri) {
        Some(o)
            if policy
                .origins
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(&o)) => {}
        _ => {
            return Err(format!(
                "message: URI {} is not on an allowed origin ({})",
                clip(&message.uri),
                policy.origins.join(", ")
            ))
        }
    }
    if message.version != "1" {
        return Err(format!(
            "message: Version must be 1, not {}",
            clip(&message.version)
        ));
    }
    if message.chain_id != policy.chain_id {
        return Err(format!(
            "message: Chain ID {} is not merit's chain ({})",
            message.chain_id, policy.chain_id
        ));
    }
    let skew = chrono::Duration::seconds(policy.skew_secs);
    if message.issued_at > now + skew {
        return Err("message: Issued At is in the future".to_string());
    }
    if message.expiration_time.is_some_and(|t| t <= now) {
        return Err("message: expired (Expiration Time has passed)".to_string());
    }
    if message.not_before.is_some_and(|t| t > now + skew) {
        return Err("message: not valid yet (Not Before is in the future)".to_string());
    }
    Ok(())
}

/// Whether `signature` (65 bytes hex) is `address`'s `personal_sign` of `message`.
pub(crate) fn verify_signature(
    message: &str,
    signature: &str,
    address: &str,
) -> Result<(), String> {
    let signature = Signature::from_str(signature.trim())
        .map_err(|_| "signature: expected 65 bytes as 0x + 130 hex digits".to_string())?;
    let recovered = signature
        .recover(message)
        .map_err(|_| "signature: no key recovers from it".to_string())?;
    let recovered = format!("{recovered:#x}");
    if recovered != address {
        return Err(format!(
            "signature: signed by {recovered}, not by the message's address {address}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ethers::signers::{LocalWallet, Signer};

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    fn policy() -> Policy {
        Policy {
            domain: "merit.example".into(),
            origins: vec!["https://merit.example".into()],
            chain_id: 31337,
            skew_secs: 60,
        }
    }

    fn message(address: &str, statement: bool) -> String {
        let statement = if statement {
            "Sign in to merit.\n\n"
        } else {
            ""
        };
        format!(
            "merit.example wants you to sign in with your Ethereum account:\n{address}\n\n\
             {statement}URI: https://merit.example/login\nVersion: 1\nChain ID: 31337\n\
             Nonce: abcdEFGH1234\nIssued At: 2026-12-04T14:00:00Z\n\
             Expiration Time: 2026-12-04T14:10:00Z"
        )
    }

    fn at(t: &str) -> DateTime<Utc> {
        time("t", t).expect("time")
    }

    #[test]
    fn a_message_parses_with_and_without_a_statement() {
        let wallet: LocalWallet = KEY.parse().expect("key");
        let address = ethers::utils::to_checksum(&wallet.address(), None);
        for with in [true, false] {
            let m = parse(&message(&address, with)).expect("parses");
            assert_eq!(m.domain, "merit.example");
            assert_eq!(m.address, format!("{:#x}", wallet.address()));
            assert_eq!(m.statement.is_some(), with);
            assert_eq!(m.chain_id, 31337);
            assert_eq!(m.nonce, "abcdEFGH1234");
            assert_eq!(m.expiration_time, Some(at("2026-12-04T14:10:00Z")));
            check(&m, &policy(), at("2026-12-04T14:05:00Z")).expect("valid");
        }
    }

    #[test]
    fn each_mismatch_is_named() {
        let address = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
        let m = parse(&message(address, true)).expect("parses");
        let now = at("2026-12-04T14:05:00Z");
        let refuse = |m: &SiweMessage, p: &Policy, now, needle: &str| {
            let e = check(m, p, now).expect_err(needle);
            assert!(e.contains(needle), "{e} should mention {needle}");
        };
        refuse(
            &m,
            &Policy {
                domain: "evil.example".into(),
                ..policy()
            },
            now,
            "domain",
        );
        refuse(
            &m,
            &Policy {
                origins: vec!["https://other".into()],
                ..policy()
            },
            now,
            "URI",
        );
        refuse(
            &m,
            &Policy {
                chain_id: 1,
                ..policy()
            },
            now,
            "Chain ID",
        );
        refuse(&m, &policy(), at("2026-12-04T14:10:00Z"), "expired");
        refuse(&m, &policy(), at("2026-12-04T13:50:00Z"), "Issued At");
        let e = parse(&message(address, true).replace("Nonce: abcdEFGH1234", "Nonce: short"))
            .expect_err("short nonce");
        assert!(e.contains("Nonce"), "{e}");
        let e = parse(&message(address, true).replace("Version: 1\n", "")).expect_err("no version");
        assert!(e.contains("Version"), "{e}");
        let e = parse("hello").expect_err("not SIWE");
        assert!(e.contains("first line"), "{e}");
        let bad_sum = "0x70997970C51812dc3a010C7d01b50e0d17dc79C9";
        assert!(parse(&message(bad_sum, true)).is_err());
    }

    #[tokio::test]
    async fn the_signature_must_recover_to_the_address() {
        let wallet: LocalWallet = KEY.parse().expect("key");
        let other: LocalWallet =
            "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9e8eb35f6b6cf"
                .parse()
                .expect("key");
        let address = format!("{:#x}", wallet.address());
        let text = message(&address, true);
        let sig = wallet.sign_message(&text).await.expect("sign");
        verify_signature(&text, &format!("0x{sig}"), &address).expect("recovers");
        let forged = other.sign_message(&text).await.expect("sign");
        let e = verify_signature(&text, &format!("0x{forged}"), &address).expect_err("other key");
        assert!(e.contains("not by"), "{e}");
        assert!(verify_signature(&text, "0x1234", &address).is_err());
        let tampered = text.replace("Chain ID: 31337", "Chain ID: 31338");
        assert!(verify_signature(&tampered, &format!("0x{sig}"), &address).is_err());
    }
}
