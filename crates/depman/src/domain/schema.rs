//! The rules of the input as JSON Schema, for the OpenAPI document: each
//! built from the pattern its check matches (the tests below hold every
//! pattern and its check to the same answers), so that a client generated
//! from the document, or a fuzzer, sends what depman takes.
//!
//! Two rules span fields and have no JSON Schema: a port/protocol pair or a
//! port name given twice, and a resource request above its limit; the
//! descriptions say them.

use utoipa::openapi::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref, Type,
    schema::{AdditionalProperties, SchemaType},
};

use super::{
    image::{IMAGE_PATTERN, MAX_IMAGE_LEN},
    labels::{KEY_PATTERN, LABEL_VALUE_PATTERN},
    names::{DNS_LABEL_PATTERN, HEADER_TOKEN_PATTERN, IDENTIFIER_PATTERN, MAX_NAME_LEN},
    quantity::QUANTITY_PATTERN,
    workload::{
        ENV_NAME_PATTERN, MAX_REPLICAS, PORT_NAME_PATTERN, PROGRESS_DEADLINE, TEXT_PATTERN,
    },
};

fn string(pattern: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
}

fn or_null(schema_type: Type) -> SchemaType {
    SchemaType::from_iter([schema_type, Type::Null])
}

fn label(max: usize) -> ObjectBuilder {
    string(DNS_LABEL_PATTERN)
        .min_length(Some(1))
        .max_length(Some(max))
}

pub fn name() -> ObjectBuilder {
    label(MAX_NAME_LEN).description(Some(
        "RFC 1123 label (lowercase letters, digits and '-'), at most 50 characters",
    ))
}

pub fn namespace() -> ObjectBuilder {
    label(63).description(Some(
        "RFC 1123 label, at most 63 characters; the namespace must exist in the cluster",
    ))
}

pub fn identifier() -> ObjectBuilder {
    string(IDENTIFIER_PATTERN)
        .schema_type(or_null(Type::String))
        .min_length(Some(1))
        .max_length(Some(63))
        .description(Some(
            "The Deployment's name in the cluster: an RFC 1123 label of at most 63 characters, \
             not `requests`. Default: `name` and a random suffix",
        ))
}

pub fn image() -> ObjectBuilder {
    string(IMAGE_PATTERN)
        .min_length(Some(1))
        .max_length(Some(MAX_IMAGE_LEN))
        .description(Some("Image reference, such as `nginx:1.27`"))
}

pub fn replicas() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(or_null(Type::Integer))
        .minimum(Some(0))
        .maximum(Some(MAX_REPLICAS))
        .description(Some("0 to 1000; default 1"))
}

pub fn progress_deadline() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(or_null(Type::Integer))
        .minimum(Some(*PROGRESS_DEADLINE.start()))
        .maximum(Some(*PROGRESS_DEADLINE.end()))
        .description(Some(
            "Seconds Kubernetes waits for the rollout to progress before it reports \
             ProgressDeadlineExceeded: 10 to 3600; default 600",
        ))
}

/// Text of any length but NUL; `nullable` in a merge patch, where `null`
/// removes a key.
fn text(nullable: bool) -> ObjectBuilder {
    let schema = string(TEXT_PATTERN);
    if nullable {
        schema.schema_type(or_null(Type::String))
    } else {
        schema
    }
}

fn map(keys: ObjectBuilder, values: ObjectBuilder, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(or_null(Type::Object))
        .property_names(Some(keys))
        .additional_properties(Some(AdditionalProperties::RefOr(values.into())))
        .description(Some(description))
}

fn env_map(nullable_values: bool) -> ObjectBuilder {
    map(
        string(ENV_NAME_PATTERN),
        text(nullable_values),
        "Environment variables: names of letters, digits, '_', '-' and '.', not starting with a digit",
    )
}

fn labels_map(nullable_values: bool) -> ObjectBuilder {
    let value = string(LABEL_VALUE_PATTERN).max_length(Some(63));
    let value = if nullable_values {
        value.schema_type(or_null(Type::String))
    } else {
        value
    };
    map(
        string(KEY_PATTERN),
        value,
        "Labels: Kubernetes qualified names as keys (not `depman.io/*`, `app.kubernetes.io/managed-by` \
         or `app.kubernetes.io/name`), values of at most 63 characters",
    )
}

fn annotations_map(nullable_values: bool) -> ObjectBuilder {
    map(
        string(KEY_PATTERN),
        text(nullable_values),
        "Annotations: keys as for labels, values any text",
    )
}

pub fn env() -> ObjectBuilder {
    env_map(false)
}

pub fn labels() -> ObjectBuilder {
    labels_map(false)
}

pub fn annotations() -> ObjectBuilder {
    annotations_map(false)
}

/// In a merge patch, `null` removes a key.
pub fn env_patch() -> ObjectBuilder {
    env_map(true)
}

pub fn labels_patch() -> ObjectBuilder {
    labels_map(true)
}

pub fn annotations_patch() -> ObjectBuilder {
    annotations_map(true)
}

/// `command` or `args`.
pub fn words() -> ArrayBuilder {
    ArrayBuilder::new()
        .schema_type(or_null(Type::Array))
        .items(text(false))
}

pub fn port_name() -> ObjectBuilder {
    string(PORT_NAME_PATTERN)
        .schema_type(or_null(Type::String))
        .description(Some(
            "An IANA service name: 1 to 15 lowercase letters, digits and single '-', with a letter; \
             each name at most once",
        ))
}

