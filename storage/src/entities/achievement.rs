//! Achievements and their lifecycle: unlocked, reserved, minted or failed
//! ([`AchievementState`], the one spelling of each state).

use sea_orm::entity::prelude::*;

/// One unlock of one rule for one user.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "achievements")]
pub struct Model {
    /// Deterministic achievement id (uuid, text form).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Lowercase 0x address of the user.
    pub user: String,
    /// The rule met.
    pub rule_id: String,
    /// Config version the rule was evaluated under.
    pub rule_version: i64,
    /// Tier of the NFT it mints.
    pub tier: String,
    /// The token reserved / minted for it.
    pub token_id: Option<String>,
    /// Its [`AchievementState`], spelled by [`AchievementState::as_str`].
    pub state: String,
    /// The saga minting it, if started.
    pub saga_id: Option<String>,
    /// The correlation id of the event that unlocked it: its unlock saga runs under it.
    pub correlation_id: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last state change.
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Where an achievement is: unlocked by a rule (the UserActor writes it), reserved by its
/// unlock saga, then minted on chain, or failed (the saga compensated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AchievementState {
    /// A rule was met; no saga has reserved it yet.
    Unlocked,
    /// Its unlock saga is minting it.
    Reserved,
    /// Its NFT is on chain and registered.
    Minted,
    /// The mint was refused for good and compensated.
    Failed,
}

impl AchievementState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 4] = [Self::Unlocked, Self::Reserved, Self::Minted, Self::Failed];

    /// The column's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unlocked => "unlocked",
            Self::Reserved => "reserved",
            Self::Minted => "minted",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for AchievementState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AchievementState {
    type Err = merit_messages::UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or(merit_messages::UnknownVariant)
    }
}

/// Lets a query filter or set the column with the enum itself.
impl From<AchievementState> for Value {
    fn from(state: AchievementState) -> Self {
        Value::from(state.as_str())
    }
}
