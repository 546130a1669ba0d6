//! Accepting a request: one transaction records it, reserves or advances its
//! deployment (numbering the request among that deployment's requests) and
//! writes the outbox row that gets it carried out.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    domain::{
        FieldError, labels,
        spec::{DeploymentInput, DeploymentPatch, DeploymentSpec, merge_patch},
        status::RequestType,
        workload::check_env_name,
    },
    policy::Policy,
    store::{
        deployments, outbox,
        requests::{self, NewRequest, RequestRow},
    },
};

/// What identifies a deployment: a PATCH cannot change it.
const FIXED_FIELDS: [&str; 3] = ["name", "namespace", "identifier"];

#[derive(Debug)]
pub enum Accepted {
    New(RequestRow),
    /// The key was used before for the same request: the original, as it is now.
    Replayed(RequestRow),
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("the input is not valid")]
    Invalid(Vec<FieldError>),
    #[error("the idempotency key was used for a different request")]
    KeyReused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Not allowed to this user, with the problem's code.
    #[error("{1}")]
    Forbidden(&'static str, String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Who asks, and with which idempotency key.
#[derive(Debug, Clone, Copy)]
pub struct Asker<'a> {
    pub user_id: Uuid,
    /// The user as the caller named them, and their groups, for the
    /// namespace policy.
    pub name: &'a str,
    pub groups: &'a [String],
    pub key: &'a str,
}

pub async fn create(
    pool: &PgPool,
    asker: Asker<'_>,
    input: DeploymentInput,
    policy: &Policy,
) -> Result<Accepted, AcceptError> {
    let fingerprint = fingerprint("CREATE", &serde_json::to_value(&input).unwrap_or_default());
    let generated = input.identifier.is_none();
    let spec = input
        .validate(generated_identifier)
        .map_err(AcceptError::Invalid)?;
    check_namespace(policy, asker, &spec.namespace)?;
    let new = NewCreate {
        asker,
        spec,
        generated,
        fingerprint: &fingerprint,
    };
    let inserted = match policy.max_deployments {
        None => insert_create(&mut *pool.acquire().await?, new).await?,
        Some(max) => {
            // Counting and inserting under the user's lock: concurrent
            // CREATEs of one user cannot both take the last place.
            let mut tx = pool.begin().await?;
            deployments::lock_owner(&mut tx, asker.user_id).await?;
            // Looked up under the lock: a retry of the CREATE that took the
            // last place is its replay, not over the quota.
            if let Some(earlier) = requests::find_by_key(&mut *tx, asker.user_id, asker.key).await?
            {
                return replay(earlier, &fingerprint);
            }
            check_quota(&mut tx, asker, max).await?;
            let inserted = insert_create(&mut tx, new).await?;
            if matches!(inserted, Inserted::Done(_)) {
                tx.commit().await?;
            }
            inserted
        }
    };
    match inserted {
        Inserted::Done(accepted) => Ok(accepted),
        // The connection is back in the pool before the lookup takes one:
        // a handler never holds one connection while waiting for another.
        Inserted::KeyTaken(error) => match earlier_request(pool, asker).await? {
            Some(earlier) => replay(earlier, &fingerprint),
            None => Err(AcceptError::Database(error)),
        },
    }
}

/// A CREATE to insert.
struct NewCreate<'a> {
    asker: Asker<'a>,
    spec: DeploymentSpec,
    /// The identifier was drawn, not given: another may be drawn.
    generated: bool,
    fingerprint: &'a str,
}

/// What inserting a CREATE came to.
#[allow(clippy::large_enum_variant)] // returned once per CREATE, never stored
enum Inserted {
    Done(Accepted),
    /// A concurrent request with the same key committed first: the caller
    /// looks it up once this connection (whose transaction, if any, failed)
    /// is released.
    KeyTaken(sqlx::Error),
}

