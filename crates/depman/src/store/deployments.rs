//! The `deployments` table: one row per identifier, holding the desired spec
//! depman last accepted and the live state the sync last saw.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool, QueryBuilder, types::Json};
use uuid::Uuid;

use super::paging::{Cursor, Page, push_page};
use crate::domain::{
    spec::DeploymentSpec,
    status::{DeploymentStatus, Health},
};

/// A row as the API reads it (also as an event keeps it: `to_jsonb` of the
/// row).
#[derive(Debug, Clone, FromRow, Deserialize)]
pub struct DeploymentRow {
    pub id: Uuid,
    pub identifier: String,
    pub name: String,
    pub namespace: String,
    pub image: String,
    pub status: DeploymentStatus,
    pub health: Health,
    pub health_reason: Option<String>,
    pub health_message: Option<String>,
    pub replicas: Option<i32>,
    pub ready_replicas: Option<i32>,
    pub available_replicas: Option<i32>,
    pub updated_replicas: Option<i32>,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub conditions: Json<Vec<Condition>>,
    pub resource_version: Option<String>,
    pub created_on: DateTime<Utc>,
    pub updated_on: DateTime<Utc>,
}

/// A condition of the Deployment, as Kubernetes reports it (stored as jsonb).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
}

const COLUMNS: &str = "id, identifier, name, namespace, image, status, health, health_reason, \
     health_message, replicas, \
     ready_replicas, available_replicas, updated_replicas, generation, observed_generation, \
     conditions, resource_version, created_on, updated_on";

/// The desired side of a deployment, locked until the transaction ends so
/// that requests for one identifier are numbered in acceptance order.
#[derive(Debug, FromRow)]
pub struct Desired {
    pub status: DeploymentStatus,
    pub spec: Json<DeploymentSpec>,
}

pub async fn lock(
    conn: &mut PgConnection,
    user_id: Uuid,
    identifier: &str,
) -> Result<Option<Desired>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, spec FROM deployments
         WHERE identifier = $1 AND user_id = $2
         FOR UPDATE",
    )
    .bind(identifier)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// Whether a CREATE of `identifier` by the user would find it taken: by
/// another user, or by a deployment of theirs that is not deleted or failed
/// (as `requests::insert_create` decides).
pub async fn taken(pool: &PgPool, user_id: Uuid, identifier: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM deployments WHERE identifier = $1
             AND (user_id <> $2 OR status NOT IN ('DELETED', 'FAILED')))",
    )
    .bind(identifier)
    .bind(user_id)
    .fetch_one(pool)
    .await
}

/// Holds the user's lock until the transaction ends: what a quota check
/// counts cannot change under it.
pub async fn lock_owner(conn: &mut PgConnection, user_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('depman-owner:' || $1::text, 0))")
        .bind(user_id)
        .execute(conn)
        .await
        .map(drop)
}

/// The user's deployments that are not deleted or failed.
pub async fn live_count(conn: &mut PgConnection, user_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM deployments
         WHERE user_id = $1 AND status NOT IN ('DELETED', 'FAILED')",
    )
    .bind(user_id)
    .fetch_one(conn)
    .await
}

/// Records a newly accepted desired spec (for an UPDATE, or the unchanged one
/// for a DELETE) and returns the request's sequence number. An accepted
/// UPDATE of an applied deployment makes it `UPDATING` until the sync sees it
/// rolled out.
pub async fn advance(
    conn: &mut PgConnection,
    identifier: &str,
    spec: &DeploymentSpec,
    updating: bool,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE deployments SET
             spec = $2, image = $3, last_sequence = last_sequence + 1, updated_on = clock_timestamp(),
             status = CASE WHEN $4 AND status IN ('CREATED', 'UPDATING') THEN 'UPDATING' ELSE status END
         WHERE identifier = $1
         RETURNING last_sequence",
    )
    .bind(identifier)
    .bind(Json(spec))
    .bind(&spec.image)
    .bind(updating)
    .fetch_one(conn)
    .await
}

/// Takes the worker's lock on an identifier for as long as the transaction
/// of `conn` lasts; false when another worker holds it. An advisory lock,
/// not a row lock: the API may go on accepting requests meanwhile.
pub async fn try_lock_for_work(
    conn: &mut PgConnection,
    identifier: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(identifier)
        .fetch_one(conn)
        .await
}

/// Whether the row of `identifier` is settled (`CREATED`) at `version`:
/// recorded from that very object, with no request of its own waiting.
pub async fn settled_at(
    pool: &PgPool,
    namespace: &str,
    identifier: &str,
    version: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM deployments
                        WHERE namespace = $1 AND identifier = $2
                          AND status = 'CREATED' AND resource_version = $3)",
    )
    .bind(namespace)
    .bind(identifier)
    .bind(version)
    .fetch_one(pool)
    .await
}

pub async fn find(
    pool: &PgPool,
    user_id: Uuid,
    identifier: &str,
) -> Result<Option<DeploymentRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM deployments WHERE user_id = $1 AND identifier = $2"
    )))
    .bind(user_id)
    .bind(identifier)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub status: Option<DeploymentStatus>,
    /// Part of the identifier.
    pub search: Option<String>,
}

