//! The domain enums the API shows as strings (a proposal's status, a vote's choice, an
//! achievement's, a saga's and a dead letter's state): one list of spellings each, the
//! domain's own `ALL` and `as_str`, from which a filter is parsed, an error lists the
//! values and the OpenAPI schema takes its `enum`.

use std::borrow::Cow;

use merit_actors::ProposalStatus;
use merit_messages::VoteChoice;
use merit_sagas::SagaState;
use merit_storage::{entities::achievement::AchievementState, DeadLetterState};
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
    DeadLetterState => &DeadLetterState::ALL,
);

/// `raw` as a value of `T`, or a 400 naming `field`, the value and the values it takes.
pub(crate) fn parse<T: Spelled>(field: &str, raw: &str) -> Result<T> {
    T::all()
        .iter()
        .copied()
        .find(|v| v.spelling() == raw)
        .ok_or_else(|| {
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
}
