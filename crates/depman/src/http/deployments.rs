//! `/api/v1/deployments`: the caller's deployments with their live state.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    error::{ApiError, Problem},
    extract::{Caller, PathParam, QueryParams},
    requests::paging,
    state::AppState,
};
use crate::{
    domain::{
        names::DnsLabel,
        status::{DeploymentStatus, Health},
    },
    store::{
        deployments::{self, DeploymentRow, Filter},
        paging::Page,
    },
};

/// A deployment as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Deployment {
    pub identifier: String,
    pub name: String,
    pub namespace: String,
    pub image: String,
    pub status: DeploymentStatus,
    pub health: Health,
    /// Why it is `DEGRADED` (`ErrImagePull`, `CrashLoopBackOff`,
    /// `QuotaExceeded`, `ProgressDeadlineExceeded`, ...); `null` otherwise.
    pub health_reason: Option<String>,
    /// Kubernetes' own words for `health_reason`.
    pub health_message: Option<String>,
    /// Desired replicas, as Kubernetes last reported them.
    pub replicas: Option<i32>,
    pub ready_replicas: Option<i32>,
    pub available_replicas: Option<i32>,
    pub updated_replicas: Option<i32>,
    pub generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub conditions: Vec<Condition>,
    pub resource_version: Option<String>,
    pub created_on: DateTime<Utc>,
    pub updated_on: DateTime<Utc>,
}

/// A condition of the Deployment, as Kubernetes reports it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
}

impl From<DeploymentRow> for Deployment {
    fn from(row: DeploymentRow) -> Self {
        Self {
            identifier: row.identifier,
            name: row.name,
            namespace: row.namespace,
            image: row.image,
            status: row.status,
            health: row.health,
            health_reason: row.health_reason,
            health_message: row.health_message,
            replicas: row.replicas,
            ready_replicas: row.ready_replicas,
            available_replicas: row.available_replicas,
            updated_replicas: row.updated_replicas,
            generation: row.generation,
            observed_generation: row.observed_generation,
            conditions: row
                .conditions
                .0
                .into_iter()
                .map(|c| Condition {
                    kind: c.kind,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                })
                .collect(),
            resource_version: row.resource_version,
            created_on: row.created_on,
            updated_on: row.updated_on,
        }
    }
}

/// What a search looks for: identifiers are lowercase. `None` for a text
/// no identifier can contain (a character outside `a-z`, `0-9` and `-`,
/// NUL among them, which PostgreSQL could not even hold).
fn search_text(search: &str) -> Result<Option<String>, ApiError> {
    if !(1..=63).contains(&search.chars().count()) {
        return Err(ApiError::invalid("search", "must be 1 to 63 characters"));
    }
    let search = search.to_lowercase();
    let possible = search
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    Ok(possible.then_some(search))
}

/// One deployment of the caller's, with the live fields the sync last saw.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/{identifier}",
    operation_id = "get_deployment",
    tag = "deployments",
    params(("identifier" = inline(DnsLabel), Path)),
    responses(
        (status = 200, description = "The deployment", body = Deployment),
        (status = 404, description = "No such deployment for this user", body = Problem),
        (status = 422, description = "`identifier` cannot be one", body = Problem),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(identifier): PathParam<DnsLabel>,
) -> Result<Json<Deployment>, ApiError> {
    let identifier = identifier.as_str();
    deployments::find(&state.pool, caller.id, identifier)
        .await?
        .map(|row| Json(row.into()))
        .ok_or_else(|| ApiError::NotFound(format!("deployment `{identifier}` not found")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDeployments {
    #[param(inline)]
    pub namespace: Option<DnsLabel>,
    pub status: Option<DeploymentStatus>,
    /// Only deployments whose identifier contains this text, ignoring case
    /// (1 to 63 characters).
    #[param(min_length = 1, max_length = 63)]
    pub search: Option<String>,
    /// 1 to 500; default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The caller's deployments, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/deployments",
    operation_id = "list_deployments",
    tag = "deployments",
    params(ListDeployments),
    responses(
        (status = 200, description = "A page of deployments", body = Page<Deployment>),
        (status = 422, description = "A parameter is invalid", body = Problem),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ListDeployments>,
) -> Result<Json<Page<Deployment>>, ApiError> {
    let (limit, cursor) = paging(query.limit, query.cursor.as_deref())?;
    let search = query.search.as_deref().map(search_text).transpose()?;
    if search == Some(None) {
        return Ok(Json(Page {
            items: Vec::new(),
            next_cursor: None,
        }));
    }
    let filter = Filter {
        namespace: query.namespace.map(DnsLabel::into_inner),
        status: query.status,
        search: search.flatten(),
    };
    let page = deployments::list(&state.pool, caller.id, &filter, cursor.as_ref(), limit).await?;
    Ok(Json(page.map(Deployment::from)))
}
