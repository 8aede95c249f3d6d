//! The checks of single keys' values: the node id and prefixes, addresses and proxy
//! lists, the SIWE domain and origins, URLs, secrets and the minter, log settings.

use std::net::SocketAddr;

use super::{Field, AMQP_SCHEMES, CHAIN_RPC_SCHEMES, DATABASE_SCHEMES, SECP256K1_ORDER};
use crate::{
    error::{ConfigError, Result},
    keys::DEV_DATABASE_URL,
    node_id::{is_node_id_char, NODE_ID_MAX_LEN},
    secret::{Secret, SecretUrl},
    settings::{LogFormat, MinterSource},
    source::Source,
};

pub(super) fn node_id(field: &Field<'_>) -> Result<String> {
    let value = field.required_text()?;
    if value.is_empty() || value.len() > NODE_ID_MAX_LEN || !value.chars().all(is_node_id_char) {
        return Err(field.invalid(
            "is not a valid node id",
            format!("1 to {NODE_ID_MAX_LEN} characters from A-Z a-z 0-9 . _ -"),
        ));
    }
    Ok(value.to_owned())
}

/// Redis key and channel names start with it: 1 to 64 of `A-Z a-z 0-9 : . _ -`.
pub(super) fn redis_prefix(field: &Field<'_>) -> Result<String> {
    let value = field.required_text()?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || ":._-".contains(c);
    if value.is_empty() || value.len() > 64 || !value.chars().all(allowed) {
        return Err(field.invalid(
            "is not a valid Redis key prefix",
            "1 to 64 characters from A-Z a-z 0-9 : . _ -",
        ));
    }
    Ok(value.to_owned())
}

pub(super) fn http_addr(field: &Field<'_>) -> Result<SocketAddr> {
    field
        .required_text()?
        .parse()
        .map_err(|_| field.invalid("is not a socket address", "host:port like 127.0.0.1:8080"))
}

pub(super) fn metrics_addr(field: &Field<'_>) -> Result<Option<SocketAddr>> {
    let Some(value) = field.optional_text()? else {
        return Ok(None);
    };
    value
        .parse()
        .map(Some)
        .map_err(|_| field.invalid("is not a socket address", "host:port like 127.0.0.1:9090"))
}

/// Whether `text` is an IP address or a CIDR block (`10.0.0.0/8`, `fd00::/8`).
pub(crate) fn is_ip_or_cidr(text: &str) -> bool {
    let (ip, prefix) = match text.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (text, None),
    };
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= max))
}

/// The non-empty, trimmed items of a comma-separated setting; empty when unset.
fn comma_list(field: &Field<'_>) -> Result<Vec<String>> {
    Ok(field
        .optional_text()?
        .map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

/// A comma-separated list of IP addresses and CIDR blocks; empty when unset.
pub(super) fn trusted_proxies(field: &Field<'_>) -> Result<Vec<String>> {
    let items = comma_list(field)?;
    if items.iter().any(|item| !is_ip_or_cidr(item)) {
        return Err(field.invalid(
            "is not a list of IP addresses and CIDR blocks",
            "comma-separated addresses or blocks like 10.0.0.0/8, 127.0.0.1, fd00::/8",
        ));
    }
    Ok(items)
}

/// Which forwarding header the trusted proxies write: `x-forwarded-for` or `forwarded`.
pub(super) fn forwarded_header(field: &Field<'_>) -> Result<String> {
    let value = field.required_text()?.to_ascii_lowercase();
    if value != "x-forwarded-for" && value != "forwarded" {
        return Err(field.invalid(
            "is not a forwarding header",
            "x-forwarded-for or forwarded (RFC 7239)",
        ));
    }
    Ok(value)
}

/// An RFC 3986 authority (`merit.example`, `localhost:8080`): no scheme, path or spaces.
pub(super) fn siwe_domain(field: &Field<'_>) -> Result<Option<String>> {
    let Some(value) = field.optional_text()? else {
        return Ok(None);
    };
    let ok = value.len() <= 253
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if !ok {
        return Err(field.invalid(
            "is not a domain",
            "a host with an optional port, like merit.example or localhost:8080",
        ));
    }
    Ok(Some(value.to_ascii_lowercase()))
}

/// A comma-separated list of `scheme://authority` origins.
pub(super) fn siwe_origins(field: &Field<'_>) -> Result<Vec<String>> {
    let items: Vec<String> = comma_list(field)?
        .iter()
        .map(|item| item.trim_end_matches('/').to_ascii_lowercase())
        .collect();
    let origin = |item: &String| {
        item.split_once("://").is_some_and(|(scheme, authority)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
                && !authority.is_empty()
                && !authority.contains(['/', '?', '#', ' '])
        })
    };
    if !items.iter().all(origin) {
        return Err(field.invalid(
            "is not a list of origins",
            "comma-separated scheme://host[:port] like https://merit.example",
        ));
    }
    Ok(items)
}

/// Checks that `value` is a URL with one of `schemes` and something after it.
fn url(field: &Field<'_>, value: &str, schemes: &[&str]) -> Result<SecretUrl> {
    let expected = format!("a URL starting with {}", one_of(schemes));
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(field.invalid("contains whitespace", expected));
    }
    let lower = value.to_ascii_lowercase();
    let Some(scheme) = schemes.iter().find(|scheme| lower.starts_with(*scheme)) else {
        return Err(field.invalid("is not a supported URL", expected));
    };
    if value.len() == scheme.len() {
        return Err(field.invalid("has nothing after the scheme", expected));
    }
    Ok(SecretUrl::new(value))
}

