//! JSON request bodies: what depman reads as one. A body is a JSON object
//! (RFC 8259) whose strings PostgreSQL and Kubernetes can both hold, with no
//! key given twice and no deeper nesting than any field needs; only then is
//! it parsed into the handler's type.

use std::collections::HashSet;

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::{HeaderMap, StatusCode, header},
};
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::error::ApiError;

/// How deep objects and arrays may nest: the deepest field of a body
/// (`resources.requests.cpu`) is three levels down.
pub const MAX_DEPTH: usize = 16;

/// A JSON object body: 415 without a JSON content type, 413 over the limit,
/// 400 when it is not a JSON object, 422 naming the field that breaks a rule
/// (a NUL character, a key given twice, too deep a nesting, a value that
/// does not fit `T`, an unknown field).
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
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(match serde_json::from_slice::<de::IgnoredAny>(&bytes) {
                Ok(_) => ApiError::MalformedBody("the body must be a JSON object".into()),
                Err(error) => malformed(&error),
            });
        }
        check(&bytes)?;
        // serde tells a syntax error (400) from a value that does not fit
        // (422, with its path).
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let value: T =
            serde_path_to_error::deserialize(&mut deserializer).map_err(reject_at_path)?;
        deserializer.end().map_err(|error| malformed(&error))?;
        Ok(JsonBody(value))
    }
}

/// Walks the whole document once, before it is parsed into its type, so
/// that every string at any depth (map keys, env values, annotations,
/// command, args) is held to the same rules, whatever field it sits in.
pub fn check(bytes: &[u8]) -> Result<(), ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let mut track = serde_path_to_error::Track::new();
    let walked = Walk { depth: 0 }.deserialize(serde_path_to_error::Deserializer::new(
        &mut deserializer,
        &mut track,
    ));
    match walked {
        Ok(()) => deserializer.end().map_err(|error| malformed(&error)),
        Err(error) => Err(reject_at_path(serde_path_to_error::Error::new(
            track.path(),
            error,
        ))),
    }
}

/// A value that breaks a rule is 422 at its path; text that is not JSON (or
/// not Unicode: a lone surrogate escape) is 400.
fn reject_at_path(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    match error.inner().classify() {
        serde_json::error::Category::Data => {
            ApiError::invalid(error.path().to_string(), error.inner().to_string())
        }
        _ => malformed(error.inner()),
    }
}

fn malformed(error: &serde_json::Error) -> ApiError {
    ApiError::MalformedBody(format!("the body is not valid JSON: {error}"))
}

/// PostgreSQL cannot store U+0000 in `text` or `jsonb`, and no process
/// can take it in an argument or an environment variable.
const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

struct Walk {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        if text.contains('\0') {
            return Err(E::custom(NUL_MESSAGE));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.nested()?;
        while seq.next_element_seed(Walk { depth })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = self.nested()?;
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            // Reported through the key's value, so that the error names it.
            if key.contains('\0') {
                return map.next_value_seed(Refuse(format!("its key {NUL_MESSAGE}")));
            }
            if !seen.insert(key) {
                return map
                    .next_value_seed(Refuse("is given twice: each key may appear once".into()));
            }
            map.next_value_seed(Walk { depth })?;
        }
        Ok(())
    }
}

impl Walk {
    /// The depth of the values inside this object or array.
    fn nested<E: de::Error>(&self) -> Result<usize, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!(
                "is nested too deeply: at most {MAX_DEPTH} levels of objects and arrays"
            )));
        }
        Ok(self.depth + 1)
    }
}

/// Fails on the value it is asked for, with its message.
struct Refuse(String);

impl<'de> DeserializeSeed<'de> for Refuse {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, _: D) -> Result<(), D::Error> {
        Err(de::Error::custom(self.0))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The field and status `check` answers a body with.
    fn refused(body: &str) -> Option<(u16, String)> {
        check(body.as_bytes()).err().map(|error| match error {
            ApiError::Invalid(errors) => (422, errors[0].field.clone()),
            ApiError::MalformedBody(_) => (400, String::new()),
            other => panic!("unexpected {other:?}"),
        })
    }

    #[test]
    fn ordinary_bodies_pass() {
        let body = r#"{"name": "web", "replicas": 2, "env": {"A": "x y"}, "ports": [{"container_port": 80}],
                       "resources": {"requests": {"cpu": "1"}}, "args": ["-v"], "ok": true, "none": null, "f": 1.5}"#;
        assert_eq!(refused(body), None);
    }

    #[test]
    fn a_nul_anywhere_is_named_by_its_path() {
        assert_eq!(
            refused(r#"{"env": {"A": "x\u0000y"}}"#),
            Some((422, "env.A".into()))
        );
        assert_eq!(
            refused(r#"{"args": ["ok", "\u0000"]}"#),
            Some((422, "args[1]".into()))
        );
        assert_eq!(
            refused(r#"{"annotations": {"a\u0000b": "x"}}"#),
            Some((422, "annotations.a\u{0}b".into()))
        );
    }

    #[test]
    fn a_key_given_twice_is_named() {
        assert_eq!(
            refused(r#"{"name": "a", "name": "b"}"#),
            Some((422, "name".into()))
        );
        assert_eq!(
            refused(r#"{"env": {"A": "1", "A": "2"}}"#),
            Some((422, "env.A".into()))
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |levels: usize| {
            format!(
                r#"{{"x": {}1{}}}"#,
                "[".repeat(levels - 1),
                "]".repeat(levels - 1)
            )
        };
        assert_eq!(refused(&deep(MAX_DEPTH)), None);
        let (status, field) = refused(&deep(MAX_DEPTH + 1)).expect("refused");
        assert_eq!(status, 422);
        assert!(field.starts_with("x["), "{field}");
        // Far beyond serde_json's own recursion limit: still a clear 422.
        assert_eq!(refused(&deep(10_000)).map(|(status, _)| status), Some(422));
    }

    #[test]
    fn text_that_is_not_json_or_not_unicode_is_400() {
        for body in [
            r#"{"replicas": Infinity}"#,
            r#"{"replicas": NaN}"#,
            r#"{"replicas": 1e400}"#,
            r#"{"env": {"A": "\ud800"}}"#,
            r#"{"env": {"A": "\udc00x"}}"#,
            r#"{"replicas": -Infinity}"#,
            r#"{"a": 1} trailing"#,
        ] {
            assert_eq!(refused(body).map(|(status, _)| status), Some(400), "{body}");
        }
    }
}
