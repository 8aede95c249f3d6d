//! Leases: which executor drives a saga. A node claims a saga with one conditional
//! `UPDATE` (free, expired, or already its own), renews it while it works, and every
//! state change it writes is fenced on still holding it — so two nodes never drive one
//! saga at once, and a node that lost its lease (paused past the TTL) writes nothing.
//!
//! Lease times come from each node's clock: clocks must agree to well within the TTL.
//! Node ids must be unique among live processes (a restarted node may reuse its id and
//! then reclaims its own leases at once instead of waiting for them to expire).

use std::time::Duration;

use chrono::{DateTime, Utc};
use merit_storage::{
    entities::saga,
    sea_orm::{sea_query::Condition, ColumnTrait, EntityTrait, QueryFilter, Set},
    Store,
};

use crate::{error::Result, id::SagaId, state::SagaState};

pub(crate) fn until(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

/// Claims `id` for `owner` for `ttl` if it is active and its lease is free, expired or
/// already `owner`'s. Returns whether `owner` holds it now.
pub async fn try_claim(store: &Store, id: SagaId, owner: &str, ttl: Duration) -> Result<bool> {
    let (id, owner) = (id.to_string(), owner.to_string());
    let n = store
        .write(move |txn| {
            Box::pin(async move {
                let now = Utc::now();
                let res = saga::Entity::update_many()
                    .set(saga::ActiveModel {
                        lease_owner: Set(Some(owner.clone())),
                        lease_until: Set(Some(until(now, ttl))),
                        ..Default::default()
                    })
                    .filter(saga::Column::Id.eq(id))
                    .filter(saga::Column::State.is_in([
                        SagaState::Running.as_str(),
                        SagaState::Compensating.as_str(),
                    ]))
                    .filter(
                        Condition::any()
                            .add(saga::Column::LeaseOwner.is_null())
                            .add(saga::Column::LeaseUntil.is_null())
                            .add(saga::Column::LeaseUntil.lt(now))
                            .add(saga::Column::LeaseOwner.eq(owner)),
                    )
                    .exec(txn)
                    .await?;
                Ok(res.rows_affected)
            })
        })
        .await?;
    Ok(n == 1)
}

/// Extends `owner`'s lease on `id`; `false` if another node holds it now.
pub async fn renew(store: &Store, id: SagaId, owner: &str, ttl: Duration) -> Result<bool> {
    let (id, owner) = (id.to_string(), owner.to_string());
    let n = store
        .write(move |txn| {
            Box::pin(async move {
                let res = saga::Entity::update_many()
                    .set(saga::ActiveModel {
                        lease_until: Set(Some(until(Utc::now(), ttl))),
                        ..Default::default()
                    })
                    .filter(saga::Column::Id.eq(id))
                    .filter(saga::Column::LeaseOwner.eq(owner))
                    .exec(txn)
                    .await?;
                Ok(res.rows_affected)
            })
        })
        .await?;
    Ok(n == 1)
}

/// Gives up `owner`'s lease on `id` (no effect if another node holds it).
pub async fn release(store: &Store, id: SagaId, owner: &str) -> Result<bool> {
    let (id, owner) = (id.to_string(), owner.to_string());
    let n = store
        .write(move |txn| {
            Box::pin(async move {
                let res = saga::Entity::update_many()
                    .set(saga::ActiveModel {
                        lease_owner: Set(None),
                        lease_until: Set(None),
                        ..Default::default()
                    })
                    .filter(saga::Column::Id.eq(id))
                    .filter(saga::Column::LeaseOwner.eq(owner))
                    .exec(txn)
                    .await?;
                Ok(res.rows_affected)
            })
        })
        .await?;
    Ok(n == 1)
}
