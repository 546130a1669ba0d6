//! The `deployment_requests` table: what users asked for, in order.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool, QueryBuilder, types::Json};
use uuid::Uuid;

use super::paging::{Cursor, Page, push_page};
use crate::domain::{
    rollout::Rollout,
    spec::DeploymentSpec,
    status::{RequestStatus, RequestType},
};

/// A request as stored (also as an event keeps it: `to_jsonb` of the row).
#[derive(Debug, Clone, FromRow, serde::Deserialize)]
pub struct RequestRow {
    pub id: Uuid,
    /// The idempotency key it was made with (`X-Request-ID`).
    pub request_id: String,
    pub identifier: String,
    pub name: String,
    pub namespace: String,
    pub request_type: RequestType,
    pub status: RequestStatus,
    pub failure_reason: Option<String>,
    /// A stable code for the failure (`cancelled`, `invalid-object`, ...).
    pub failure_code: Option<String>,
    pub attempts: i32,
    pub image: String,
    pub spec: Json<DeploymentSpec>,
    pub created_on: DateTime<Utc>,
    pub updated_on: DateTime<Utc>,
    /// What the key was used for: a replay must match it.
    pub fingerprint: String,
    /// The rollout it started, once applied (CREATE and UPDATE only).
    pub rollout: Option<Json<Rollout>>,
    /// A rollback: the revision whose spec it re-applies.
    pub rolled_back_to: Option<i32>,
}

const COLUMNS: &str = "id, request_id, identifier, name, namespace, request_type, status, \
     failure_reason, failure_code, attempts, image, spec, created_on, updated_on, fingerprint, \
     rollout, rolled_back_to";

/// What a new request records; the rest comes from defaults.
pub struct NewRequest<'a> {
    pub key: &'a str,
    pub user_id: Uuid,
    pub request_type: RequestType,
    pub spec: &'a DeploymentSpec,
    pub sequence: i64,
    pub fingerprint: &'a str,
    /// A rollback: the revision it re-applies.
    pub rolled_back_to: Option<i32>,
}

/// Inserts the request unless the user already used its key; `None` then.
pub async fn insert(
    conn: &mut PgConnection,
    new: NewRequest<'_>,
) -> Result<Option<RequestRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO deployment_requests
             (request_id, user_id, identifier, name, namespace, request_type, image, spec, sequence,
              fingerprint, rolled_back_to)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT ON CONSTRAINT deployment_requests_user_request_id DO NOTHING
         RETURNING {COLUMNS}"
    )))
    .bind(new.key)
    .bind(new.user_id)
    .bind(&new.spec.identifier)
    .bind(&new.spec.name)
    .bind(&new.spec.namespace)
    .bind(new.request_type)
    .bind(&new.spec.image)
    .bind(Json(new.spec))
    .bind(new.sequence)
    .bind(new.fingerprint)
    .bind(new.rolled_back_to)
    .fetch_optional(conn)
    .await
}

/// The constraint a reused idempotency key violates.
pub const KEY_CONSTRAINT: &str = "deployment_requests_user_request_id";

/// Records a CREATE in one statement: reserves the identifier in
/// `deployments`, inserts the request numbered after the deployment's earlier
/// requests, and queues it in the outbox. An identifier whose deployment is
/// gone may be created again by its owner, and starts over as `INITIATED`.
/// `None` when the identifier is taken; a key the user already used fails
/// the whole statement on [`KEY_CONSTRAINT`], leaving nothing behind. One
/// statement across three tables, because this is the hot path of the API.
pub async fn insert_create(
    db: impl PgExecutor<'_>,
    key: &str,
    user_id: Uuid,
    spec: &DeploymentSpec,
    fingerprint: &str,
) -> Result<Option<RequestRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH reserved AS (
             INSERT INTO deployments (identifier, name, namespace, image, status, user_id, spec, last_sequence)
             VALUES ($1, $2, $3, $4, 'INITIATED', $5, $6, 1)
             ON CONFLICT (identifier) DO UPDATE SET
                 name = EXCLUDED.name, namespace = EXCLUDED.namespace, image = EXCLUDED.image,
                 status = 'INITIATED', health = 'MISSING', health_reason = NULL,
                 health_message = NULL, spec = EXCLUDED.spec,
                 last_sequence = deployments.last_sequence + 1,
                 resource_version = NULL, replicas = NULL, ready_replicas = NULL,
                 available_replicas = NULL, updated_replicas = NULL, generation = NULL,
                 observed_generation = NULL, conditions = '[]', metadata = '{{}}',
                 created_on = clock_timestamp(), updated_on = clock_timestamp()
             WHERE deployments.user_id = EXCLUDED.user_id
               AND deployments.status IN ('DELETED', 'FAILED')
             RETURNING last_sequence
         ),
         request AS (
             INSERT INTO deployment_requests
                 (request_id, user_id, identifier, name, namespace, request_type, image, spec, sequence, fingerprint)
             SELECT $7, $5, $1, $2, $3, 'CREATE', $4, $6, last_sequence, $8 FROM reserved
             RETURNING {COLUMNS}
         ),
         queued AS (INSERT INTO outbox (request_id) SELECT id FROM request)
         SELECT {COLUMNS} FROM request"
    )))
    .bind(&spec.identifier)
    .bind(&spec.name)
    .bind(&spec.namespace)
    .bind(&spec.image)
    .bind(user_id)
    .bind(Json(spec))
    .bind(key)
    .bind(fingerprint)
    .fetch_optional(db)
    .await
}

