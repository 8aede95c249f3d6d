//! The AchievementUnlock saga: an `achievement.unlocked` becomes an NFT on chain.
//!
//! Steps (each idempotent under its saga id):
//! 1. **reserve** — the achievement row goes `unlocked` → `reserved` (this saga's).
//!    Compensation: the row goes `failed` with the reason and `achievement.failed` is
//!    emitted (an operator may retry the saga).
//! 2. **mint** — `mint(user, token, achievement)` on chain; the token id is derived from
//!    the achievement, so a re-run can never create a second token. The step completes only
//!    once the transaction has the configured confirmations (it stays `awaiting` until
//!    then: the token must be the user's `confirmations` blocks deep, whichever transaction
//!    minted it); a transaction still unmined `DROP_GRACE_BLOCKS` blocks after it was sent,
//!    or dropped by a reorg, is sent again (same token id, so never a second token). An
//!    unreachable RPC endpoint keeps it waiting without spending attempts; a revert (e.g.
//!    the minter role revoked) fails it for good. Compensation: burn the token if it exists
//!    and the user still holds it — the chain checks the owner in the burn transaction
//!    itself (`burnFrom`), so a token passed on meanwhile is never burned.
//! 3. **register** — waits until the NftActor has the token with the user as owner (the
//!    chain listener publishes the mint as `nft.minted`; the NftActor then updates the
//!    user's holdings and benefits). No compensation: a burn flows the same way.
//! 4. **confirm** — the row goes `minted` with its token and `achievement.minted` is
//!    emitted (the notification), in one transaction.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use merit_chain::Chain;
use merit_messages::{
    AchievementFailed, AchievementMinted, Address, Envelope, EventId, RuleId, TokenId, TxHash,
};
use merit_storage::{
    entities::{
        achievement::{self, AchievementState},
        nft,
    },
    sea_orm::{sea_query::Expr, ColumnTrait, EntityTrait, QueryFilter, QuerySelect},
    OutboxMessage, Store, Turn,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use merit_sagas::{RetryPolicy, SagaDefinition, SagaId, StepContext, StepDef, StepOutcome};

mod chain_steps;

use chain_steps::{burn, mint};

/// The saga kind.
pub const UNLOCK_KIND: &str = "achievement-unlock";

/// What an AchievementUnlock saga works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockData {
    /// The achievement.
    pub achievement_id: Uuid,
    /// Who unlocked it.
    pub user: Address,
    /// By which rule.
    pub rule: RuleId,
    /// The token to mint.
    pub token: TokenId,
}

/// The saga id of an achievement's unlock: one saga per achievement, ever.
pub fn unlock_saga_id(achievement: Uuid) -> SagaId {
    SagaId::derived(UNLOCK_KIND, &achievement.to_string())
}

/// What the unlock saga's steps use.
#[derive(Clone)]
pub struct UnlockDeps {
    /// The store (achievements, nfts, outbox).
    pub store: Store,
    /// The chain.
    pub chain: Arc<dyn Chain>,
    /// Confirmations a mint needs.
    pub confirmations: u64,
    /// How often an awaiting step re-checks.
    pub poll: Duration,
}

/// What the mint step knows of its transaction: its hash and the head block when it was
/// sent (to tell a pending transaction from a dropped one).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MintProgress {
    tx: Option<TxHash>,
    block: Option<u64>,
    /// The head when the chain first refused the mint while the token was not yet at the
    /// latest block: a transaction of ours may be pending (sent before a crash that lost
    /// its record), so the refusal is final only if it lasts.
    #[serde(default)]
    refused_at: Option<u64>,
}

/// The AchievementUnlock saga definition.
pub fn unlock_saga(deps: UnlockDeps) -> SagaDefinition {
    let deps = Arc::new(deps);
    let d = deps.clone();
    let reserve = StepDef::new("reserve", move |ctx: StepContext| {
        let d = d.clone();
        async move { reserve(&d, ctx).await }
    });
    let d = deps.clone();
    let reserve = reserve.compensate(move |ctx: StepContext| {
        let d = d.clone();
        async move { release(&d, ctx).await }
    });
    let d = deps.clone();
    let mint = StepDef::new("mint", move |ctx: StepContext| {
        let d = d.clone();
        async move { mint(&d, ctx).await }
    })
    .retry(RetryPolicy::exponential(
        5,
        Duration::from_millis(500),
        Duration::from_secs(30),
    ));
    let d = deps.clone();
    let mint = mint.compensate(move |ctx: StepContext| {
        let d = d.clone();
        async move { burn(&d, ctx).await }
    });
    let d = deps.clone();
    let register = StepDef::new("register", move |ctx: StepContext| {
        let d = d.clone();
        async move { register(&d, ctx).await }
    })
    .timeout(Duration::from_secs(30));
    let d = deps;
    let confirm = StepDef::new("confirm", move |ctx: StepContext| {
        let d = d.clone();
        async move { confirm(&d, ctx).await }
    });
    SagaDefinition::new(UNLOCK_KIND)
        .step(reserve)
        .step(mint)
        .step(register)
        .step(confirm)
}

