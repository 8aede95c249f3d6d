//! Conversions between merit's string headers and AMQP field tables and properties.

use std::collections::BTreeMap;

use lapin::{
    types::{AMQPValue, FieldTable, ShortString},
    BasicProperties,
};

use crate::{
    error::{Error, Result},
    outgoing::Outgoing,
};

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// A short string (at most 255 bytes), or an error naming `what`.
pub(crate) fn short(what: &'static str, s: &str) -> Result<ShortString> {
    ShortString::try_new(s).map_err(|e| Error::invalid_from(what, s, e))
}

/// The properties merit publishes with: persistent, JSON, ids, string headers.
pub(crate) fn properties(msg: &Outgoing) -> Result<BasicProperties> {
    let mut headers = FieldTable::default();
    for (name, value) in &msg.headers {
        headers.insert(
            short("header name", name)?,
            AMQPValue::LongString(value.as_str().into()),
        );
    }
    let mut props = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type("application/json".into())
        .with_message_id(short("message id", &msg.message_id)?)
        .with_headers(headers);
    if let Some(c) = &msg.correlation_id {
        props = props.with_correlation_id(short("correlation id", c)?);
    }
    Ok(props)
}

/// String headers of a received message. Numbers and booleans are rendered in decimal /
/// `true`; nested tables and arrays (`x-death`) are left out.
pub(crate) fn headers(props: &BasicProperties) -> BTreeMap<String, String> {
    let Some(table) = props.headers() else {
        return BTreeMap::new();
    };
    table
        .inner()
        .iter()
        .filter_map(|(k, v)| value_text(v).map(|v| (k.as_str().to_string(), v)))
        .collect()
}

fn value_text(v: &AMQPValue) -> Option<String> {
    Some(match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        _ => return None,
    })
}

/// `x-delivery-count` (set by quorum queues on redelivery), 0 when absent.
pub(crate) fn delivery_count(headers: &BTreeMap<String, String>) -> u32 {
    headers
        .get("x-delivery-count")
        .and_then(|n| n.parse::<i64>().ok())
        .map(|n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_string_too_long_for_amqp_keeps_lapin_s_error_as_its_source() {
        let long = "x".repeat(300);
        let err = short("message id", &long).expect_err("too long");
        let text = err.to_string();
        assert!(text.starts_with("invalid message id "), "{text}");
        assert!(text.contains("255 bytes (got 300)"), "{text}");
        let source = err.source().expect("kept");
        assert!(
            source
                .downcast_ref::<lapin::types::ShortStringError>()
                .is_some(),
            "{source:?}"
        );
    }
}
