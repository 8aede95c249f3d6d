//! Trace context across the broker: the W3C `traceparent` (and `tracestate`) headers.
//!
//! Owns: reading a message's trace context into a span ([`follow`]) and writing the
//! current span's context into headers ([`inject`]), through OpenTelemetry's global text
//! map propagator. The binary installs the W3C trace-context propagator when tracing is
//! switched on (`MERIT_OTEL_ENDPOINT`); until then the propagator is a no-op, so these
//! read and write nothing and cost next to nothing.
//!
//! The path of one vote: the API (or a producer) publishes with `traceparent`; the shard
//! consumer's delivery span takes it as parent; the actor's turn span is that span's
//! child; the turn's outbox rows keep the turn's context in their headers; the relay's
//! span per row is its child and the relay publishes the headers as they are; the next
//! actor's delivery span takes them up again. So one trace id runs through both turns.

use std::collections::{BTreeMap, HashMap};

use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The headers that carry a trace context.
pub const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// Longest trace header value taken from a message (the W3C limits: `traceparent` is 55
/// characters, `tracestate` at most 32 members of at most 256).
const MAX_TRACE_HEADER: usize = 512;

struct Reader<'a>(&'a BTreeMap<String, String>);

impl Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| v.len() <= MAX_TRACE_HEADER)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct Writer<'a>(&'a mut HashMap<String, String>);

impl Injector for Writer<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
}

/// Makes `span` a child of the trace context in `headers` (a message's), if it carries
/// one; otherwise `span` stays where it is.
pub fn follow(span: &tracing::Span, headers: &BTreeMap<String, String>) {
    if span.is_disabled() || !TRACE_HEADERS.iter().any(|h| headers.contains_key(*h)) {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Reader(headers)));
    span.set_parent(parent);
}

/// The trace headers of `span`'s context (empty when tracing is off).
pub fn inject(span: &tracing::Span) -> HashMap<String, String> {
    let mut headers = HashMap::new();
    if span.is_disabled() {
        return headers;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut Writer(&mut headers))
    });
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_propagator_nothing_is_read_or_written() {
        let span = tracing::Span::none();
        let mut headers = BTreeMap::new();
        headers.insert(
            "traceparent".to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
        );
        follow(&span, &headers);
        assert!(inject(&span).is_empty());
    }
}