pub(super) fn database_url(field: &Field<'_>) -> Result<SecretUrl> {
    let value = field.required_text()?;
    let url = url(field, value, DATABASE_SCHEMES)?;
    if field.env.is_production() && value == DEV_DATABASE_URL {
        return Err(ConfigError::DevelopmentDatabaseInProduction {
            default: DEV_DATABASE_URL,
        });
    }
    Ok(url)
}

pub(super) fn optional_url(field: &Field<'_>, schemes: &[&str]) -> Result<Option<SecretUrl>> {
    field
        .optional_text()?
        .map(|value| url(field, value, schemes))
        .transpose()
}

/// One broker address, or several nodes of one cluster separated by commas: each must be
/// an AMQP URL.
pub(super) fn amqp_urls(field: &Field<'_>) -> Result<Option<SecretUrl>> {
    let Some(value) = field.optional_text()? else {
        return Ok(None);
    };
    let parts = merit_messages::split_url_list(value);
    if parts.len() > MAX_AMQP_ADDRESSES {
        return Err(field.invalid(
            "lists too many addresses",
            format!("at most {MAX_AMQP_ADDRESSES} comma-separated AMQP URLs"),
        ));
    }
    for part in parts {
        url(field, part, AMQP_SCHEMES)?;
    }
    Ok(Some(SecretUrl::new(value)))
}

/// Most broker addresses `MERIT_AMQP_URL` may list.
const MAX_AMQP_ADDRESSES: usize = 16;

pub(super) fn admin_token(field: &Field<'_>) -> Result<Secret> {
    let value = field.required_text()?;
    if value.is_empty() {
        return Err(field.invalid("is empty", "a non-empty token"));
    }
    field.refuse_development_value(value, str::to_owned)?;
    if field.env.is_production() && value.chars().count() < 16 {
        return Err(field.invalid("is too short", "at least 16 characters in production"));
    }
    Ok(Secret::new(value))
}

pub(super) fn jwt_secret(field: &Field<'_>) -> Result<Secret> {
    let value = field.required_text()?;
    if value.is_empty() {
        return Err(field.invalid("is empty", "a non-empty secret"));
    }
    field.refuse_development_value(value, str::to_owned)?;
    if field.env.is_production() && value.len() < 32 {
        return Err(field.invalid("is too short", "at least 32 bytes in production"));
    }
    Ok(Secret::new(value))
}

fn minter_key(field: &Field<'_>) -> Result<Secret> {
    let value = field.required_text()?;
    let digits = normalize_hex_key(value);
    if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(field.invalid(
            "is not a 32-byte hex private key",
            "64 hex digits, optionally prefixed with 0x",
        ));
    }
    if digits.bytes().all(|b| b == b'0') || digits.as_str() >= SECP256K1_ORDER {
        return Err(field.invalid(
            "is not a valid secp256k1 private key",
            "a nonzero key below the secp256k1 group order",
        ));
    }
    field.refuse_development_value(value, normalize_hex_key)?;
    Ok(Secret::new(value))
}

