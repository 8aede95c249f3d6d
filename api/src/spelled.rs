//! The domain enums the API shows as strings (a proposal's status, a vote's choice, an
//! achievement's, a saga's and a dead letter's state): one list of spellings each, the
//! domain's own `ALL` and `as_str`, from which a filter or a request field is parsed
//! ([`parse`], [`deserialize`]), a stored row's string is read back ([`stored`]), a DTO's
//! field is written ([`serialize`]), an error lists the values and the OpenAPI schema
//! takes its `enum`. The DTOs hold the enums themselves, so what they answer is one of the
//! values the schema lists.

use std::borrow::Cow;

use merit_actors::ProposalStatus;
use merit_messages::VoteChoice;
use merit_sagas::{SagaState, StepState};
use merit_storage::{entities::achievement::AchievementState, DeadLetterState};
use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
use utoipa::openapi::{
    schema::{ObjectBuilder, Schema, Type},
    RefOr,
};

use crate::error::{ApiError, Result};

/// A domain enum spelled as one of a fixed list of strings.
pub(crate) trait Spelled: Copy + 'static {
    /// Every value, in the order the API lists them.
    fn all() -> &'static [Self];

    /// The value's one spelling (as stored and as answered).
    fn spelling(self) -> &'static str;

    /// Every spelling, in order.
    fn spellings() -> Vec<&'static str> {
        Self::all().iter().map(|v| v.spelling()).collect()
    }
}

macro_rules! spelled {
    ($($enum:ty => $all:expr,)*) => {$(
        impl Spelled for $enum {
            fn all() -> &'static [Self] {
                $all
            }

            fn spelling(self) -> &'static str {
                self.as_str()
            }
        }
    )*};
}

spelled!(
    ProposalStatus => &ProposalStatus::ALL,
    VoteChoice => &VoteChoice::ALL,
    AchievementState => &AchievementState::ALL,
    SagaState => SagaState::ALL,
    StepState => StepState::ALL,
    DeadLetterState => &DeadLetterState::ALL,
);

/// The value of `T` spelled `raw`.
fn lookup<T: Spelled>(raw: &str) -> Option<T> {
    T::all().iter().copied().find(|v| v.spelling() == raw)
}

/// `raw` as a value of `T`, or a 400 naming `field`, the value and the values it takes.
pub(crate) fn parse<T: Spelled>(field: &str, raw: &str) -> Result<T> {
    lookup(raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{field}: {} is not one of {}",
            merit_messages::quote_untrusted(raw),
            T::spellings().join(", ")
        ))
    })
}

/// An optional filter value parsed with [`parse`].
pub(crate) fn filter<T: Spelled>(field: &str, raw: Option<&str>) -> Result<Option<T>> {
    raw.map(|raw| parse(field, raw)).transpose()
}

/// A request body's field `field` of `T`, read as a string and parsed with [`parse`], so a
/// value outside `T` fails with its message (naming the field and the values), not
/// serde's. A field's `deserialize_with` calls it with the field's name.
pub(crate) fn deserialize<'de, T: Spelled, D: Deserializer<'de>>(
    field: &str,
    deserializer: D,
) -> std::result::Result<T, D::Error> {
    let raw = String::deserialize(deserializer)?;
    parse(field, &raw).map_err(|e| D::Error::custom(e.message))
}

/// Writes a DTO's field of `T` as its spelling (`#[serde(serialize_with =
/// "spelled::serialize")]`): the answer spells it as the schema lists it, whatever the
/// enum's own `Serialize` (some have none).
pub(crate) fn serialize<T: Spelled, S: Serializer>(
    value: &T,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(value.spelling())
}

/// Column `column` of the `table` row `key`, stored as `raw`, read back as `T`: the one
/// place a row's string becomes the enum (the row → DTO conversions call it). A value
/// outside `T` is a corrupt row, never served: a 500 saying so (see
/// [`ApiError::corrupt_row`], which logs the row's key).
pub(crate) fn stored<T: Spelled>(table: &str, key: &str, column: &str, raw: &str) -> Result<T> {
    lookup(raw).ok_or_else(|| ApiError::corrupt_row(table, key, column, raw))
}

/// A string schema whose `enum` is `T`'s spellings.
fn schema_of<T: Spelled>(description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(T::spellings()))
        .description(Some(description))
        .into()
}

/// The OpenAPI schemas of the spelled enums, named as the components they become:
/// a field or parameter takes one with `value_type = spelled::Name`.
macro_rules! schemas {
    ($($name:ident($enum:ty) as $component:literal: $description:literal,)*) => {$(
        #[doc = $description]
        pub(crate) struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                schema_of::<$enum>($description)
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($component)
            }
        }
    )*};
}

