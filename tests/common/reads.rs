//! What the tests read back from the store and the broker.

use merit_storage::Store;

use super::eventually;

/// Votes counted by all users' actors (the sum of `users.votes_cast`): the checker's
/// measure of lost (below the votes sent) and doubled (above) effects.
pub async fn votes_counted(store: &Store) -> i64 {
    use merit_storage::sea_orm::EntityTrait;
    merit_storage::entities::user::Entity::find()
        .all(store.db())
        .await
        .expect("read users")
        .iter()
        .map(|u| u.votes_cast)
        .sum()
}

/// Waits up to `secs` until every one of `tokens` NftActors has applied its mint and `hops`
/// transfers (version `hops + 1`), as [`nft_step`] publishes them.
pub async fn nft_chains_applied(store: &Store, tokens: u32, hops: u32, secs: u64) {
    use merit_storage::{
        entities::actor,
        sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter},
    };
    eventually(secs, "every NFT change applied", || {
        let db = store.db().clone();
        async move {
            actor::Entity::find()
                .filter(actor::Column::Kind.eq("nft"))
                .filter(actor::Column::Version.eq(i64::from(hops) + 1))
                .count(&db)
                .await
                .expect("count")
                == u64::from(tokens)
        }
    })
    .await;
}

/// The `user.holdings.changed` events the NftActors emitted (outbox rows).
pub async fn holdings_changes_emitted(store: &Store) -> u64 {
    use merit_storage::{
        entities::outbox,
        sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter},
    };
    outbox::Entity::find()
        .filter(outbox::Column::RoutingKey.eq("user.holdings.changed"))
        .count(store.db())
        .await
        .expect("count")
}

/// Every dead letter, wherever it is: recorded in the dead-letter table (any state, in
/// arrival order) or still in the queue, not yet taken by a node's recorder. One the
/// recorder holds between taking and committing is in neither for a moment, so callers
/// that expect some wait with [`eventually`].
pub async fn all_dead_letters<T: merit_mailbox::Transport + ?Sized>(
    transport: &T,
    store: &Store,
) -> Vec<merit_mailbox::DeadLetter> {
    let mut all: Vec<merit_mailbox::DeadLetter> = store
        .dead_letters(&merit_storage::DeadLetterFilter::default(), 0, 1_000_000)
        .await
        .expect("read the dead-letter table")
        .iter()
        .map(merit_supervisors::dead_letters::dead_letter_of)
        .collect();
    let queued = transport
        .dead_letters(100_000)
        .await
        .expect("peek the dead-letter queue");
    for dl in queued {
        if !all.iter().any(|d| d.id == dl.id) {
            all.push(dl);
        }
    }
    all
}

/// `user`'s "first-proposal" achievement row, if there is one.
pub async fn first_proposal_of(
    store: &Store,
    user: merit_messages::Address,
) -> Option<merit_storage::entities::achievement::Model> {
    use merit_storage::{
        entities::achievement,
        sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    };
    achievement::Entity::find()
        .filter(achievement::Column::User.eq(user.to_string()))
        .filter(achievement::Column::RuleId.eq("first-proposal"))
        .one(store.db())
        .await
        .expect("achievements")
}

/// The token an unlocked achievement row mints.
pub fn token_of(row: &merit_storage::entities::achievement::Model) -> merit_messages::TokenId {
    row.token_id
        .as_deref()
        .expect("an unlocked achievement has its token id")
        .parse()
        .expect("a token id")
}

/// How many outbox rows have `routing_key`.
pub async fn outbox_count(store: &Store, routing_key: &str) -> usize {
    use merit_storage::{
        entities::outbox,
        sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    };
    outbox::Entity::find()
        .filter(outbox::Column::RoutingKey.eq(routing_key))
        .all(store.db())
        .await
        .expect("outbox")
        .len()
}

/// Every user's projection row.
pub async fn users(store: &Store) -> Vec<merit_storage::entities::user::Model> {
    use merit_storage::sea_orm::EntityTrait;
    let all = merit_storage::entities::user::Entity::find().all(store.db());
    all.await.expect("read users")
}
