//! What operators and the dashboard see: a saga with its steps as a timeline, pages of
//! sagas filtered by state and kind, and counts per state. Reads only; no lease needed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use merit_storage::{
    entities::{saga, saga_step},
    sea_orm::{
        ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
        QuerySelect,
    },
    StorageError,
};
use serde::Serialize;
use serde_json::Value;

use crate::{
    error::Result,
    id::SagaId,
    state::{SagaState, StepState},
};

/// One saga, without its steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SagaSummary {
    /// Its id.
    pub id: SagaId,
    /// Its kind.
    pub kind: String,
    /// Where it stands.
    pub state: SagaState,
    /// The step being run or compensated (-1: compensation is through).
    pub current_step: i32,
    /// The request that started it.
    pub correlation_id: String,
    /// The last error (a step's failure, a compensation's, or why it could not run).
    pub last_error: Option<String>,
    /// Started.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Not driven before this (backoff, re-poll).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The node driving it, if any.
    pub lease_owner: Option<String>,
    /// Until when that node holds it.
    pub lease_until: Option<DateTime<Utc>>,
}

/// One step of a saga, as the timeline shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepView {
    /// Index (0-based).
    pub index: usize,
    /// Name.
    pub name: String,
    /// Where it stands.
    pub state: StepState,
    /// Attempts of the action.
    pub attempts: u32,
    /// Attempts of the compensation.
    pub compensation_attempts: u32,
    /// Last error of either.
    pub last_error: Option<String>,
    /// The action's output (final if done, the last pending report otherwise).
    pub output: Option<Value>,
    /// The compensation's last pending report.
    pub compensation_output: Option<Value>,
    /// First attempt.
    pub started_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Next retry or re-poll.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A saga with its data and its steps in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SagaView {
    /// The saga.
    #[serde(flatten)]
    pub saga: SagaSummary,
    /// Its data.
    pub data: Value,
    /// Its steps, in order.
    pub steps: Vec<StepView>,
}

/// Which sagas to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SagaFilter {
    /// Only in this state.
    pub state: Option<SagaState>,
    /// Only of this kind.
    pub kind: Option<String>,
    /// Only with this correlation id (the operation it belongs to).
    pub correlation_id: Option<String>,
}

/// One page of sagas, most recently changed first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SagaPage {
    /// The sagas on this page.
    pub items: Vec<SagaSummary>,
    /// How many match the filter in all.
    pub total: u64,
    /// This page (0-based).
    pub page: u64,
    /// Page size used.
    pub page_size: u64,
}

/// Largest page [`list`] returns.
pub const MAX_PAGE_SIZE: u64 = 500;

fn corrupt(what: &str, source: impl Into<merit_storage::Cause>) -> StorageError {
    StorageError::corrupt(what, source)
}

pub(crate) fn summary(m: &saga::Model) -> Result<SagaSummary> {
    Ok(SagaSummary {
        id: m
            .id
            .parse()
            .map_err(|e| corrupt(&format!("saga id {:?}", m.id), e))?,
        kind: m.kind.clone(),
        state: m.state.parse()?,
        current_step: m.current_step,
        correlation_id: m.correlation_id.clone(),
        last_error: m.last_error.clone(),
        created_at: m.created_at,
        updated_at: m.updated_at,
        next_attempt_at: m.next_attempt_at,
        lease_owner: m.lease_owner.clone(),
        lease_until: m.lease_until,
    })
}

fn step_view(m: &saga_step::Model) -> Result<StepView> {
    Ok(StepView {
        index: usize::try_from(m.step).map_err(|e| corrupt("saga step index", e))?,
        name: m.name.clone(),
        state: m.state.parse()?,
        attempts: u32::try_from(m.attempts).unwrap_or(0),
        compensation_attempts: u32::try_from(m.compensation_attempts).unwrap_or(0),
        last_error: m.last_error.clone(),
        output: m.output.clone(),
        compensation_output: m.compensation_output.clone(),
        started_at: m.started_at,
        updated_at: m.updated_at,
        next_attempt_at: m.next_attempt_at,
    })
}

/// The saga row and its step rows, in step order.
pub(crate) async fn load<C: ConnectionTrait>(
    conn: &C,
    id: SagaId,
) -> Result<Option<(saga::Model, Vec<saga_step::Model>)>> {
    let Some(s) = saga::Entity::find_by_id(id.to_string()).one(conn).await? else {
        return Ok(None);
    };
    let steps = saga_step::Entity::find()
        .filter(saga_step::Column::SagaId.eq(id.to_string()))
        .order_by_asc(saga_step::Column::Step)
        .all(conn)
        .await?;
    Ok(Some((s, steps)))
}

/// A saga and its timeline.
pub(crate) async fn get<C: ConnectionTrait>(conn: &C, id: SagaId) -> Result<Option<SagaView>> {
    let Some((s, steps)) = load(conn, id).await? else {
        return Ok(None);
    };
    Ok(Some(SagaView {
        saga: summary(&s)?,
        data: s.data.clone(),
        steps: steps.iter().map(step_view).collect::<Result<_>>()?,
    }))
}

/// Page `page` (0-based) of the sagas matching `filter`, most recently changed first.
pub(crate) async fn list<C: ConnectionTrait>(
    conn: &C,
    filter: &SagaFilter,
    page: u64,
    page_size: u64,
) -> Result<SagaPage> {
    let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
    let mut q = saga::Entity::find();
    if let Some(state) = filter.state {
        q = q.filter(saga::Column::State.eq(state.as_str()));
    }
    if let Some(kind) = &filter.kind {
        q = q.filter(saga::Column::Kind.eq(kind.as_str()));
    }
    if let Some(correlation) = &filter.correlation_id {
        q = q.filter(saga::Column::CorrelationId.eq(correlation.as_str()));
    }
    let pages = q
        .order_by_desc(saga::Column::UpdatedAt)
        .order_by_asc(saga::Column::Id)
        .paginate(conn, page_size);
    let total = pages.num_items().await?;
    let rows = pages.fetch_page(page).await?;
    Ok(SagaPage {
        items: rows.iter().map(summary).collect::<Result<_>>()?,
        total,
        page,
        page_size,
    })
}

/// How many sagas are in each state (every state present, zeros included), optionally of
/// one kind only.
pub(crate) async fn counts<C: ConnectionTrait>(
    conn: &C,
    kind: Option<&str>,
) -> Result<BTreeMap<SagaState, u64>> {
    let mut q = saga::Entity::find()
        .select_only()
        .column(saga::Column::State)
        .column_as(saga::Column::Id.count(), "n")
        .group_by(saga::Column::State);
    if let Some(kind) = kind {
        q = q.filter(saga::Column::Kind.eq(kind));
    }
    let rows: Vec<(String, i64)> = q.into_tuple().all(conn).await?;
    let mut out: BTreeMap<SagaState, u64> = SagaState::ALL.iter().map(|s| (*s, 0)).collect();
    for (state, n) in rows {
        *out.entry(state.parse()?).or_default() += merit_storage::column::to_u64(n);
    }
    Ok(out)
}
