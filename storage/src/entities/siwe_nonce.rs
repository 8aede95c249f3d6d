//! `siwe_nonces`: Sign-In with Ethereum nonces not yet used. A login deletes its nonce in
//! the statement that checks it (`DELETE … WHERE nonce = ? AND expires_at > now`), so a
//! nonce is consumed at most once however many nodes see the same message.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "siwe_nonces")]
pub struct Model {
    /// The nonce, alphanumeric.
    #[sea_orm(primary_key, auto_increment = false)]
    pub nonce: String,
    /// When it stops being accepted.
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