pub fn protocol() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(or_null(Type::String))
        .enum_values(Some(["TCP", "UDP", "SCTP"]))
        .description(Some("`TCP` (default), `UDP` or `SCTP`"))
}

/// `resources` in a merge patch: `null` removes `requests` or `limits`.
pub fn resources_patch() -> ObjectBuilder {
    let list = || {
        OneOfBuilder::new()
            .item(Ref::from_schema_name("ResourceList"))
            .item(ObjectBuilder::new().schema_type(Type::Null))
    };
    ObjectBuilder::new()
        .schema_type(or_null(Type::Object))
        .property("requests", list())
        .property("limits", list())
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

/// `X-Request-ID`.
pub fn request_id() -> ObjectBuilder {
    string(HEADER_TOKEN_PATTERN)
        .min_length(Some(1))
        .max_length(Some(128))
}

pub fn quantity() -> ObjectBuilder {
    string(QUANTITY_PATTERN)
        .schema_type(or_null(Type::String))
        .description(Some(
            "A Kubernetes quantity, such as `250m` or `512Mi`; a request may not exceed its limit",
        ))
}

#[cfg(test)]
mod tests {
    use fancy_regex::Regex;
    use rand::{Rng, seq::IndexedRandom};

    use super::*;
    use crate::domain::{image, labels, names, quantity, workload};

    /// Random strings from `alphabet`, short and long, with `seeds` spliced
    /// in: enough near-misses to tell a pattern from its check.
    fn corpus(alphabet: &str, seeds: &[&str]) -> Vec<String> {
        let letters: Vec<char> = alphabet.chars().collect();
        let mut rng = rand::rng();
        let mut strings: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
        for _ in 0..20_000 {
            let len = match rng.random_range(0..10) {
                0 => rng.random_range(0..300),
                _ => rng.random_range(0..20),
            };
            let mut text: String = (0..len)
                .map(|_| *letters.choose(&mut rng).expect("an alphabet"))
                .collect();
            if rng.random_bool(0.3) {
                let seed = seeds.choose(&mut rng).expect("seeds");
                let at = rng.random_range(0..=text.chars().count());
                let byte = text.char_indices().nth(at).map_or(text.len(), |(i, _)| i);
                text.insert_str(byte, seed);
            }
            strings.push(text);
        }
        strings
    }

    fn agree(pattern: &str, check: impl Fn(&str) -> bool, alphabet: &str, seeds: &[&str]) {
        agree_up_to(usize::MAX, pattern, check, alphabet, seeds);
    }

    /// As `agree`, for strings of at most `max_len` bytes (the schema says
    /// the length apart).
    fn agree_up_to(
        max_len: usize,
        pattern: &str,
        check: impl Fn(&str) -> bool,
        alphabet: &str,
        seeds: &[&str],
    ) {
        let regex = Regex::new(pattern).expect("a valid pattern");
        for text in corpus(alphabet, seeds)
            .into_iter()
            .filter(|t| t.len() <= max_len)
        {
            assert_eq!(
                regex.is_match(&text).expect("matching ends"),
                check(&text),
                "{pattern} and its check disagree on {text:?}"
            );
        }
    }

    #[test]
    fn labels_and_identifiers() {
        let seeds = ["requests", "a-b", "web", "-", "0"];
        agree(
            IDENTIFIER_PATTERN,
            |v| names::check_dns_label(v, 63).is_ok() && v != "requests",
            "abz09-_.A",
            &seeds,
        );
        agree(
            DNS_LABEL_PATTERN,
            |v| names::check_dns_label(v, usize::MAX).is_ok(),
            "abz09-_.A",
            &seeds,
        );
        agree(
            HEADER_TOKEN_PATTERN,
            |v| names::check_header_token(v).is_ok(),
            "aZ09._@- /é",
            &["alice", "x"],
        );
    }

    #[test]
    fn label_and_annotation_keys_and_values() {
        let seeds = [
            "depman.io/",
            "app.kubernetes.io/name",
            "app.kubernetes.io/managed-by",
            "example.com/",
            "a",
        ];
        agree(
            KEY_PATTERN,
            |v| labels::check_key(v).is_ok(),
            "abZ09-_./",
            &seeds,
        );
        agree(
            LABEL_VALUE_PATTERN,
            |v| labels::check_label_value("k", v).is_ok(),
            "abZ09-_. é",
            &["v1"],
        );
    }

    #[test]
    fn images_quantities_env_and_port_names() {
        agree_up_to(
            MAX_IMAGE_LEN,
            IMAGE_PATTERN,
            |v| image::check_image_reference(v).is_ok(),
            "aZ09:/._-@[]",
            &[
                "nginx",
                ":1.27",
                "@sha256:0123456789abcdef0123456789abcdef",
                "localhost:5000/",
                "[::1]:5000/",
            ],
        );
        agree(
            QUANTITY_PATTERN,
            |v| quantity::parse_quantity(v).is_ok(),
            "0129.+-emunkMGTPEi ",
            &["Mi", "e3", "250m", "1e1234567890"],
        );
        agree(
            ENV_NAME_PATTERN,
            |v| workload::check_env_name(v).is_ok(),
            "aZ09_-.= ",
            &["PATH", "1X"],
        );
        agree(
            PORT_NAME_PATTERN,
            |v| workload::check_port_name(v).is_ok(),
            "az09-A",
            &["http", "--", "a-b"],
        );
        agree(TEXT_PATTERN, |v| !v.contains('\0'), "a \0é\n", &["x"]);
    }
}
