//! Container image references, checked against the grammar of the
//! distribution project (`[host[:port]/]path[:tag][@digest]`), the one
//! container runtimes parse.

use std::sync::LazyLock;

use regex::Regex;

static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let domain_component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let domain =
        format!(r"(?:{domain_component}(?:\.{domain_component})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?");
    let path_component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    let tag = r"[\w][\w.-]{0,127}";
    let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    let pattern = format!(
        r"^(?:(?P<domain>{domain})/)?(?P<path>{path_component}(?:/{path_component})*)(?::{tag})?(?:@{digest})?$"
    );
    Regex::new(&pattern).expect("the image reference pattern is valid")
});

/// Checks an image reference such as `nginx`, `nginx:1.27`,
/// `registry.example.com:5000/team/app@sha256:...`.
pub fn check_image_reference(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    let Some(parts) = REFERENCE.captures(value) else {
        return Err("must be an image reference such as `nginx:1.27` or `registry.example.com/team/app@sha256:<digest>`".into());
    };
    let name_len =
        parts.name("domain").map_or(0, |d| d.len() + 1) + parts.name("path").map_or(0, |p| p.len());
    if name_len > 255 {
        return Err("repository name must be at most 255 characters".into());
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
        ] {
            assert!(check_image_reference(bad).is_err(), "{bad}");
        }
    }
}
