//! Container image references, checked against the grammar of the
//! distribution project (`[host[:port]/]path[:tag][@digest]`), the one
//! container runtimes parse.

use std::sync::LazyLock;

use regex::Regex;

/// `[host[:port]/]path[:tag][@digest]`, as ECMA-262 and Rust's regex both
/// read it: the OpenAPI document carries this very pattern.
pub const IMAGE_PATTERN: &str = concat!(
    "^(?:",
    // host: DNS components or an IPv6 literal, then an optional port
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?/",
    ")?",
    // path components
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*",
    // tag
    r"(?::[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})?",
    // digest
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    "$",
);

/// At most this many characters in all (the distribution project's limit
/// on the repository name, applied to the whole reference).
pub const MAX_IMAGE_LEN: usize = 255;

static REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(IMAGE_PATTERN).expect("the image reference pattern is valid"));

/// Checks an image reference such as `nginx`, `nginx:1.27`,
/// `registry.example.com:5000/team/app@sha256:...`.
pub fn check_image_reference(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > MAX_IMAGE_LEN {
        return Err(format!("must be at most {MAX_IMAGE_LEN} characters"));
    }
    if !REFERENCE.is_match(value) {
        return Err("must be an image reference such as `nginx:1.27` or `registry.example.com/team/app@sha256:<digest>`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_references_runtimes_accept() {
        let digest = format!("sha256:{}", "a".repeat(64));
        for good in [
            "nginx".to_owned(),
            "nginx:1.27".to_owned(),
            "nginx:1.27-alpine".to_owned(),
            "library/nginx:latest".to_owned(),
            "ghcr.io/org/team/app:v1.2.3".to_owned(),
            "localhost:5000/app".to_owned(),
            "registry.example.com:5000/a_b/c-d/e.f:tag_1".to_owned(),
            format!("nginx@{digest}"),
            format!("quay.io/app:1.0@{digest}"),
            "[::1]:5000/app:1".to_owned(),
        ] {
            assert_eq!(check_image_reference(&good), Ok(()), "{good}");
        }
    }

    #[test]
    fn rejects_what_runtimes_reject() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:-tag",
            "ngi nx",
            "nginx@sha256:abc",
            "/nginx",
            "nginx/",
            "a//b",
            "nginx:1.0:2",
            &format!("nginx:{}", "t".repeat(129)),
            &format!("{}:1", "a".repeat(256)),
            &format!("{}/app:1", "a".repeat(250)),
        ] {
            assert!(check_image_reference(bad).is_err(), "{bad}");
        }
    }
}
