//! Property tests: round trips, no panic on arbitrary or mutated bytes, stable derived ids.

use merit_messages::*;
use proptest::prelude::*;

use crate::strategies::arb_envelope;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn envelope_round_trips(env in arb_envelope()) {
        let bytes = env.to_json();
        let back = Envelope::decode(&bytes).expect("what merit encodes, it decodes");
        prop_assert_eq!(&back, &env);
        prop_assert_eq!(back.to_json(), bytes);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn decoder_never_panics_on_mutated_envelopes(env in arb_envelope(), cut in any::<usize>(), flip in any::<(usize, u8)>()) {
        let mut bytes = env.to_json();
        let i = flip.0 % bytes.len();
        bytes[i] ^= flip.1;
        let _ = Envelope::decode(&bytes);
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn derived_ids_are_stable(env in arb_envelope(), label in "[a-z]{1,10}") {
        let a = env.caused(&label, "x", env.event.clone());
        let b = env.caused(&label, "y", env.event.clone());
        prop_assert_eq!(a.id, b.id);
        prop_assert_eq!(a.correlation_id, env.correlation_id);
        prop_assert_eq!(a.causation_id, Some(env.id));
    }
}