/// `true` or `false` (any case).
pub(super) fn boolean(field: &Field<'_>) -> Result<bool> {
    let value = field.required_text()?;
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(field.invalid("is not a boolean", "true or false"))
    }
}

/// Whether the operator set this key (a built-in default does not count).
fn configured(field: &Field<'_>) -> Result<bool> {
    Ok(!matches!(field.source(), Source::Default) && field.optional_text()?.is_some())
}

/// Exactly one source of the minter key: a keystore (path + password), an external
/// signer (URL + address) or a plaintext key — the built-in development key when none
/// is set, outside production. Production refuses a plaintext key unless `allow` is
/// `true`.
pub(super) fn minter(
    key: &Field<'_>,
    keystore: &Field<'_>,
    password: &Field<'_>,
    signer: &Field<'_>,
    address: &Field<'_>,
    allow: &Field<'_>,
) -> Result<MinterSource> {
    let chosen: Vec<&Field<'_>> = [key, keystore, signer]
        .into_iter()
        .map(|f| configured(f).map(|set| set.then_some(f)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    if let [first, second, ..] = chosen.as_slice() {
        return Err(ConfigError::ConflictingMinterSources {
            first: first.name(),
            second: second.name(),
        });
    }
    // The companions of a source are meaningless (and a likely mistake) without it.
    for (companion, of) in [(password, keystore), (address, signer)] {
        if configured(companion)? && !configured(of)? {
            return Err(ConfigError::IncompleteMinterSource {
                set: companion.name(),
                missing: of.key.var,
            });
        }
    }
    if configured(keystore)? {
        let path = keystore.required_text()?;
        let password = password
            .optional_text()?
            .ok_or(ConfigError::IncompleteMinterSource {
                set: keystore.name(),
                missing: "MERIT_MINTER_KEYSTORE_PASSWORD_FILE",
            })?;
        return Ok(MinterSource::Keystore {
            path: path.into(),
            password: Secret::new(password),
        });
    }
    if configured(signer)? {
        let url = url(signer, signer.required_text()?, CHAIN_RPC_SCHEMES)?;
        let value = address
            .optional_text()?
            .ok_or(ConfigError::IncompleteMinterSource {
                set: signer.name(),
                missing: "MERIT_MINTER_ADDRESS",
            })?;
        if !is_address(value) {
            return Err(address.invalid("is not an address", "0x followed by 40 hex digits"));
        }
        return Ok(MinterSource::Signer {
            url,
            address: value.to_owned(),
        });
    }
    if key.env.is_production() && key.raw.is_none() {
        return Err(ConfigError::MissingMinter);
    }
    let secret = minter_key(key)?;
    if key.env.is_production() && !boolean(allow)? {
        return Err(ConfigError::PlaintextMinterKeyInProduction {
            name: key.name(),
            origin: key.source(),
        });
    }
    Ok(MinterSource::Key(secret))
}

fn is_address(value: &str) -> bool {
    value.len() == 42
        && value.starts_with("0x")
        && value[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A hex key without its `0x` prefix, in lower case.
fn normalize_hex_key(value: &str) -> String {
    let digits = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
        .unwrap_or(value);
    digits.to_ascii_lowercase()
}

pub(super) fn contract_address(field: &Field<'_>) -> Result<Option<String>> {
    let Some(value) = field.optional_text()? else {
        return Ok(None);
    };
    if !is_address(value) {
        return Err(field.invalid("is not a contract address", "0x followed by 40 hex digits"));
    }
    Ok(Some(value.to_owned()))
}

pub(super) fn log_format(field: &Field<'_>) -> Result<LogFormat> {
    let value = field.required_text()?;
    [LogFormat::Text, LogFormat::Json]
        .into_iter()
        .find(|format| format.as_str().eq_ignore_ascii_case(value))
        .ok_or_else(|| field.invalid("is not a log format", "text or json"))
}

pub(super) fn log_filter(field: &Field<'_>) -> Result<String> {
    let value = field.required_text()?;
    if value.trim().is_empty() {
        return Err(field.invalid(
            "is empty",
            "a filter such as info or info,merit_mailbox=debug",
        ));
    }
    Ok(value.to_owned())
}

/// `a:, b:// or c://` for messages.
fn one_of(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [only] => (*only).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}
