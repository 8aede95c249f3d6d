//! The anvil harness lives in `merit_testkit::anvil`; re-exported so the root tests keep
//! `common::anvil::Anvil`.

#[allow(unused_imports)] // each test binary uses its own part of the harness
pub use merit_testkit::anvil::*;
