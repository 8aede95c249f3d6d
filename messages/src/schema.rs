//! JSON Schema (draft 2020-12) of each event's envelope, generated from the same types the
//! decoder uses, so the published schemas cannot drift from what merit accepts.

use schemars::{generate::SchemaSettings, JsonSchema};
use serde_json::{json, Value};

use crate::{envelope::Wire, events::EventType};

/// The schema of the envelope carrying a `P` as `payload` with `type` fixed to `event_type`.
pub(crate) fn envelope_schema<P: JsonSchema>(event_type: EventType) -> Value {
    let generator = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    let mut schema = generator.into_root_schema_for::<Wire<P>>().to_value();
    schema["$id"] = json!(format!("urn:merit:event:{}:v1", event_type.as_str()));
    schema["title"] = json!(event_type.as_str());
    schema["properties"]["type"] = json!({"const": event_type.as_str(), "description": "Event type, equal to the AMQP routing key."});
    schema["properties"]["version"] = json!({"const": 1, "description": "Payload schema version."});
    schema
}

/// Every event's schema, keyed by file name (`governance.vote.cast.v1.json`).
pub fn all_schemas() -> Vec<(String, Value)> {
    EventType::ALL
        .iter()
        .map(|t| (format!("{}.v1.json", t.as_str()), t.envelope_schema()))
        .collect()
}
