//! The dynamic config parser (tiers, limits, achievement rules) on arbitrary bytes: a
//! document is accepted or refused with a JSON path and a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use merit_config::DynamicConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = DynamicConfig::parse(data, 1) {
        // What was accepted is stored as its document, and that parses again.
        let document = serde_json::to_vec(&config.to_document()).expect("a document is JSON");
        DynamicConfig::parse(&document, 1).expect("an accepted document parses again");
    }
});
