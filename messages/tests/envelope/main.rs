//! Envelope decoding: round trips (property tests) and one test per bad-input class.
//!
//! - valid envelopes decode, with derived keys and normalised addresses, and every event
//!   type has a schema;
//! - input that is not an envelope at all is malformed: bad JSON, oversized, not an object;
//! - every other refusal names the field at fault, with its path;
//! - property tests: what merit encodes it decodes, arbitrary or mutated bytes never
//!   panic, derived ids are stable.
//!
//! One test binary, in modules by behaviour.

mod accepted;
mod fields;
mod harness;
mod malformed;
mod properties;
mod strategies;