schemas!(
    ProposalStatusName(ProposalStatus) as "ProposalStatus": "Where a proposal is in its lifecycle.",
    VoteChoiceName(VoteChoice) as "VoteChoice": "How a vote was cast.",
    AchievementStateName(AchievementState) as "AchievementState": "Where an achievement and its mint stand.",
    SagaStateName(SagaState) as "SagaState": "Where a saga stands.",
    StepStateName(StepState) as "SagaStepState": "Where a saga's step stands (its action, or its compensation).",
    DeadLetterStateName(DeadLetterState) as "DeadLetterState": "What became of a dead letter.",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_spelling_parses_and_an_unknown_one_names_the_field_and_the_values() {
        assert_eq!(
            parse::<ProposalStatus>("status", "active"),
            Ok(ProposalStatus::Active)
        );
        let e = parse::<ProposalStatus>("status", "sleeping").expect_err("not a status");
        assert_eq!(e.code, "bad_request");
        assert_eq!(
            e.message,
            "status: \"sleeping\" is not one of pending, active, succeeded, defeated, executed, cancelled"
        );
        assert!(parse::<AchievementState>("state", "").is_err());
        assert_eq!(filter::<SagaState>("state", None), Ok(None));
    }

    #[test]
    fn each_schema_lists_the_enum_s_spellings() {
        let json = |schema: RefOr<Schema>| serde_json::to_value(schema).unwrap_or_default();
        let status = json(<ProposalStatusName as utoipa::PartialSchema>::schema());
        assert_eq!(status["type"], "string");
        assert_eq!(
            status["enum"],
            serde_json::json!([
                "pending",
                "active",
                "succeeded",
                "defeated",
                "executed",
                "cancelled"
            ])
        );
        let choice = json(<VoteChoiceName as utoipa::PartialSchema>::schema());
        assert_eq!(
            choice["enum"],
            serde_json::json!(["for", "against", "abstain"])
        );
    }

    /// Every value of `T` written by [`serialize`] is its spelling.
    fn serialized_as_spelled<T: Spelled>() {
        for &v in T::all() {
            let mut out = Vec::new();
            serialize(&v, &mut serde_json::Serializer::new(&mut out)).expect("serialize");
            assert_eq!(out, format!("\"{}\"", v.spelling()).into_bytes());
        }
    }

    #[test]
    fn a_dto_field_is_written_as_its_spelling_which_is_the_enum_s_own_serde_spelling() {
        serialized_as_spelled::<ProposalStatus>();
        serialized_as_spelled::<VoteChoice>();
        serialized_as_spelled::<AchievementState>();
        serialized_as_spelled::<SagaState>();
        serialized_as_spelled::<StepState>();
        serialized_as_spelled::<DeadLetterState>();
        // The enums that have a Serialize of their own spell as `as_str` too, so the wire
        // is what it was when the DTOs held strings, and what the domain writes.
        for v in ProposalStatus::ALL {
            assert_eq!(serde_json::json!(v), v.as_str());
        }
        for v in VoteChoice::ALL {
            assert_eq!(serde_json::json!(v), v.as_str());
        }
        for v in SagaState::ALL.iter().copied() {
            assert_eq!(serde_json::json!(v), v.as_str());
        }
        for v in StepState::ALL.iter().copied() {
            assert_eq!(serde_json::json!(v), v.as_str());
        }
    }

    #[test]
    fn a_stored_spelling_reads_back_and_another_is_a_500_saying_the_row_is_corrupt() {
        assert_eq!(
            stored::<VoteChoice>("votes", "p-1/0xab", "choice", "against"),
            Ok(VoteChoice::Against)
        );
        let e = stored::<AchievementState>("achievements", "a-1", "state", "revoked")
            .expect_err("not a state");
        assert_eq!(e.status, actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code, "internal");
        assert!(
            e.message.contains("a stored row is corrupt"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("revoked"), "{}", e.message);
        assert!(stored::<DeadLetterState>("dead_letters", "d", "state", "Waiting").is_err());
    }

    #[derive(Debug, Deserialize)]
    struct Vote {
        #[serde(deserialize_with = "choice")]
        choice: VoteChoice,
    }

    fn choice<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<VoteChoice, D::Error> {
        deserialize("choice", d)
    }

    #[test]
    fn a_request_field_outside_its_enum_fails_with_the_message_naming_the_field_and_values() {
        let ok: Vote =
            serde_json::from_value(serde_json::json!({"choice": "abstain"})).expect("a choice");
        assert_eq!(ok.choice, VoteChoice::Abstain);
        let e = serde_json::from_value::<Vote>(serde_json::json!({"choice": "maybe"}))
            .expect_err("not a choice");
        assert_eq!(
            e.to_string(),
            "choice: \"maybe\" is not one of for, against, abstain"
        );
        assert!(serde_json::from_value::<Vote>(serde_json::json!({"choice": 1})).is_err());
    }
}
