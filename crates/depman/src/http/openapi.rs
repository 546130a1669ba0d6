//! The OpenAPI document. Each route's annotation says what that operation
//! answers; `complete` adds, in one place, what many operations share, so
//! that a client generated from the document is never surprised: the
//! caller's `X-User-ID` as a security scheme with its `401`, the `503` of a
//! PostgreSQL outage, and problem details under their own media type.

use utoipa::openapi::{
    Content, HeaderBuilder, ObjectBuilder, OpenApi, PathItem, Ref, RefOr, Response, Type,
    path::Operation,
    security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme},
};

/// The name of the `X-User-ID` scheme in the document.
pub const CALLER_SCHEME: &str = "caller";

pub const PROBLEM_MEDIA_TYPE: &str = "application/problem+json";

/// Completes `document` for the api's authentication: `X-User-ID`, or
/// bearer tokens (`DEPMAN_AUTH=jwt`), under the scheme name `caller`.
pub fn complete(document: &mut OpenApi, tokens: bool) {
    let scheme = if tokens {
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        bearer.description = Some(
            "An OpenID Connect ID or access token of the configured issuer (DEPMAN_AUTH=jwt). \
             Every /api/v1 route but /api/v1/ping needs it; missing or refused: 401."
                .into(),
        );
        SecurityScheme::Http(bearer)
    } else {
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-User-ID",
            "The caller: 1 to 128 characters of `A-Za-z0-9._@-`. Every /api/v1 route but \
             /api/v1/ping needs it; missing or malformed: 401.",
        )))
    };
    let missing = if tokens {
        "The bearer token is missing or refused (`invalid-token`)"
    } else {
        "X-User-ID is missing or malformed"
    };
    document
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(CALLER_SCHEME, scheme);
    for (path, item) in document.paths.paths.iter_mut() {
        let needs_caller = path.starts_with("/api/v1/") && path != "/api/v1/ping";
        for (method, operation) in operations(item) {
            if method != "get" {
                describe_accepted(operation);
            }
            if needs_caller {
                operation.security = Some(vec![SecurityRequirement::new(
                    CALLER_SCHEME,
                    Vec::<String>::new(),
                )]);
                add_problem(operation, "401", missing);
                if method != "get" {
                    add_problem(
                        operation,
                        "429",
                        "Past the caller's rate limit (DEPMAN_RATE_LIMIT): Retry-After says when to try again",
                    );
                }
                add_problem(
                    operation,
                    "503",
                    "PostgreSQL is unavailable, or the request took longer than 30 s",
                );
            }
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    serve_problems_as_such(response);
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_mut()?)))
}

/// A mutating request answers `202` with the new request's `Location`, or
/// `200` with `Idempotent-Replayed: true` for a replay of its key.
fn describe_accepted(operation: &mut Operation) {
    let headers = [
        (
            "202",
            "Location",
            "The new request: `/api/v1/deployments/requests/{id}`",
        ),
        (
            "200",
            "Idempotent-Replayed",
            "`true`: the original request, as it is now",
        ),
    ];
    for (status, name, description) in headers {
        if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) {
            let header = HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .description(Some(description))
                .build();
            response.headers.insert(name.to_owned(), RefOr::T(header));
        }
    }
}

/// Documents a problem answer unless the operation describes it itself.
fn add_problem(operation: &mut Operation, status: &str, description: &str) {
    let problem = Response::builder()
        .description(description)
        .content(
            PROBLEM_MEDIA_TYPE,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build();
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert(RefOr::T(problem));
}

/// A `Problem` body is `application/problem+json`, which is what the error
/// type answers with (RFC 9457), not `application/json`.
fn serve_problems_as_such(response: &mut Response) {
    let is_problem = response
        .content
        .get("application/json")
        .is_some_and(|content| {
            matches!(content, RefOr::T(Content { schema: Some(RefOr::Ref(r)), .. })
            if r.ref_location.ends_with("/Problem"))
        });
    if is_problem && let Some(content) = response.content.shift_remove("application/json") {
        response
            .content
            .insert(PROBLEM_MEDIA_TYPE.to_owned(), content);
    }
}