fn storage_retry(e: impl std::fmt::Display) -> StepOutcome {
    StepOutcome::retry(format!("storage: {e}"))
}

/// The update moving achievement `id` from one of the states `from` to `to` (matching no
/// row when it is elsewhere); callers add the columns their step sets.
fn transition(
    id: &str,
    from: &'static [AchievementState],
    to: AchievementState,
) -> merit_storage::sea_orm::UpdateMany<achievement::Entity> {
    achievement::Entity::update_many()
        .col_expr(achievement::Column::State, Expr::value(to))
        .col_expr(achievement::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(achievement::Column::Id.eq(id))
        .filter(achievement::Column::State.is_in(from.iter().copied()))
}

async fn current_state(store: &Store, id: Uuid) -> merit_storage::Result<Option<String>> {
    Ok(achievement::Entity::find_by_id(id.to_string())
        .select_only()
        .column(achievement::Column::State)
        .into_tuple::<String>()
        .one(store.db())
        .await?)
}

async fn reserve(d: &UnlockDeps, ctx: StepContext) -> StepOutcome {
    let data: UnlockData = match ctx.data() {
        Ok(data) => data,
        Err(e) => return e.into(),
    };
    let saga = ctx.saga_id.to_string();
    let reserved = transition(
        &data.achievement_id.to_string(),
        &[
            AchievementState::Unlocked,
            AchievementState::Reserved,
            AchievementState::Failed,
        ],
        AchievementState::Reserved,
    )
    .col_expr(achievement::Column::SagaId, Expr::value(saga))
    .exec(d.store.db())
    .await
    .map(|r| r.rows_affected);
    match reserved {
        Ok(1) => StepOutcome::done_empty(),
        Ok(_) => match current_state(&d.store, data.achievement_id).await {
            Ok(Some(state)) if state == AchievementState::Minted.as_str() => {
                StepOutcome::done_empty()
            }
            Ok(Some(state)) => StepOutcome::fail(format!("achievement is {state}: not reservable")),
            Ok(None) => StepOutcome::fail("no such achievement"),
            Err(e) => storage_retry(e),
        },
        Err(e) => storage_retry(e),
    }
}

/// Compensation of `reserve`: the achievement is marked failed and `achievement.failed`
/// is emitted, in one transaction.
async fn release(d: &UnlockDeps, ctx: StepContext) -> StepOutcome {
    let data: UnlockData = match ctx.data() {
        Ok(data) => data,
        Err(e) => return e.into(),
    };
    let reason =
        "the NFT could not be minted; the reservation was released (an operator may retry)";
    let event = Envelope::with_id(
        EventId::named(&format!(
            "achievement-failed:{}:{}",
            data.achievement_id, ctx.saga_id
        )),
        UNLOCK_KIND,
        Utc::now(),
        AchievementFailed {
            user: data.user,
            achievement_id: data.achievement_id,
            rule: data.rule.clone(),
            reason: reason.to_string(),
        },
    );
    emit_with_state(
        d,
        &data,
        event,
        &[AchievementState::Reserved, AchievementState::Unlocked],
        AchievementState::Failed,
        Some(reason),
    )
    .await
}

/// Moves the achievement `from` → `to` and commits `event` to the outbox, atomically and
/// once (the event id is the turn's inbox key).
async fn emit_with_state(
    d: &UnlockDeps,
    data: &UnlockData,
    event: Envelope,
    from: &'static [AchievementState],
    to: AchievementState,
    reason: Option<&'static str>,
) -> StepOutcome {
    let id = data.achievement_id.to_string();
    let token = data.token.to_string();
    let turn = Turn {
        consumer: UNLOCK_KIND.to_string(),
        event_id: event.id,
        batched: Vec::new(),
        state: None,
        outbox: vec![OutboxMessage::from_envelope(&event)],
    };
    let result = d
        .store
        .commit_turn(turn, move |txn| {
            Box::pin(async move {
                let mut update = transition(&id, from, to);
                if to == AchievementState::Minted {
                    update = update.col_expr(achievement::Column::TokenId, Expr::value(token));
                }
                if let Some(reason) = reason {
                    update = update.col_expr(achievement::Column::Reason, Expr::value(reason));
                }
                update.exec(txn).await?;
                Ok(())
            })
        })
        .await;
    match result {
        Ok(_) => StepOutcome::done_empty(),
        Err(e) => storage_retry(e),
    }
}

async fn register(d: &UnlockDeps, ctx: StepContext) -> StepOutcome {
    let data: UnlockData = match ctx.data() {
        Ok(data) => data,
        Err(e) => return e.into(),
    };
    let row = nft::Entity::find_by_id(data.token.to_string())
        .one(d.store.db())
        .await;
    // Registered once the NftActor applied the mint; a later transfer (the user's to
    // make) may already have moved it on.
    match row {
        Ok(Some(_)) => StepOutcome::done_empty(),
        Ok(None) => StepOutcome::pending(serde_json::json!({"waiting": "nft.minted"}), d.poll),
        Err(e) => storage_retry(e),
    }
}

async fn confirm(d: &UnlockDeps, ctx: StepContext) -> StepOutcome {
    let data: UnlockData = match ctx.data() {
        Ok(data) => data,
        Err(e) => return e.into(),
    };
    let tx = ctx.output::<MintProgress>("mint").ok().and_then(|p| p.tx);
    let event = Envelope::with_id(
        EventId::named(&format!("achievement-minted:{}", data.achievement_id)),
        UNLOCK_KIND,
        Utc::now(),
        AchievementMinted {
            user: data.user,
            achievement_id: data.achievement_id,
            rule: data.rule.clone(),
            token: data.token.clone(),
            tx_hash: tx,
        },
    );
    emit_with_state(
        d,
        &data,
        event,
        &[AchievementState::Reserved],
        AchievementState::Minted,
        None,
    )
    .await
}

/// Starts an unlock saga for every achievement still `unlocked` without one (oldest
/// first, up to `limit`); returns how many were started. Idempotent: the saga id is
/// derived from the achievement, so every node may run this.
pub async fn start_pending_unlocks(
    executor: &merit_sagas::SagaExecutor,
    store: &Store,
    limit: u64,
) -> merit_sagas::Result<usize> {
    let rows = achievement::Entity::find()
        .filter(achievement::Column::State.eq(AchievementState::Unlocked))
        .filter(achievement::Column::SagaId.is_null())
        .limit(limit)
        .all(store.db())
        .await
        .map_err(merit_storage::StorageError::from)?;
    let mut started = 0;
    for row in rows {
        let (Ok(achievement_id), Ok(user), Ok(rule), Some(Ok(token))) = (
            row.id.parse::<Uuid>(),
            row.user.parse::<Address>(),
            row.rule_id.parse::<RuleId>(),
            row.token_id.as_deref().map(str::parse::<TokenId>),
        ) else {
            tracing::warn!(achievement = %row.id, "achievement row does not parse; not minting it");
            continue;
        };
        let id = unlock_saga_id(achievement_id);
        let data = UnlockData {
            achievement_id,
            user,
            rule,
            token,
        };
        // Under the correlation id of the event that unlocked it (a vote, say), so the saga
        // is found with that operation; rows from before it was kept use the saga id.
        let correlation = row
            .correlation_id
            .as_deref()
            .and_then(|c| c.parse::<Uuid>().ok())
            .unwrap_or(id.0);
        executor
            .start_correlated(UNLOCK_KIND, id, &data, correlation)
            .await?;
        achievement::Entity::update_many()
            .col_expr(achievement::Column::SagaId, Expr::value(id.to_string()))
            .filter(achievement::Column::Id.eq(row.id.clone()))
            .filter(achievement::Column::SagaId.is_null())
            .exec(store.db())
            .await
            .map_err(merit_storage::StorageError::from)?;
        started += 1;
    }
    Ok(started)
}

#[cfg(test)]
mod tests;
