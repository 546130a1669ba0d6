//! Extractors that parse input where it enters and reject it in the API's
//! own problem format: query strings, path parameters and the caller's
//! headers (JSON bodies: `body`).

use axum::{
    extract::{
        ConnectInfo, FromRequestParts, Path, RawPathParams, path::ErrorKind,
        rejection::PathRejection,
    },
    http::{Extensions, HeaderMap, request::Parts},
};
use serde::de::DeserializeOwned;

use super::{error::ApiError, state::AppState};
use crate::domain::names::check_header_token;
use crate::identity::{TokenError, TokenVerifier};

pub const USER_ID_HEADER: &str = "x-user-id";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The query string as `T`: 422 naming the parameter that does not fit.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(QueryParams)
            .map_err(|error| ApiError::invalid(error.path().to_string(), error.inner().to_string()))
    }
}

/// The caller, named by `X-User-ID` and created on their first request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: uuid::Uuid,
    pub external_id: String,
    /// The groups the namespace policy knows the caller by (none from
    /// `X-User-ID`).
    pub groups: Vec<String>,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(verifier) = &state.verifier {
            return token_caller(parts, state, verifier).await;
        }
        let external_id = header_user(&parts.headers, &parts.extensions, state)?;
        tracing::Span::current().record("user", external_id);
        let id = state.users.resolve(&state.pool, external_id).await?;
        Ok(Caller {
            id,
            external_id: external_id.to_owned(),
            groups: Vec::new(),
        })
    }
}

/// The user `X-User-ID` names, when it is well formed and comes from a
/// trusted peer (header mode); the rate limit counts calls by it too.
pub fn header_user<'a>(
    headers: &'a HeaderMap,
    extensions: &Extensions,
    state: &AppState,
) -> Result<&'a str, ApiError> {
    let user = header_value(headers, USER_ID_HEADER)
        .ok_or_else(|| ApiError::Unauthorized("the X-User-ID header is required".into()))?;
    let peer = extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if !state.trusted_proxies.allows(peer) {
        return Err(ApiError::Unauthorized(
            "X-User-ID is only accepted through a trusted proxy (DEPMAN_TRUSTED_PROXIES)".into(),
        ));
    }
    check_header_token(user)
        .map_err(|message| ApiError::Unauthorized(format!("X-User-ID {message}")))?;
    Ok(user)
}

/// The caller a bearer token names (`DEPMAN_AUTH=jwt`); `X-User-ID` is
/// ignored.
async fn token_caller(
    parts: &Parts,
    state: &AppState,
    verifier: &TokenVerifier,
) -> Result<Caller, ApiError> {
    let token = bearer(&parts.headers).ok_or(TokenError::Missing)?;
    let identity = verifier.verify(token).await?;
    tracing::Span::current().record("user", identity.user.as_str());
    let id = state.users.resolve(&state.pool, &identity.user).await?;
    Ok(Caller {
        id,
        external_id: identity.user,
        groups: identity.groups,
    })
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = header_value(headers, "authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// The idempotency key of a mutating request: `X-Request-ID`, which the
/// request-id layer fills in when the caller gave none.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let key = header_value(&parts.headers, REQUEST_ID_HEADER)
            .ok_or_else(|| ApiError::invalid("X-Request-ID", "must be valid visible ASCII"))?;
        check_header_token(key).map_err(|message| ApiError::invalid("X-Request-ID", message))?;
        Ok(IdempotencyKey(key.to_owned()))
    }
}

fn header_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Path parameters: 422 naming the parameter that does not parse (a request
/// `id` that is not a UUID, an `identifier` that is not a name).
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                let field = match error.kind() {
                    ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::DeserializeError { key, .. }
                    | ErrorKind::InvalidUtf8InPathParam { key } => Some(key.clone()),
                    // A newtype's own check says no key: a route with one
                    // parameter can only mean that one.
                    _ => only_parameter(parts, state).await,
                };
                let message = match error.kind() {
                    ErrorKind::Message(message) => message.clone(),
                    _ => error.body_text(),
                };
                Err(ApiError::invalid(
                    field.unwrap_or_else(|| "path".into()),
                    message,
                ))
            }
            Err(other) => Err(ApiError::Unexpected(anyhow::anyhow!(other.body_text()))),
        }
    }
}

async fn only_parameter<S: Send + Sync>(parts: &mut Parts, state: &S) -> Option<String> {
    let params = RawPathParams::from_request_parts(parts, state).await.ok()?;
    let mut keys = params.iter().map(|(key, _)| key.to_owned());
    let first = keys.next()?;
    keys.next().is_none().then_some(first)
}
