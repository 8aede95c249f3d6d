//! The envelope decoder on arbitrary bytes: it returns an envelope or an error naming the
//! field, and never panics; what it accepts re-encodes to something it accepts again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use merit_messages::Envelope;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data) {
        let again = Envelope::decode(&envelope.to_json())
            .expect("an accepted envelope re-encodes to an accepted one");
        assert_eq!(again, envelope, "decode ∘ encode is the identity");
    }
});