/// Inserts the CREATE on `conn`. The hot path is one statement; a reused
/// key or a taken identifier is sorted out afterwards.
async fn insert_create(
    conn: &mut sqlx::PgConnection,
    new: NewCreate<'_>,
) -> Result<Inserted, AcceptError> {
    let NewCreate {
        asker,
        mut spec,
        generated,
        fingerprint,
    } = new;
    for _ in 0..GENERATION_ATTEMPTS {
        let inserted =
            requests::insert_create(&mut *conn, asker.key, asker.user_id, &spec, fingerprint).await;
        match inserted {
            Ok(Some(request)) => return Ok(Inserted::Done(Accepted::New(request))),
            // The identifier is taken: by an earlier use of this key, by
            // someone else, or by chance.
            Ok(None) => match requests::find_by_key(&mut *conn, asker.user_id, asker.key).await? {
                Some(earlier) => return replay(earlier, fingerprint).map(Inserted::Done),
                None if generated => {
                    // The caller did not choose the identifier: draw another.
                    spec.identifier = generated_identifier(&spec.name);
                }
                None => {
                    return Err(AcceptError::Conflict(format!(
                        "identifier `{}` is already taken",
                        spec.identifier
                    )));
                }
            },
            Err(error) if violates(&error, requests::KEY_CONSTRAINT) => {
                return Ok(Inserted::KeyTaken(error));
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(AcceptError::Conflict(format!(
        "no free identifier found for name `{}`: give one",
        spec.name
    )))
}

/// `403 namespace-forbidden` unless the policy lets the asker deploy there.
fn check_namespace(policy: &Policy, asker: Asker<'_>, namespace: &str) -> Result<(), AcceptError> {
    match policy.refuse_namespace(asker.name, asker.groups, namespace) {
        Some(reason) => Err(AcceptError::Forbidden("namespace-forbidden", reason)),
        None => Ok(()),
    }
}

/// `403 quota-exceeded` when the asker already has `max` live deployments.
async fn check_quota(
    conn: &mut sqlx::PgConnection,
    asker: Asker<'_>,
    max: u32,
) -> Result<(), AcceptError> {
    let live = deployments::live_count(conn, asker.user_id).await?;
    if live >= i64::from(max) {
        return Err(AcceptError::Forbidden(
            "quota-exceeded",
            format!(
                "you have {live} live deployments, the most a user may have ({max}): delete one first"
            ),
        ));
    }
    Ok(())
}

/// The desired spec `input` would record, checked as [`create`] checks it
/// (a taken identifier is a conflict); nothing is recorded. A generated
/// identifier is drawn for the dry run only: the real CREATE draws its own.
pub async fn preview_create(
    pool: &PgPool,
    asker: Asker<'_>,
    input: DeploymentInput,
    policy: &Policy,
) -> Result<DeploymentSpec, AcceptError> {
    let generated = input.identifier.is_none();
    let spec = input
        .validate(generated_identifier)
        .map_err(AcceptError::Invalid)?;
    check_namespace(policy, asker, &spec.namespace)?;
    if let Some(max) = policy.max_deployments {
        check_quota(&mut *pool.acquire().await?, asker, max).await?;
    }
    if !generated && deployments::taken(pool, asker.user_id, &spec.identifier).await? {
        return Err(AcceptError::Conflict(format!(
            "identifier `{}` is already taken",
            spec.identifier
        )));
    }
    Ok(spec)
}

/// Tries at a free generated identifier: with 27^5 suffixes per name, even a
/// name used a million times finds one within a few.
const GENERATION_ATTEMPTS: usize = 8;

fn violates(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.constraint() == Some(constraint))
}

/// An UPDATE or DELETE not yet recorded: which deployment it is for, what
/// it does, and how it makes the next desired spec of the current one.
/// [`record`] carries it out; [`preview`] only shows its spec.
pub struct Proposal<'a> {
    target: Target<'a>,
    change: Change,
    fingerprint: String,
    next: Box<NextSpec<'a>>,
}

type NextSpec<'a> =
    dyn FnOnce(&DeploymentSpec) -> Result<DeploymentSpec, Vec<FieldError>> + Send + 'a;

/// An UPDATE of the deployment that request `target` belongs to: `patch` is
/// merged into its desired spec (RFC 7386: objects merge, `null` removes).
pub fn update(target: Uuid, patch: Map<String, Value>) -> Result<Proposal<'static>, AcceptError> {
    check_patch_fields(&patch).map_err(AcceptError::Invalid)?;
    let patch = Value::Object(patch);
    Ok(Proposal {
        target: Target::Request(target),
        change: Change::Update {
            rolled_back_to: None,
        },
        fingerprint: fingerprint(&format!("UPDATE {target}"), &patch),
        next: Box::new(move |current| {
            let mut merged = serde_json::to_value(current).unwrap_or_default();
            merge_patch(&mut merged, &patch);
            let input: DeploymentInput =
                serde_path_to_error::deserialize(merged).map_err(|error| {
                    vec![FieldError::new(
                        error.path().to_string(),
                        error.inner().to_string(),
                    )]
                })?;
            input.validate(|_| current.identifier.clone())
        }),
    })
}

