//! Label and annotation keys and values, as the Kubernetes API server checks
//! them, and the keys depman keeps for itself.

use super::names::check_dns_subdomain;

/// A key that `check_key` takes, for the OpenAPI document: not reserved,
/// an optional DNS subdomain prefix of at most 253 characters and `/`, then
/// a name of at most 63 characters.
pub const KEY_PATTERN: &str = concat!(
    r"^(?!depman\.io/)(?!app\.kubernetes\.io/(?:managed-by|name)$)",
    r"(?:(?=[^/]{1,253}/)[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)*/)?",
    r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
);

/// A label value that `check_label_value` takes: empty, or at most 63
/// characters.
pub const LABEL_VALUE_PATTERN: &str = r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$";

/// Keys depman sets on every Deployment it manages; a user cannot set them.
const RESERVED_KEYS: [&str; 2] = ["app.kubernetes.io/managed-by", "app.kubernetes.io/name"];
const RESERVED_PREFIX: &str = "depman.io/";

/// Checks a qualified name: an optional DNS subdomain prefix and `/`, then a
/// name of at most 63 alphanumerics, `-`, `_` and `.`, starting and ending
/// with an alphanumeric. Label and annotation keys are qualified names.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.starts_with(RESERVED_PREFIX) || RESERVED_KEYS.contains(&key) {
        return Err(format!(
            "key `{key}` is reserved for depman (`{RESERVED_PREFIX}*`, {})",
            RESERVED_KEYS.join(", ")
        ));
    }
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        check_dns_subdomain(prefix).map_err(|e| format!("key `{key}`: its prefix {e}"))?;
    }
    if name.is_empty() || name.len() > 63 {
        return Err(format!("key `{key}`: its name must be 1 to 63 characters"));
    }
    if !is_label_text(name) {
        return Err(format!(
            "key `{key}`: its name must consist of alphanumerics, '-', '_' and '.', starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 characters of the same set as
/// a key's name.
pub fn check_label_value(key: &str, value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err(format!("value of `{key}` must be at most 63 characters"));
    }
    if !value.is_empty() && !is_label_text(value) {
        return Err(format!(
            "value of `{key}` must consist of alphanumerics, '-', '_' and '.', starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

fn is_label_text(text: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    text.starts_with(alnum)
        && text.ends_with(alnum)
        && text
            .chars()
            .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in [
            "app",
            "tier",
            "example.com/team",
            "a-b_c.d",
            "A1",
            &"k".repeat(63),
        ] {
            assert_eq!(check_key(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-app",
            "app-",
            "a b",
            "example.com/",
            "/name",
            "Example.com/x",
            "a/b/c",
            &"k".repeat(64),
            "depman.io/identifier",
            "depman.io/anything",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/name",
        ] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reserved_keys_are_named_as_such() {
        let error = check_key("depman.io/owner").unwrap_err();
        assert!(error.contains("reserved"), "{error}");
    }

    #[test]
    fn label_values() {
        for good in ["", "v1", "a.b-c_d", &"v".repeat(63)] {
            assert_eq!(check_label_value("k", good), Ok(()), "{good}");
        }
        for bad in ["-v", "v-", "a b", "ü", &"v".repeat(64)] {
            assert!(check_label_value("k", bad).is_err(), "{bad}");
        }
    }
}
