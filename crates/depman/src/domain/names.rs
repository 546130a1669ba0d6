//! Kubernetes object names as RFC 1123 labels, and the header values that
//! identify a caller and a request.

/// Checks an RFC 1123 label (lowercase alphanumerics and `-`, starting and
/// ending with an alphanumeric) of at most `max` characters.
pub fn check_dns_label(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > max {
        return Err(format!("must be at most {max} characters"));
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !value.chars().all(|c| alnum(c) || c == '-') {
        return Err("must consist of lowercase letters, digits and '-'".into());
    }
    if !value.starts_with(alnum) || !value.ends_with(alnum) {
        return Err("must start and end with a lowercase letter or digit".into());
    }
    Ok(())
}

/// Checks an RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn check_dns_subdomain(value: &str) -> Result<(), String> {
    if value.len() > 253 {
        return Err("must be at most 253 characters".into());
    }
    value
        .split('.')
        .try_for_each(|label| check_dns_label(label, 63))
        .map_err(|e| format!("each dot-separated part {e}"))
}

/// Checks the value of `X-User-ID` and `X-Request-ID`: 1 to 128 characters of
/// `A-Za-z0-9._@-`.
pub fn check_header_token(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 128 {
        return Err("must be 1 to 128 characters long".into());
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))
    {
        return Err("must consist of letters, digits and '.', '_', '@', '-'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["a", "web", "web-1", "1abc", &"a".repeat(63)] {
            assert_eq!(check_dns_label(good, 63), Ok(()), "{good}");
        }
        for bad in ["", "Web", "-web", "web-", "we_b", "we.b", &"a".repeat(64)] {
            assert!(check_dns_label(bad, 63).is_err(), "{bad}");
        }
        assert!(check_dns_label(&"a".repeat(51), 50).is_err());
    }

    #[test]
    fn dns_subdomains() {
        assert_eq!(check_dns_subdomain("example.com"), Ok(()));
        assert_eq!(check_dns_subdomain("a"), Ok(()));
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "A.com",
            &format!("{}.b", "a".repeat(253)),
        ] {
            assert!(check_dns_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_tokens() {
        for good in ["alice", "alice@example.com", "u_1.2-3", &"x".repeat(128)] {
            assert_eq!(check_header_token(good), Ok(()), "{good}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(129)] {
            assert!(check_header_token(bad).is_err(), "{bad}");
        }
    }
}
