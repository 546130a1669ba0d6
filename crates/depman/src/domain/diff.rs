//! What a change would change: the differing leaves of two JSON documents,
//! each named by its JSON Pointer (RFC 6901), so that a path stays
//! unambiguous even through keys like `app.kubernetes.io/name`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// One value that differs: `null` on the side where it is absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Difference {
    /// JSON Pointer into the object (`/spec/template/spec/containers/0/image`).
    pub path: String,
    pub before: Value,
    pub after: Value,
}

/// The leaves where `before` and `after` differ, in document order (object
/// keys sorted, array items by index). A side that is absent (`None`) makes
/// every leaf of the other side a difference, so a creation or a deletion
/// lists what it adds or removes field by field.
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> Vec<Difference> {
    let mut differences = Vec::new();
    walk(&mut String::new(), before, after, &mut differences);
    differences
}

fn walk(
    path: &mut String,
    before: Option<&Value>,
    after: Option<&Value>,
    out: &mut Vec<Difference>,
) {
    if containers(before, after, Value::is_object) {
        let mut union: Vec<&String> = keys(before).chain(keys(after)).collect();
        union.sort();
        union.dedup();
        for key in union {
            let (b, a) = (
                before.and_then(|v| v.get(key)),
                after.and_then(|v| v.get(key)),
            );
            descend(path, &escape(key), b, a, out);
        }
    } else if containers(before, after, Value::is_array) {
        let length = |side: Option<&Value>| side.and_then(Value::as_array).map_or(0, Vec::len);
        for index in 0..length(before).max(length(after)) {
            let (b, a) = (
                before.and_then(|v| v.get(index)),
                after.and_then(|v| v.get(index)),
            );
            descend(path, &index.to_string(), b, a, out);
        }
    } else if before != after {
        out.push(Difference {
            path: path.clone(),
            before: before.cloned().unwrap_or(Value::Null),
            after: after.cloned().unwrap_or(Value::Null),
        });
    }
}

fn keys(side: Option<&Value>) -> impl Iterator<Item = &String> {
    side.and_then(Value::as_object)
        .into_iter()
        .flat_map(|map| map.keys())
}

/// Both sides are of `kind`, or one is and the other is absent: then the
/// walk goes on into them.
fn containers(before: Option<&Value>, after: Option<&Value>, kind: fn(&Value) -> bool) -> bool {
    match (before, after) {
        (Some(before), Some(after)) => kind(before) && kind(after),
        (Some(side), None) | (None, Some(side)) => kind(side),
        (None, None) => false,
    }
}

fn descend(
    path: &mut String,
    token: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    out: &mut Vec<Difference>,
) {
    let length = path.len();
    path.push('/');
    path.push_str(token);
    walk(path, before, after, out);
    path.truncate(length);
}

/// RFC 6901: `~` is `~0` and `/` is `~1` within a token.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(differences: &[Difference]) -> Vec<&str> {
        differences.iter().map(|d| d.path.as_str()).collect()
    }

    #[test]
    fn equal_documents_have_no_difference() {
        let object = json!({"spec": {"replicas": 2, "containers": [{"image": "a"}]}});
        assert!(diff(Some(&object), Some(&object)).is_empty());
    }

    #[test]
    fn changed_leaves_are_named_by_json_pointer() {
        let before = json!({
            "metadata": {"labels": {"app.kubernetes.io/name": "web", "a~b": "1"}},
            "spec": {"replicas": 1, "containers": [{"image": "nginx:1.27", "name": "web"}]},
        });
        let after = json!({
            "metadata": {"labels": {"app.kubernetes.io/name": "api", "a~b": "1"}},
            "spec": {"replicas": 3, "containers": [{"image": "nginx:1.28", "name": "web"}]},
        });
        assert_eq!(
            diff(Some(&before), Some(&after)),
            [
                Difference {
                    path: "/metadata/labels/app.kubernetes.io~1name".into(),
                    before: json!("web"),
                    after: json!("api"),
                },
                Difference {
                    path: "/spec/containers/0/image".into(),
                    before: json!("nginx:1.27"),
                    after: json!("nginx:1.28"),
                },
                Difference {
                    path: "/spec/replicas".into(),
                    before: json!(1),
                    after: json!(3),
                },
            ]
        );
    }

    #[test]
    fn added_and_removed_fields_show_null_on_the_other_side() {
        let before = json!({"env": [{"name": "A", "value": "1"}], "gone": true});
        let after = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
        let differences = diff(Some(&before), Some(&after));
        assert_eq!(
            paths(&differences),
            ["/env/1/name", "/env/1/value", "/gone"]
        );
        assert_eq!(differences[0].before, Value::Null);
        assert_eq!(differences[0].after, json!("B"));
        assert_eq!(differences[2].before, json!(true));
        assert_eq!(differences[2].after, Value::Null);
    }

    #[test]
    fn a_missing_side_lists_every_leaf_of_the_other() {
        let object = json!({"spec": {"replicas": 2}, "metadata": {"name": "web"}});
        let created = diff(None, Some(&object));
        assert_eq!(paths(&created), ["/metadata/name", "/spec/replicas"]);
        assert!(created.iter().all(|d| d.before.is_null()));
        let deleted = diff(Some(&object), None);
        assert_eq!(paths(&deleted), ["/metadata/name", "/spec/replicas"]);
        assert!(deleted.iter().all(|d| d.after.is_null()));
    }

    #[test]
    fn a_value_changing_kind_is_one_difference() {
        let before = json!({"x": {"y": 1}});
        let after = json!({"x": "flat"});
        let differences = diff(Some(&before), Some(&after));
        assert_eq!(
            differences,
            [Difference {
                path: "/x".into(),
                before: json!({"y": 1}),
                after: json!("flat"),
            }]
        );
    }
}
