//! What a user may create (contract: "Namespaces and limits"): the
//! namespaces the namespace policy gives them, never a system namespace or
//! depman's own, and no more live deployments than the quota.

use std::{collections::BTreeMap, path::Path};

use anyhow::Context as _;
use serde::Deserialize;

/// Refused to everyone, whatever the policy says.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `None`: every namespace but the refused ones.
    namespaces: Option<NamespacePolicy>,
    /// The namespace depman runs in.
    own_namespace: Option<String>,
    /// Live deployments a user may have at once; `None`: no limit.
    pub max_deployments: Option<u32>,
}

/// `DEPMAN_NAMESPACE_POLICY`: for each user and each group, the namespace
/// patterns (`*` any run of characters, `?` one) it may create in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespacePolicy {
    #[serde(default)]
    users: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
}

impl Policy {
    pub fn new(
        namespaces: Option<NamespacePolicy>,
        own_namespace: Option<String>,
        max_deployments: Option<u32>,
    ) -> Self {
        Self {
            namespaces,
            own_namespace: own_namespace.filter(|n| !n.is_empty()),
            max_deployments,
        }
    }

    /// Why `user` (in `groups`) may not create in `namespace`, if not.
    pub fn refuse_namespace(
        &self,
        user: &str,
        groups: &[String],
        namespace: &str,
    ) -> Option<String> {
        if SYSTEM_NAMESPACES.contains(&namespace)
            || self.own_namespace.as_deref() == Some(namespace)
        {
            return Some(format!(
                "namespace `{namespace}` is reserved: no user may deploy there"
            ));
        }
        let policy = self.namespaces.as_ref()?;
        let patterns = policy
            .users
            .get(user)
            .into_iter()
            .chain(groups.iter().filter_map(|group| policy.groups.get(group)))
            .flatten();
        let allowed = patterns.into_iter().any(|pattern| glob(pattern, namespace));
        (!allowed)
            .then(|| format!("the namespace policy does not let `{user}` deploy to `{namespace}`"))
    }
}

impl NamespacePolicy {
    /// Reads the policy file (YAML).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the namespace policy {}", path.display()))?;
        serde_saphyr::from_str(&text)
            .with_context(|| format!("parsing the namespace policy {}", path.display()))
    }
}

/// `*` matches any run of characters (none included), `?` exactly one.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    // The classic two-pointer walk, backtracking to the last `*`.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_shells_do() {
        assert!(glob("team-a-*", "team-a-web"));
        assert!(glob("team-a-*", "team-a-"));
        assert!(!glob("team-a-*", "team-b-web"));
        assert!(glob("*-dev", "web-dev"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("sandbox", "sandbox"));
        assert!(!glob("sandbox", "sandbox2"));
        assert!(glob("team-?", "team-a"));
        assert!(!glob("team-?", "team-ab"));
    }

    fn policy() -> Policy {
        let rules: NamespacePolicy =
            serde_saphyr::from_str("users:\n  alice: [sandbox]\ngroups:\n  team-a: ['team-a-*']\n")
                .expect("a policy");
        Policy::new(Some(rules), Some("dep-manager".into()), None)
    }

    #[test]
    fn users_and_groups_get_their_patterns_and_nothing_else() {
        let policy = policy();
        let team_a = ["team-a".to_owned()];
        assert_eq!(policy.refuse_namespace("bob", &team_a, "team-a-web"), None);
        assert!(
            policy
                .refuse_namespace("bob", &team_a, "team-b-web")
                .is_some()
        );
        assert!(policy.refuse_namespace("bob", &[], "team-a-web").is_some());
        assert_eq!(policy.refuse_namespace("alice", &[], "sandbox"), None);
        assert!(policy.refuse_namespace("carol", &[], "sandbox").is_some());
    }

    #[test]
    fn system_namespaces_and_depmans_own_are_refused_to_all() {
        let open = Policy::new(None, Some("dep-manager".into()), None);
        assert_eq!(open.refuse_namespace("alice", &[], "team-a"), None);
        for namespace in [
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "dep-manager",
        ] {
            assert!(
                open.refuse_namespace("alice", &[], namespace).is_some(),
                "{namespace}"
            );
        }
        let everything: NamespacePolicy =
            serde_saphyr::from_str("users:\n  alice: ['*']\n").expect("a policy");
        let wide = Policy::new(Some(everything), None, None);
        assert!(wide.refuse_namespace("alice", &[], "kube-system").is_some());
    }
}
