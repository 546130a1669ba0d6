//! Extractors that parse input where it enters and reject it in the API's
//! own problem format: JSON bodies, query strings and the caller's headers.

use axum::{
    body::Bytes,
    extract::{
        FromRequest, FromRequestParts, Path, Request, path::ErrorKind, rejection::PathRejection,
    },
    http::{HeaderMap, StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;

use super::{AppState, error::ApiError};
use crate::domain::names::check_header_token;

pub const USER_ID_HEADER: &str = "x-user-id";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A JSON object body: 415 without a JSON content type, 413 over the limit,
/// 400 when it is not a JSON object, 422 naming the field that does not fit
/// `T` (unknown fields included).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !has_json_content_type(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::MalformedBody(rejection.body_text())
                }
            })?;
        // Parsed in one pass, straight into `T`: serde tells a syntax error
        // (400) from a value that does not fit (422, with its path).
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                    Ok(_) => ApiError::MalformedBody("the body must be a JSON object".into()),
                    Err(error) => malformed(&error),
                },
            );
        }
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            match error.inner().classify() {
                serde_json::error::Category::Data => {
                    ApiError::invalid(error.path().to_string(), error.inner().to_string())
                }
                _ => malformed(error.inner()),
            }
        })?;
        deserializer.end().map_err(|error| malformed(&error))?;
        Ok(JsonBody(value))
    }
}

fn malformed(error: &serde_json::Error) -> ApiError {
    ApiError::MalformedBody(format!("the body is not valid JSON: {error}"))
}

/// `application/json`, or any `application/*+json` such as
/// `application/merge-patch+json`.
fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

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
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let external_id = header_value(&parts.headers, USER_ID_HEADER)
            .ok_or_else(|| ApiError::Unauthorized("the X-User-ID header is required".into()))?;
        check_header_token(external_id)
            .map_err(|message| ApiError::Unauthorized(format!("X-User-ID {message}")))?;
        tracing::Span::current().record("user", external_id);
        let id = state.users.resolve(&state.pool, external_id).await?;
        Ok(Caller {
            id,
            external_id: external_id.to_owned(),
        })
    }
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
/// `id` that is not a UUID).
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
                    | ErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
                    _ => "path".to_owned(),
                };
                Err(ApiError::invalid(field, error.body_text()))
            }
            Err(other) => Err(ApiError::Unexpected(anyhow::anyhow!(other.body_text()))),
        }
    }
}