/// A DELETE of the deployment that request `target` belongs to.
pub fn delete(target: Uuid) -> Proposal<'static> {
    Proposal {
        target: Target::Request(target),
        change: Change::Delete,
        fingerprint: fingerprint(&format!("DELETE {target}"), &Value::Null),
        next: Box::new(|current| Ok(current.clone())),
    }
}

/// An UPDATE of the user's deployment `identifier` back to the spec of its
/// revision `revision` (as `requests::revisions` numbers them).
pub async fn rollback<'a>(
    pool: &PgPool,
    user_id: Uuid,
    identifier: &'a str,
    revision: i64,
) -> Result<Proposal<'a>, AcceptError> {
    let target = requests::revisions(pool, user_id, identifier, None, Some(revision), 1)
        .await?
        .pop()
        .ok_or_else(|| {
            AcceptError::NotFound(format!(
                "deployment `{identifier}` has no revision {revision}"
            ))
        })?;
    let spec = target.request.spec.0;
    Ok(Proposal {
        target: Target::Identifier(identifier),
        change: Change::Update {
            rolled_back_to: i32::try_from(revision).ok(),
        },
        fingerprint: fingerprint(&format!("ROLLBACK {identifier}"), &Value::from(revision)),
        next: Box::new(|_| Ok(spec)),
    })
}

/// Which deployment a change is for: the one a request belongs to, or one
/// named by its identifier.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Request(Uuid),
    Identifier(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Update { rolled_back_to: Option<i32> },
    Delete,
}

/// Records `proposal`: locks the deployment, checks it can still change,
/// and records the request with the spec the proposal makes of the current
/// one. A deployment that is not the user's is not found.
pub async fn record(
    pool: &PgPool,
    asker: Asker<'_>,
    proposal: Proposal<'_>,
) -> Result<Accepted, AcceptError> {
    let mut tx = pool.begin().await?;
    if let Some(earlier) = requests::find_by_key(&mut *tx, asker.user_id, asker.key).await? {
        return replay(earlier, &proposal.fingerprint);
    }
    let fingerprint = proposal.fingerprint.clone();
    let change = proposal.change;
    let (identifier, spec) = next_spec(&mut tx, asker.user_id, proposal).await?;
    let (request_type, rolled_back_to) = match change {
        Change::Update { rolled_back_to } => (RequestType::Update, rolled_back_to),
        Change::Delete => (RequestType::Delete, None),
    };
    let updating = request_type == RequestType::Update;
    let sequence = deployments::advance(&mut tx, &identifier, &spec, updating).await?;
    let new = NewRequest {
        key: asker.key,
        user_id: asker.user_id,
        request_type,
        spec: &spec,
        sequence,
        fingerprint: &fingerprint,
        rolled_back_to,
    };
    insert(tx, pool, asker, new).await
}

/// The desired spec `proposal` would record, checked as [`record`] checks
/// it; nothing is recorded.
pub async fn preview(
    pool: &PgPool,
    user_id: Uuid,
    proposal: Proposal<'_>,
) -> Result<DeploymentSpec, AcceptError> {
    // No transaction: each statement reads on its own, and the row lock
    // `next_spec` takes ends with its statement.
    let mut conn = pool.acquire().await?;
    let (_, spec) = next_spec(&mut conn, user_id, proposal).await?;
    Ok(spec)
}

