//! Pagination: every list takes `page` (from 1) and `page_size` (1-500, default 50) and
//! answers `{items, page, page_size, total}`.

use merit_storage::sea_orm::{
    DatabaseConnection, EntityTrait, FromQueryResult, PaginatorTrait, QuerySelect, Select,
};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, Result};

/// Default page size.
pub(crate) const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest page number.
pub(crate) const MAX_PAGE: u64 = 1_000_000;
/// Largest page size.
pub(crate) const MAX_PAGE_SIZE: u64 = 500;

/// Which page of a list.
#[derive(Debug, Clone, Copy, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Page number, 1-1000000 (default 1).
    #[param(minimum = 1, maximum = 1_000_000)]
    pub page: Option<u64>,
    /// Items per page, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u64>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) page: u64,
    pub(crate) page_size: u64,
}

impl Window {
    pub(crate) fn offset(&self) -> u64 {
        (self.page - 1) * self.page_size
    }
}

impl PageQuery {
    pub(crate) fn window(&self) -> Result<Window> {
        let page = self.page.unwrap_or(1);
        let page_size = self.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page == 0 || page > MAX_PAGE {
            return Err(ApiError::bad_request(format!(
                "page: {page} is out of range (1-{MAX_PAGE})"
            )));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(ApiError::bad_request(format!(
                "page_size: {page_size} is out of range (1-{MAX_PAGE_SIZE})"
            )));
        }
        Ok(Window { page, page_size })
    }
}

/// One window of `query` (already filtered and ordered) as DTOs, with the total count.
/// A row the DTO refuses (a stored state outside its enum) fails the whole page with the
/// DTO's error: a page is never served with a row left out or spelled wrong.
pub(crate) async fn fetch<E, T>(
    db: &DatabaseConnection,
    query: Select<E>,
    window: Window,
) -> Result<(Vec<T>, u64)>
where
    E: EntityTrait,
    E::Model: FromQueryResult + Send + Sync,
    T: TryFrom<E::Model>,
    ApiError: From<T::Error>,
{
    let total = query.clone().count(db).await?;
    let items = query
        .offset(window.offset())
        .limit(window.page_size)
        .all(db)
        .await?
        .into_iter()
        .map(|row| T::try_from(row).map_err(ApiError::from))
        .collect::<Result<_>>()?;
    Ok((items, total))
}

/// Declares a page type `$name` of `$item` (OpenAPI needs a concrete schema per list).
macro_rules! page_of {
    ($name:ident, $item:ty, $what:literal) => {
        #[doc = concat!("A page of ", $what, ".")]
        #[derive(Debug, serde::Serialize, utoipa::ToSchema)]
        pub(crate) struct $name {
            /// The items on this page.
            pub items: Vec<$item>,
            /// This page, from 1.
            pub page: u64,
            /// Page size used.
            pub page_size: u64,
            /// How many match in all.
            pub total: u64,
        }

        impl $name {
            pub(crate) fn new(
                items: Vec<$item>,
                window: crate::pagination::Window,
                total: u64,
            ) -> Self {
                Self {
                    items,
                    page: window.page,
                    page_size: window.page_size,
                    total,
                }
            }
        }
    };
}
pub(crate) use page_of;