pub async fn find_by_key(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    key: &str,
) -> Result<Option<RequestRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM deployment_requests WHERE user_id = $1 AND request_id = $2"
    )))
    .bind(user_id)
    .bind(key)
    .fetch_optional(db)
    .await
}

pub async fn find(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<RequestRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM deployment_requests WHERE user_id = $1 AND id = $2"
    )))
    .bind(user_id)
    .bind(id)
    .fetch_optional(db)
    .await
}

/// True while a DELETE of the identifier waits to be carried out.
pub async fn delete_pending(
    conn: &mut PgConnection,
    identifier: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM deployment_requests
                        WHERE identifier = $1 AND request_type = 'DELETE' AND status = 'CREATED')",
    )
    .bind(identifier)
    .fetch_one(conn)
    .await
}

#[derive(Debug, Default)]
pub struct Filter {
    pub status: Option<RequestStatus>,
    pub request_type: Option<RequestType>,
    pub identifier: Option<String>,
    pub namespace: Option<String>,
}

/// The user's requests, newest first, after `cursor`. The statement holds
/// only the filters given: one with `status IS NULL OR ...` for every
/// filter gets a generic plan that no index on a filter can serve, which
/// read 5,000 rows for a page of rare failures (make bench-list).
pub async fn list(
    pool: &PgPool,
    user_id: Uuid,
    filter: &Filter,
    after: Option<&Cursor>,
    limit: i64,
) -> Result<Page<RequestRow>, sqlx::Error> {
    let mut query = QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM deployment_requests WHERE user_id = "
    ));
    query.push_bind(user_id);
    if let Some(status) = filter.status {
        query.push(" AND status = ").push_bind(status);
    }
    if let Some(request_type) = filter.request_type {
        query.push(" AND request_type = ").push_bind(request_type);
    }
    if let Some(identifier) = &filter.identifier {
        query.push(" AND identifier = ").push_bind(identifier);
    }
    if let Some(namespace) = &filter.namespace {
        query.push(" AND namespace = ").push_bind(namespace);
    }
    push_page(&mut query, after, limit);
    let rows = query.build_query_as().fetch_all(pool).await?;
    Ok(Page::from_rows(rows, limit, |r: &RequestRow| {
        Cursor::new(r.created_on, r.id)
    }))
}

/// An applied CREATE or UPDATE, numbered in the order the requests took
/// effect.
#[derive(Debug, Clone, FromRow)]
pub struct RevisionRow {
    #[sqlx(flatten)]
    pub request: RequestRow,
    pub revision: i64,
}

/// The applied CREATE and UPDATE requests of the user's deployment, as
/// numbered revisions (1 first); `before` and `limit` page them newest
/// first, `only` picks one.
pub async fn revisions(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    identifier: &str,
    before: Option<i64>,
    only: Option<i64>,
    limit: i64,
) -> Result<Vec<RevisionRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH revisions AS (
             SELECT {COLUMNS}, row_number() OVER (ORDER BY sequence) AS revision
             FROM deployment_requests
             WHERE identifier = $1 AND user_id = $2 AND status = 'SUCCESS'
               AND request_type IN ('CREATE', 'UPDATE')
         )
         SELECT * FROM revisions
         WHERE ($3::bigint IS NULL OR revision < $3) AND ($4::bigint IS NULL OR revision = $4)
         ORDER BY revision DESC
         LIMIT $5"
    )))
    .bind(identifier)
    .bind(user_id)
    .bind(before)
    .bind(only)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A request waiting for the worker, with what applying it needs.