/// The deployment `proposal` is for (locked until the transaction `conn` is in
/// ends, if any), and its next desired spec.
async fn next_spec(
    conn: &mut sqlx::PgConnection,
    user_id: Uuid,
    proposal: Proposal<'_>,
) -> Result<(String, DeploymentSpec), AcceptError> {
    let not_found = || match proposal.target {
        Target::Request(id) => AcceptError::NotFound(format!("request {id} not found")),
        Target::Identifier(identifier) => {
            AcceptError::NotFound(format!("deployment `{identifier}` not found"))
        }
    };
    let identifier = match proposal.target {
        Target::Request(id) => {
            requests::find(&mut *conn, user_id, id)
                .await?
                .ok_or_else(not_found)?
                .identifier
        }
        Target::Identifier(identifier) => identifier.to_owned(),
    };
    let current = deployments::lock(conn, user_id, &identifier)
        .await?
        .ok_or_else(not_found)?;
    if current.status.is_gone() {
        return Err(AcceptError::Conflict(format!(
            "deployment `{identifier}` is {:?}: there is nothing to change",
            current.status
        )));
    }
    if requests::delete_pending(conn, &identifier).await? {
        return Err(AcceptError::Conflict(format!(
            "deployment `{identifier}` is being deleted"
        )));
    }
    let spec = (proposal.next)(&current.spec).map_err(AcceptError::Invalid)?;
    Ok((identifier, spec))
}

/// Inserts the request and its outbox row, and commits. When a concurrent
/// request with the same key committed first, this one is rolled back and
/// answered as a replay of that one.
async fn insert(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    pool: &PgPool,
    asker: Asker<'_>,
    new: NewRequest<'_>,
) -> Result<Accepted, AcceptError> {
    let fingerprint = new.fingerprint.to_owned();
    let Some(request) = requests::insert(&mut tx, new).await? else {
        drop(tx);
        return match earlier_request(pool, asker).await? {
            Some(earlier) => replay(earlier, &fingerprint),
            None => Err(AcceptError::Conflict(
                "a concurrent request with this key failed".into(),
            )),
        };
    };
    outbox::enqueue(&mut tx, request.id).await?;
    tx.commit().await?;
    Ok(Accepted::New(request))
}

/// The request the caller made earlier with this key, if any.
async fn earlier_request(
    pool: &PgPool,
    asker: Asker<'_>,
) -> Result<Option<RequestRow>, AcceptError> {
    Ok(requests::find_by_key(pool, asker.user_id, asker.key).await?)
}

/// An earlier use of the key: a replay if it was for the same request.
fn replay(earlier: RequestRow, fingerprint: &str) -> Result<Accepted, AcceptError> {
    if earlier.fingerprint == fingerprint {
        Ok(Accepted::Replayed(earlier))
    } else {
        Err(AcceptError::KeyReused(earlier.request_id))
    }
}

/// What a key was used for: the operation, its target and its body.
fn fingerprint(operation: &str, body: &Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(operation.as_bytes());
    hasher.update(b"\n");
    // serde_json's maps are sorted, so equal bodies hash equal whatever
    // order their keys came in.
    hasher.update(body.to_string().as_bytes());
    format!("{:x}", hasher.finalize())
}

/// Only the fields of [`DeploymentPatch`] may be patched; their values are
/// checked on the merged spec.
fn check_patch_fields(patch: &Map<String, Value>) -> Result<(), Vec<FieldError>> {
    let fixed: Vec<FieldError> = patch
        .keys()
        .filter(|key| FIXED_FIELDS.contains(&key.as_str()))
        .map(|key| FieldError::new(key, "cannot be changed: create a new deployment instead"))
        .collect();
    if !fixed.is_empty() {
        return Err(fixed);
    }
    serde_path_to_error::deserialize::<_, DeploymentPatch>(Value::Object(patch.clone())).map_err(
        |error| {
            vec![FieldError::new(
                error.path().to_string(),
                error.inner().to_string(),
            )]
        },
    )?;
    check_removed_keys(patch)
}

type KeyCheck = fn(&str) -> Result<(), String>;

/// A key a patch removes (`"KEY": null`) is never checked on the merged
/// spec, where it no longer is: it must still be one the field could hold.
fn check_removed_keys(patch: &Map<String, Value>) -> Result<(), Vec<FieldError>> {
    let checks: [(&str, KeyCheck); 3] = [
        ("env", check_env_name),
        ("labels", labels::check_key),
        ("annotations", labels::check_key),
    ];
    let errors: Vec<FieldError> = checks
        .into_iter()
        .flat_map(|(field, check)| {
            let removed = patch
                .get(field)
                .and_then(Value::as_object)
                .into_iter()
                .flatten();
            removed
                .filter(|(_, value)| value.is_null())
                .filter_map(move |(key, _)| check(key).err().map(|e| FieldError::new(field, e)))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// `name` and five random lowercase alphanumerics, as Kubernetes'
/// `generateName` does.
fn generated_identifier(name: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{name}-{suffix}")
}
