//! Users, created on their first request.

use std::{collections::HashMap, sync::Arc};

use sqlx::PgPool;
use tokio::sync::RwLock;
use uuid::Uuid;

/// Users remembered at most: anyone may send a new `X-User-ID` with every
/// request, and memory must not grow with them.
const CAPACITY: usize = 100_000;

/// Maps `X-User-ID` values to user ids. Users are never deleted, so a
/// resolved id stays valid and is kept in memory: most requests cost no
/// query for it.
#[derive(Debug, Clone, Default)]
pub struct Users {
    known: Arc<RwLock<HashMap<String, Uuid>>>,
}

impl Users {
    pub async fn resolve(&self, pool: &PgPool, external_id: &str) -> Result<Uuid, sqlx::Error> {
        if let Some(id) = self.known.read().await.get(external_id) {
            return Ok(*id);
        }
        let id = find_or_create(pool, external_id).await?;
        remember(&mut *self.known.write().await, CAPACITY, external_id, id);
        Ok(id)
    }
}

/// Full, the map starts over: forgetting costs one query per user, and
/// needs no bookkeeping of what was used when.
fn remember(known: &mut HashMap<String, Uuid>, capacity: usize, external_id: &str, id: Uuid) {
    if known.len() >= capacity {
        known.clear();
    }
    known.insert(external_id.to_owned(), id);
}

/// Race-free under concurrent first requests: the insert either creates the
/// row or, when another request just did, does nothing, and the select then
/// finds the committed row.
async fn find_or_create(pool: &PgPool, external_id: &str) -> Result<Uuid, sqlx::Error> {
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO users (user_external_id) VALUES ($1)
         ON CONFLICT (user_external_id) DO NOTHING
         RETURNING id",
    )
    .bind(external_id)
    .fetch_optional(pool)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        None => {
            sqlx::query_scalar("SELECT id FROM users WHERE user_external_id = $1")
                .bind(external_id)
                .fetch_one(pool)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_starts_over() {
        let mut known = HashMap::new();
        for user in ["a", "b", "c"] {
            remember(&mut known, 2, user, Uuid::new_v4());
        }
        assert_eq!(known.len(), 1);
        assert!(known.contains_key("c"));
    }
}
