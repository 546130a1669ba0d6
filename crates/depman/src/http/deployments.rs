//! `/api/v1/deployments`: the caller's deployments with their live state.

use axum::{Json, extract::State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    AppState,
    error::{ApiError, Problem},
    extract::{Caller, PathParam, QueryParams},
    requests::paging,
};
use crate::{
    domain::status::DeploymentStatus,
    store::{
        deployments::{self, Deployment, Filter},
        paging::Page,
    },
};

/// One deployment of the caller's, with the live fields the sync last saw.
#[utoipa::path(
    get,
    path = "/api/v1/deployments/{identifier}",
    tag = "deployments",
    params(("identifier" = String, Path), ("X-User-ID" = String, Header)),
    responses(
        (status = 200, body = Deployment),
        (status = 404, description = "No such deployment for this user", body = Problem),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(identifier): PathParam<String>,
) -> Result<Json<Deployment>, ApiError> {
    deployments::find(&state.pool, caller.id, &identifier)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("deployment `{identifier}` not found")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDeployments {
    pub namespace: Option<String>,
    pub status: Option<DeploymentStatus>,
    /// 1 to 500; default 50.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The caller's deployments, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/deployments",
    tag = "deployments",
    params(ListDeployments, ("X-User-ID" = String, Header)),
    responses(
        (status = 200, body = Page<Deployment>),
        (status = 422, description = "A parameter is invalid", body = Problem),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<ListDeployments>,
) -> Result<Json<Page<Deployment>>, ApiError> {
    let (limit, cursor) = paging(query.limit, query.cursor.as_deref())?;
    let filter = Filter {
        namespace: query.namespace,
        status: query.status,
    };
    let page = deployments::list(&state.pool, caller.id, &filter, cursor.as_ref(), limit).await?;
    Ok(Json(page))
}
