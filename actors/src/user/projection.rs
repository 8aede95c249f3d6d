//! The user's projections: the `users` row, the unlocked achievements, the notifications
//! and the `benefits` row.

use chrono::{DateTime, Utc};
use merit_storage::{
    column::to_i64,
    entities::{achievement, benefit, notification, user},
    sea_orm::{sea_query::OnConflict, ActiveValue::Set},
    Rows,
};

use super::{UserEffects, UserState};
/// The `users` row: the counters and activity times.
pub(super) fn project_user(key: &str, state: &UserState, now: DateTime<Utc>, rows: &mut Rows) {
    let counters = serde_json::json!({
        "proposals_passed": state.proposals_passed,
        "nfts_held": state.holdings.len(),
        "longest_streak": state.facts.longest_streak(),
    });
    rows.insert(
        user::ActiveModel {
            address: Set(key.to_string()),
            proposals_created: Set(to_i64(state.proposals_created)),
            votes_cast: Set(to_i64(state.votes_cast)),
            counters: Set(counters),
            first_seen_at: Set(state.first_seen_at.unwrap_or(now)),
            last_active_at: Set(state.last_active_at.unwrap_or(now)),
        },
        Some(
            OnConflict::column(user::Column::Address)
                .update_columns([
                    user::Column::ProposalsCreated,
                    user::Column::VotesCast,
                    user::Column::Counters,
                    user::Column::LastActiveAt,
                ])
                .to_owned(),
        ),
    );
}

/// The `achievements` rows of the turn's unlocks (an unlock already stored stays as is).
pub(super) fn project_unlocks(
    key: &str,
    effects: &UserEffects,
    now: DateTime<Utc>,
    rows: &mut Rows,
) {
    rows.insert_many(
        effects
            .unlocks
            .iter()
            .map(|(u, at, correlation)| achievement::ActiveModel {
                id: Set(u.achievement_id.to_string()),
                correlation_id: Set(Some(correlation.to_string())),
                user: Set(key.to_string()),
                rule_id: Set(u.rule.to_string()),
                rule_version: Set(to_i64(u.rule_version)),
                tier: Set(u.tier.to_string()),
                token_id: Set(Some(u.token.to_string())),
                state: Set(achievement::AchievementState::Unlocked.as_str().to_string()),
                saga_id: Set(None),
                reason: Set(None),
                created_at: Set(*at),
                updated_at: Set(now),
            }),
        Some(
            OnConflict::column(achievement::Column::Id)
                .do_nothing()
                .to_owned(),
        ),
    );
}

/// The `notifications` rows the turn added to the user's log.
pub(super) fn project_notifications(key: &str, effects: &UserEffects, rows: &mut Rows) {
    // The version check makes `seq` this turn's alone; a conflict here can only be a
    // replay of this very turn.
    rows.insert_many(
        effects
            .notifications
            .iter()
            .map(|n| notification::ActiveModel {
                user: Set(key.to_string()),
                seq: Set(to_i64(n.seq)),
                event_id: Set(n.event_id.to_string()),
                kind: Set(n.kind.clone()),
                payload: Set(n.payload.clone()),
                created_at: Set(n.at),
            }),
        Some(
            OnConflict::columns([notification::Column::User, notification::Column::Seq])
                .do_nothing()
                .to_owned(),
        ),
    );
}

/// The `benefits` row after the holdings changed: `(multiplier, config version)` and the
/// held NFTs a vote reads.
pub(super) fn project_benefits(
    key: &str,
    state: &UserState,
    (multiplier, config_version): (u32, u64),
    now: DateTime<Utc>,
    rows: &mut Rows,
) {
    rows.insert(
        benefit::ActiveModel {
            user: Set(key.to_string()),
            multiplier_bps: Set(i64::from(multiplier)),
            boosting_nfts: Set(
                serde_json::to_value(state.held_nfts().tokens).unwrap_or(serde_json::Value::Null)
            ),
            config_version: Set(to_i64(config_version)),
            updated_at: Set(now),
        },
        Some(
            OnConflict::column(benefit::Column::User)
                .update_columns([
                    benefit::Column::MultiplierBps,
                    benefit::Column::ConfigVersion,
                    benefit::Column::BoostingNfts,
                    benefit::Column::UpdatedAt,
                ])
                .to_owned(),
        ),
    );
}