/// The user's deployments, newest first, after `cursor`, with only the
/// filters given in the statement (see `requests::list`). A search is a
/// `LIKE` that the trigram index serves; its text holds only characters an
/// identifier can (`a-z`, `0-9`, `-`), so no wildcard of its own.
pub async fn list(
    pool: &PgPool,
    user_id: Uuid,
    filter: &Filter,
    after: Option<&Cursor>,
    limit: i64,
) -> Result<Page<DeploymentRow>, sqlx::Error> {
    let mut query = QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM deployments WHERE user_id = "
    ));
    query.push_bind(user_id);
    if let Some(namespace) = &filter.namespace {
        query.push(" AND namespace = ").push_bind(namespace);
    }
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status);
    }
    if let Some(search) = &filter.search {
        query
            .push(" AND identifier LIKE ")
            .push_bind(format!("%{search}%"));
    }
    push_page(&mut query, after, limit);
    let rows = query.build_query_as().fetch_all(pool).await?;
    Ok(Page::from_rows(rows, limit, |d: &DeploymentRow| {
        Cursor::new(d.created_on, d.id)
    }))
}

/// What one of a deployment's requests did to it, as far as its status goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    CreateFailed,
    Deleted,
    /// A failed CREATE put back in the queue by `depman dlq replay`.
    Requeued,
}

impl Outcome {
    /// The status it leads to, and the statuses it may leave: a late or
    /// repeated outcome never moves a row back.
    pub fn transition(self) -> (DeploymentStatus, &'static [DeploymentStatus]) {
        use DeploymentStatus::*;
        match self {
            // Applied: the rollout is the sync's to follow.
            Self::Created => (Updating, &[Initiated]),
            Self::CreateFailed => (Failed, &[Initiated]),
            Self::Deleted => (Deleted, &[Updating, Created]),
            Self::Requeued => (Initiated, &[Failed]),
        }
    }
}

/// Moves the deployment on by `outcome`; a row gone from the cluster is
/// also `MISSING`.
pub async fn record_outcome(
    db: impl PgExecutor<'_>,
    identifier: &str,
    outcome: Outcome,
) -> Result<(), sqlx::Error> {
    let (status, from) = outcome.transition();
    let health = status.is_gone().then_some(Health::Missing);
    sqlx::query(
        "UPDATE deployments SET status = $2, health = coalesce($3, health),
             health_reason = CASE WHEN $3 IS NULL THEN health_reason END,
             health_message = CASE WHEN $3 IS NULL THEN health_message END,
             updated_on = clock_timestamp()
         WHERE identifier = $1 AND status = ANY($4)",
    )
    .bind(identifier)
    .bind(status)
    .bind(health)
    .bind(from)
    .execute(db)
    .await?;
    Ok(())
}

/// The live state of a Deployment, as the sync read it.
#[derive(Debug, Clone)]
pub struct Live {
    pub image: Option<String>,
    pub status: DeploymentStatus,
    pub health: Health,
    /// Why it is `DEGRADED`, and Kubernetes' words for it.
    pub health_reason: Option<String>,
    pub health_message: Option<String>,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub updated_replicas: i32,
    pub generation: i64,
    pub observed_generation: i64,
    pub conditions: Vec<Condition>,
    pub resource_version: String,
    pub metadata: serde_json::Value,
}

/// Writes the live state of a Deployment depman manages. Returns false when
/// no row took it: an unknown Deployment (not adopted), a row already gone,
/// or one that holds a newer resource version (a late event never moves a
/// row back). An accepted request still waiting keeps the row `UPDATING`.
pub async fn record_live(
    db: impl PgExecutor<'_>,
    namespace: &str,
    identifier: &str,
    live: &Live,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE deployments SET
             image = coalesce($3, image),
             status = CASE WHEN EXISTS (
                     SELECT 1 FROM deployment_requests
                     WHERE identifier = $2 AND status = 'CREATED' AND request_type IN ('CREATE', 'UPDATE'))
                 THEN 'UPDATING' ELSE $4 END,
             health = $5, replicas = $6, ready_replicas = $7, available_replicas = $8,
             updated_replicas = $9, generation = $10, observed_generation = $11,
             conditions = $12, resource_version = $13, metadata = $14,
             health_reason = $15, health_message = $16, updated_on = clock_timestamp()
         WHERE namespace = $1 AND identifier = $2
           AND status IN ('INITIATED', 'UPDATING', 'CREATED')
           AND (resource_version IS NULL
                OR NOT ($13 ~ '^[0-9]+$' AND resource_version ~ '^[0-9]+$')
                OR $13::numeric >= resource_version::numeric)",
    )
    .bind(namespace)
    .bind(identifier)
    .bind(&live.image)
    .bind(live.status)
    .bind(live.health)
    .bind(live.replicas)
    .bind(live.ready_replicas)
    .bind(live.available_replicas)
    .bind(live.updated_replicas)
    .bind(live.generation)
    .bind(live.observed_generation)
    .bind(Json(&live.conditions))
    .bind(&live.resource_version)
    .bind(&live.metadata)
    .bind(&live.health_reason)
    .bind(&live.health_message)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Kubernetes no longer has the Deployment: a row whose CREATE was applied
/// becomes `DELETED` (an `INITIATED` one waits for its CREATE). Returns
/// whether a row changed.
pub async fn record_missing(
    db: impl PgExecutor<'_>,
    namespace: &str,
    identifier: &str,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE deployments SET status = 'DELETED', health = 'MISSING', health_reason = NULL,
             health_message = NULL, ready_replicas = 0,
             available_replicas = 0, updated_replicas = 0, updated_on = clock_timestamp()
         WHERE namespace = $1 AND identifier = $2 AND status IN ('UPDATING', 'CREATED')",
    )
    .bind(namespace)
    .bind(identifier)
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// The Deployments the database expects Kubernetes to have (their CREATE was
/// applied, and they were not deleted), in `namespaces` (all when empty).
pub async fn expected_present(
    db: impl PgExecutor<'_>,
    namespaces: &[String],
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT namespace, identifier FROM deployments
         WHERE status IN ('UPDATING', 'CREATED') AND (cardinality($1::text[]) = 0 OR namespace = ANY($1))",
    )
    .bind(namespaces)
    .fetch_all(db)
    .await
}