#[derive(Debug, Clone, FromRow)]
pub struct Waiting {
    pub id: Uuid,
    pub identifier: String,
    pub namespace: String,
    pub request_type: RequestType,
    pub sequence: i64,
    pub attempts: i32,
    pub spec: Json<DeploymentSpec>,
    /// The owner's `X-User-ID`, for the Deployment's owner annotation.
    pub owner: String,
    /// The newest request of the identifier that succeeded.
    pub newest_success: Option<i64>,
}

/// The requests of `identifier` still waiting, up to `sequence`, oldest
/// first, each with the sequence number of the newest request of the
/// identifier that succeeded.
pub async fn waiting_up_to(
    db: impl PgExecutor<'_>,
    identifier: &str,
    sequence: i64,
) -> Result<Vec<Waiting>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.id, r.identifier, r.namespace, r.request_type, r.sequence, r.attempts, r.spec,
                u.user_external_id AS owner,
                (SELECT max(sequence) FROM deployment_requests
                 WHERE identifier = $1 AND status = 'SUCCESS') AS newest_success
         FROM deployment_requests r JOIN users u ON u.id = r.user_id
         WHERE r.identifier = $1 AND r.status = 'CREATED' AND r.sequence <= $2
         ORDER BY r.sequence",
    )
    .bind(identifier)
    .bind(sequence)
    .fetch_all(db)
    .await
}

/// Whether the CREATE that a request at `sequence` follows (the newest
/// CREATE before it) failed.
pub async fn create_failed_before(
    db: impl PgExecutor<'_>,
    identifier: &str,
    sequence: i64,
) -> Result<bool, sqlx::Error> {
    let status: Option<RequestStatus> = sqlx::query_scalar(
        "SELECT status FROM deployment_requests
         WHERE identifier = $1 AND request_type = 'CREATE' AND sequence < $2
         ORDER BY sequence DESC LIMIT 1",
    )
    .bind(identifier)
    .bind(sequence)
    .fetch_optional(db)
    .await?;
    Ok(status == Some(RequestStatus::Failure))
}

/// The newest waiting request of an identifier.
#[derive(Debug, FromRow)]
pub struct Newest {
    pub id: Uuid,
    pub identifier: String,
    pub sequence: i64,
}

/// For each identifier whose requests have all waited longer than
/// `older_than` with none of them in the outbox: its newest waiting request,
/// those that waited longest first.
pub async fn long_waiting(
    db: impl PgExecutor<'_>,
    older_than: std::time::Duration,
) -> Result<Vec<Newest>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, identifier, sequence FROM (
             SELECT DISTINCT ON (r.identifier) r.id, r.identifier, r.sequence, r.created_on
             FROM deployment_requests r
             WHERE r.status = 'CREATED'
               AND NOT EXISTS (
                   SELECT 1 FROM deployment_requests w
                   WHERE w.identifier = r.identifier AND w.status = 'CREATED'
                     AND (w.created_on > clock_timestamp() - $1
                          OR EXISTS (SELECT 1 FROM outbox o WHERE o.request_id = w.id)))
             ORDER BY r.identifier, r.sequence DESC
         ) newest
         ORDER BY created_on
         LIMIT 1000",
    )
    .bind(older_than)
    .fetch_all(db)
    .await
}

/// Ends a waiting request: `SUCCESS`, or `FAILURE` with its reason and
/// code, counting the attempt that ended it; it is no longer being applied.
/// False when it had already ended.
pub async fn finish(
    db: impl PgExecutor<'_>,
    id: Uuid,
    status: RequestStatus,
    failure: Option<(&str, &str)>,
) -> Result<bool, sqlx::Error> {
    let finished = sqlx::query(
        "UPDATE deployment_requests
         SET status = $2, failure_reason = $3, failure_code = $4, attempts = attempts + 1,
             applying_since = NULL, updated_on = clock_timestamp()
         WHERE id = $1 AND status = 'CREATED'",
    )
    .bind(id)
    .bind(status)
    .bind(failure.map(|(reason, _)| reason))
    .bind(failure.map(|(_, code)| code))
    .execute(db)
    .await?;
    Ok(finished.rows_affected() == 1)
}

/// Records the rollout an applied request started, and ends every older
/// rollout of the identifier still followed as `SUPERSEDED` (`rollout`
/// `None`: a DELETE, which starts none).
pub async fn start_rollout(
    conn: &mut PgConnection,
    id: Uuid,
    identifier: &str,
    sequence: i64,
    rollout: Option<&Rollout>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deployment_requests
         SET rollout = rollout || jsonb_build_object('state', 'SUPERSEDED', 'finished_on', clock_timestamp())
         WHERE identifier = $1 AND sequence < $2 AND rollout->>'state' = 'PROGRESSING'",
    )
    .bind(identifier)
    .bind(sequence)
    .execute(&mut *conn)
    .await?;
    if let Some(rollout) = rollout {
        sqlx::query("UPDATE deployment_requests SET rollout = $2 WHERE id = $1")
            .bind(id)
            .bind(Json(rollout))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The rollouts of `identifier` still followed (normally one), with their
/// request ids.
pub async fn progressing_rollouts(
    db: impl PgExecutor<'_>,
    identifier: &str,
) -> Result<Vec<(Uuid, Json<Rollout>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, rollout FROM deployment_requests
         WHERE identifier = $1 AND rollout->>'state' = 'PROGRESSING'",
    )
    .bind(identifier)
    .fetch_all(db)
    .await
}

/// Ends every rollout of `identifier` still followed as `FAILED` with
/// `reason` (its Deployment is gone).
pub async fn end_rollouts(
    db: impl PgExecutor<'_>,
    identifier: &str,
    reason: &str,
    message: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deployment_requests
         SET rollout = rollout || jsonb_build_object(
             'state', 'FAILED', 'reason', $2::text, 'message', $3::text, 'finished_on', clock_timestamp())
         WHERE identifier = $1 AND rollout->>'state' = 'PROGRESSING'",
    )
    .bind(identifier)
    .bind(reason)
    .bind(message)
    .execute(db)
    .await?;
    Ok(())
}

/// Records where a followed rollout stands; one that ended meanwhile
/// (superseded) is left as it is.
pub async fn record_rollout(
    db: impl PgExecutor<'_>,
    id: Uuid,
    rollout: &Rollout,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deployment_requests SET rollout = $2
         WHERE id = $1 AND rollout->>'state' = 'PROGRESSING'",
    )
    .bind(id)
    .bind(Json(rollout))
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a waiting request as being carried out, right before the worker
/// applies it; false when it no longer waits (cancelled meanwhile).
pub async fn start_applying(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    let started = sqlx::query(
        "UPDATE deployment_requests SET applying_since = clock_timestamp()
         WHERE id = $1 AND status = 'CREATED'",
    )
    .bind(id)
    .execute(db)
    .await?;
    Ok(started.rows_affected() == 1)
}

/// Why a request could not be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCancelled {
    Finished,
    Applying,
}

/// Ends a waiting request that no worker is carrying out as `FAILURE`
/// with `reason` and the code `cancelled`.
pub async fn cancel(
    db: impl PgExecutor<'_>,
    id: Uuid,
    reason: &str,
) -> Result<Result<(), NotCancelled>, sqlx::Error> {
    // The outer query sees the row as it was before the update.
    let (cancelled, status): (bool, RequestStatus) = sqlx::query_as(
        "WITH cancelled AS (
             UPDATE deployment_requests
             SET status = 'FAILURE', failure_reason = $2, failure_code = 'cancelled',
                 updated_on = clock_timestamp()
             WHERE id = $1 AND status = 'CREATED' AND applying_since IS NULL
             RETURNING id
         )
         SELECT EXISTS (SELECT 1 FROM cancelled), status FROM deployment_requests WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .fetch_one(db)
    .await?;
    Ok(match (cancelled, status) {
        (true, _) => Ok(()),
        (false, RequestStatus::Created) => Err(NotCancelled::Applying),
        (false, _) => Err(NotCancelled::Finished),
    })
}

/// Counts a failed attempt that will be retried, keeping its reason;
/// returns the attempts so far.
pub async fn count_attempt(
    db: impl PgExecutor<'_>,
    id: Uuid,
    reason: &str,
) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE deployment_requests
         SET attempts = attempts + 1, failure_reason = $2, applying_since = NULL,
             updated_on = clock_timestamp()
         WHERE id = $1
         RETURNING attempts",
    )
    .bind(id)
    .bind(reason)
    .fetch_one(db)
    .await
}

/// Puts a request that failed back in the queue, as if just accepted:
/// `CREATED`, no attempts, not being applied, and a new outbox row. False
/// when it is not `FAILURE` (already replayed, or never failed).
pub async fn requeue(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let requeued = sqlx::query(
        "UPDATE deployment_requests
         SET status = 'CREATED', attempts = 0, failure_reason = NULL, failure_code = NULL,
             applying_since = NULL, updated_on = clock_timestamp()
         WHERE id = $1 AND status = 'FAILURE'",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if requeued {
        super::outbox::enqueue(conn, id).await?;
    }
    Ok(requeued)
}
