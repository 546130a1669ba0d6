//! The desired state of a deployment, as a user asks for it and as depman
//! stores it: parsed and checked field by field where it enters.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::IgnoredAny};
use utoipa::ToSchema;

use super::{
    FieldError,
    image::check_image_reference,
    json, labels,
    names::{MAX_NAME_LEN, check_dns_label},
    quantity::parse_quantity,
    schema,
    workload::{
        DEFAULT_PROGRESS_DEADLINE, MAX_REPLICAS, PROGRESS_DEADLINE, check_env_name, check_port_name,
    },
};

/// The full desired spec of a deployment, valid by construction: only
/// [`DeploymentInput::validate`] makes one from user input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentSpec {
    pub name: String,
    pub namespace: String,
    pub identifier: String,
    pub image: String,
    pub replicas: i32,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<Port>,
    pub resources: Resources,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// Specs stored before the field existed take Kubernetes' default.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline_seconds: i32,
}

fn default_progress_deadline() -> i32 {
    DEFAULT_PROGRESS_DEADLINE as i32
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// 1 to 65535; a port/protocol pair at most once.
    #[schema(minimum = 1, maximum = 65535)]
    #[serde(deserialize_with = "json::integer")]
    pub container_port: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::port_name)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::protocol)]
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, deserialize_with = "json::object")]
    pub requests: ResourceList,
    #[serde(default, deserialize_with = "json::object")]
    pub limits: ResourceList,
}

/// Kubernetes quantities, such as `250m` CPU or `512Mi` memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::quantity)]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::quantity)]
    pub memory: Option<String>,
}

/// A deployment as a CREATE body gives it, before any check. Every field is
/// optional here so that a missing one is reported like any other mistake,
/// next to the others.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentInput {
    #[schema(schema_with = schema::name, required = true)]
    pub name: Option<String>,
    #[schema(schema_with = schema::namespace, required = true)]
    pub namespace: Option<String>,
    #[schema(schema_with = schema::image, required = true)]
    pub image: Option<String>,
    #[schema(schema_with = schema::identifier)]
    pub identifier: Option<String>,
    #[schema(schema_with = schema::replicas)]
    #[serde(default, deserialize_with = "json::optional_integer")]
    pub replicas: Option<i64>,
    #[schema(schema_with = schema::env)]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "json::optional_objects")]
    pub ports: Option<Vec<Port>>,
    #[serde(default, deserialize_with = "json::optional_object")]
    pub resources: Option<Resources>,
    #[schema(schema_with = schema::labels)]
    pub labels: Option<BTreeMap<String, String>>,
    #[schema(schema_with = schema::annotations)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[schema(schema_with = schema::words)]
    pub command: Option<Vec<String>>,
    #[schema(schema_with = schema::words)]
    pub args: Option<Vec<String>>,
    /// Absent from the fingerprint when absent from the body, so that keys
    /// used before the field existed still replay.
    #[schema(schema_with = schema::progress_deadline)]
    #[serde(
        default,
        deserialize_with = "json::optional_integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub progress_deadline_seconds: Option<i64>,
}

/// The body of a PATCH: an RFC 7386 merge patch of the deployment's desired
/// spec, of these fields only. Objects merge key by key and `null` removes a
/// key; a top-level `null` resets the field to its default. The values are
/// checked on the merged spec, as a CREATE body is: this type names what
/// may be patched, and documents it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentPatch {
    /// The image cannot be removed: `null` is refused.
    #[schema(schema_with = schema::image)]
    pub image: Option<IgnoredAny>,
    #[schema(schema_with = schema::replicas)]
    pub replicas: Option<IgnoredAny>,
    #[schema(schema_with = schema::env_patch)]
    pub env: Option<IgnoredAny>,
    #[schema(value_type = Option<Vec<Port>>)]
    pub ports: Option<IgnoredAny>,
    #[schema(schema_with = schema::resources_patch)]
    pub resources: Option<IgnoredAny>,
    #[schema(schema_with = schema::labels_patch)]
    pub labels: Option<IgnoredAny>,
    #[schema(schema_with = schema::annotations_patch)]
    pub annotations: Option<IgnoredAny>,
    #[schema(schema_with = schema::words)]
    pub command: Option<IgnoredAny>,
    #[schema(schema_with = schema::words)]
    pub args: Option<IgnoredAny>,
    #[schema(schema_with = schema::progress_deadline)]
    pub progress_deadline_seconds: Option<IgnoredAny>,
}

impl DeploymentInput {
    /// Checks every field and returns the spec, or every problem found, each
    /// naming its field. `new_identifier` makes the identifier when the input
    /// has none.
    pub fn validate(
        self,
        new_identifier: impl FnOnce(&str) -> String,
    ) -> Result<DeploymentSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut check = |field: &str, result: Result<(), String>| {
            if let Err(message) = result {
                errors.push(FieldError::new(field, message));
            }
        };
        let name = required(&mut check, "name", self.name, |v| {
            check_dns_label(v, MAX_NAME_LEN)
        });
        let namespace = required(&mut check, "namespace", self.namespace, |v| {
            check_dns_label(v, 63)
        });
        let image = required(&mut check, "image", self.image, check_image_reference);
        if let Some(identifier) = &self.identifier {
            check("identifier", check_dns_label(identifier, 63));
            if identifier == "requests" {
                // GET /api/v1/deployments/requests lists requests, so a
                // deployment of that name could never be read.
                check("identifier", Err("`requests` is reserved".into()));
            }
        }
        let replicas = self.replicas.unwrap_or(1);
        if !(0..=MAX_REPLICAS).contains(&replicas) {
            check(
                "replicas",
                Err(format!("must be between 0 and {MAX_REPLICAS}")),
            );
        }
        let progress_deadline = self
            .progress_deadline_seconds
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE);
        if !PROGRESS_DEADLINE.contains(&progress_deadline) {
            check(
                "progress_deadline_seconds",
                Err(format!(
                    "must be between {} and {} seconds",
                    PROGRESS_DEADLINE.start(),
                    PROGRESS_DEADLINE.end()
                )),
            );
        }
        let env = self.env.unwrap_or_default();
        env.keys().for_each(|key| check("env", check_env_name(key)));
        let ports = self.ports.unwrap_or_default();
        check_ports(&mut check, &ports);
        let resources = self.resources.unwrap_or_default();
        check_resources(&mut check, &resources);
        let labels = self.labels.unwrap_or_default();
        for (key, value) in &labels {
            check("labels", labels::check_key(key));
            check("labels", labels::check_label_value(key, value));
        }
        let annotations = self.annotations.unwrap_or_default();
        annotations
            .keys()
            .for_each(|key| check("annotations", labels::check_key(key)));

        if !errors.is_empty() {
            return Err(errors);
        }
        let identifier = self.identifier.unwrap_or_else(|| new_identifier(&name));
        Ok(DeploymentSpec {
            name,
            namespace,
            identifier,
            image,
            replicas: replicas as i32,
            env,
            ports,
            resources,
            labels,
            annotations,
            command: self.command.unwrap_or_default(),
            args: self.args.unwrap_or_default(),
            progress_deadline_seconds: progress_deadline as i32,
        })
    }
}

/// A field the input must have, checked by `valid` when present.
fn required(
    check: &mut impl FnMut(&str, Result<(), String>),
    field: &str,
    value: Option<String>,
    valid: impl Fn(&str) -> Result<(), String>,
) -> String {
    match &value {
        None => check(field, Err("is required".into())),
        Some(value) => check(field, valid(value)),
    }
    value.unwrap_or_default()
}

fn check_ports(check: &mut impl FnMut(&str, Result<(), String>), ports: &[Port]) {
    let mut seen_ports = Vec::new();
    let mut seen_names = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        let field = |name: &str| format!("ports[{index}].{name}");
        if !(1..=65535).contains(&port.container_port) {
            check(
                &field("container_port"),
                Err("must be between 1 and 65535".into()),
            );
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            check(&field("protocol"), Err("must be TCP, UDP or SCTP".into()));
        }
        if seen_ports.contains(&(port.container_port, protocol)) {
            check(
                &field("container_port"),
                Err(format!("{}/{protocol} is given twice", port.container_port)),
            );
        }
        seen_ports.push((port.container_port, protocol));
        if let Some(name) = &port.name {
            check(&field("name"), check_port_name(name));
            if seen_names.contains(&name) {
                check(&field("name"), Err(format!("`{name}` is given twice")));
            }
            seen_names.push(name);
        }
    }
}

fn check_resources(check: &mut impl FnMut(&str, Result<(), String>), resources: &Resources) {
    let (requests, limits) = (&resources.requests, &resources.limits);
    let pairs = [
        ("cpu", &requests.cpu, &limits.cpu),
        ("memory", &requests.memory, &limits.memory),
    ];
    for (resource, request, limit) in pairs {
        let request_field = format!("resources.requests.{resource}");
        let limit_field = format!("resources.limits.{resource}");
        let request = quantity(check, &request_field, request);
        let limit = quantity(check, &limit_field, limit);
        if let (Some(request), Some(limit)) = (request, limit)
            && request > limit
        {
            check(
                &request_field,
                Err(format!("must not exceed {limit_field}")),
            );
        }
    }
}

fn quantity(
    check: &mut impl FnMut(&str, Result<(), String>),
    field: &str,
    value: &Option<String>,
) -> Option<f64> {
    match parse_quantity(value.as_deref()?) {
        Ok(amount) => Some(amount),
        Err(message) => {
            check(field, Err(message));
            None
        }
    }
}

/// Applies an RFC 7386 JSON merge patch: objects merge key by key, `null`
/// removes a key, anything else replaces the target.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn minimal() -> Value {
        json!({"name": "web", "namespace": "team-a", "image": "nginx:1.27"})
    }

    fn validate(body: Value) -> Result<DeploymentSpec, Vec<FieldError>> {
        let input: DeploymentInput = serde_json::from_value(body).expect("the body deserializes");
        input.validate(|name| format!("{name}-x1y2z"))
    }

    /// The fields of the errors `body` gets, or none when it is valid.
    fn error_fields(body: Value) -> Vec<String> {
        validate(body)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    fn with(field: &str, value: Value) -> Value {
        let mut body = minimal();
        body[field] = value;
        body
    }

    #[test]
    fn a_minimal_body_gets_defaults_and_a_generated_identifier() {
        let spec = validate(minimal()).expect("valid");
        assert_eq!(spec.identifier, "web-x1y2z");
        assert_eq!(spec.replicas, 1);
        assert_eq!(spec.progress_deadline_seconds, 600);
        assert!(spec.env.is_empty() && spec.ports.is_empty() && spec.labels.is_empty());
    }

    #[test]
    fn a_given_identifier_is_kept() {
        let spec = validate(with("identifier", json!("web-prod"))).expect("valid");
        assert_eq!(spec.identifier, "web-prod");
    }

    #[test]
    fn missing_required_fields_are_each_named() {
        assert_eq!(error_fields(json!({})), ["name", "namespace", "image"]);
    }

    #[test]
    fn each_field_is_checked() {
        let cases: Vec<(&str, Value, bool)> = vec![
            ("name", json!("web-1"), true),
            ("name", json!("Web"), false),
            ("name", json!("a".repeat(50)), true),
            ("name", json!("a".repeat(51)), false),
            ("namespace", json!("kube-system"), true),
            ("namespace", json!("team_a"), false),
            ("image", json!("ghcr.io/org/app:v1"), true),
            ("image", json!("not an image"), false),
            ("identifier", json!("a".repeat(63)), true),
            ("identifier", json!("a".repeat(64)), false),
            ("identifier", json!("requests"), false),
            ("replicas", json!(0), true),
            ("replicas", json!(1000), true),
            ("replicas", json!(1001), false),
            ("replicas", json!(-1), false),
            ("progress_deadline_seconds", json!(10), true),
            ("progress_deadline_seconds", json!(3600), true),
            ("progress_deadline_seconds", json!(9), false),
            ("progress_deadline_seconds", json!(3601), false),
            ("env", json!({"LOG_LEVEL": "debug", "my.var-1": ""}), true),
            ("env", json!({"1ST": "x"}), false),
            ("env", json!({"A=B": "x"}), false),
            (
                "labels",
                json!({"tier": "web", "example.com/team": ""}),
                true,
            ),
            ("labels", json!({"tier": "-web"}), false),
            ("labels", json!({"depman.io/owner": "me"}), false),
            (
                "labels",
                json!({"app.kubernetes.io/managed-by": "me"}),
                false,
            ),
            (
                "annotations",
                json!({"example.com/note": "any text at all"}),
                true,
            ),
            ("annotations", json!({"bad key": "x"}), false),
            ("command", json!(["/bin/sh", "-c"]), true),
            ("args", json!(["echo", "hi"]), true),
        ];
        for (field, value, valid) in cases {
            let fields = error_fields(with(field, value.clone()));
            if valid {
                assert!(fields.is_empty(), "{field}={value}: {fields:?}");
            } else {
                assert_eq!(fields, [field], "{field}={value}");
            }
        }
    }

    #[test]
    fn ports_are_checked_one_by_one() {
        let ok = json!([{"container_port": 80, "name": "http"}, {"container_port": 53, "protocol": "UDP"}]);
        assert!(error_fields(with("ports", ok)).is_empty());
        let cases = [
            (json!([{"container_port": 0}]), "ports[0].container_port"),
            (
                json!([{"container_port": 65536}]),
                "ports[0].container_port",
            ),
            (
                json!([{"container_port": 80, "protocol": "HTTP"}]),
                "ports[0].protocol",
            ),
            (
                json!([{"container_port": 80, "name": "HTTP"}]),
                "ports[0].name",
            ),
            (
                json!([{"container_port": 80, "name": "a-very-long-port-name"}]),
                "ports[0].name",
            ),
            (
                json!([{"container_port": 80}, {"container_port": 80}]),
                "ports[1].container_port",
            ),
            (
                json!([{"container_port": 80, "name": "web"}, {"container_port": 81, "name": "web"}]),
                "ports[1].name",
            ),
        ];
        for (ports, field) in cases {
            assert_eq!(
                error_fields(with("ports", ports.clone())),
                [field],
                "{ports}"
            );
        }
    }

    #[test]
    fn resources_are_quantities_with_requests_within_limits() {
        let ok = json!({"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}});
        assert!(error_fields(with("resources", ok)).is_empty());
        let cases = [
            (
                json!({"requests": {"cpu": "lots"}}),
                "resources.requests.cpu",
            ),
            (
                json!({"limits": {"memory": "1KB"}}),
                "resources.limits.memory",
            ),
            (
                json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
                "resources.requests.cpu",
            ),
        ];
        for (resources, field) in cases {
            assert_eq!(
                error_fields(with("resources", resources.clone())),
                [field],
                "{resources}"
            );
        }
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target =
            json!({"image": "a", "env": {"A": "1", "B": "2"}, "ports": [{"container_port": 80}]});
        merge_patch(
            &mut target,
            &json!({"image": "b", "env": {"B": null, "C": "3"}, "ports": []}),
        );
        assert_eq!(
            target,
            json!({"image": "b", "env": {"A": "1", "C": "3"}, "ports": []})
        );
        merge_patch(&mut target, &json!({"env": null}));
        assert_eq!(target, json!({"image": "b", "ports": []}));
    }

    #[test]
    fn integral_numbers_count_as_integers() {
        assert_eq!(
            validate(with("replicas", json!(3.0))).map(|s| s.replicas),
            Ok(3)
        );
        let port = json!([{"container_port": 80.0}]);
        let spec = validate(with("ports", port)).expect("valid");
        assert_eq!(spec.ports[0].container_port, 80);
        for bad in [json!(2.5), json!("3"), json!(1e300)] {
            let body = with("replicas", bad.clone());
            assert!(
                serde_json::from_value::<DeploymentInput>(body).is_err(),
                "{bad}"
            );
        }
        let null = serde_json::from_value::<DeploymentInput>(with("replicas", Value::Null));
        assert_eq!(null.expect("null is no replicas").replicas, None);
    }

    #[test]
    fn a_spec_stored_before_the_progress_deadline_existed_takes_the_default() {
        let mut stored = serde_json::to_value(validate(minimal()).expect("valid")).unwrap();
        stored
            .as_object_mut()
            .unwrap()
            .remove("progress_deadline_seconds");
        let spec: DeploymentSpec = serde_json::from_value(stored).expect("a stored spec");
        assert_eq!(spec.progress_deadline_seconds, 600);
    }

    #[test]
    fn nested_objects_are_objects_not_arrays() {
        for (field, value) in [
            ("ports", json!([[80, "http", "TCP"]])),
            ("resources", json!([{}, {}])),
            ("resources", json!({"requests": [null, null]})),
        ] {
            let body = with(field, value.clone());
            assert!(
                serde_json::from_value::<DeploymentInput>(body).is_err(),
                "{value}"
            );
        }
        let nested = json!({"requests": {"cpu": "1"}, "limits": {}});
        assert!(serde_json::from_value::<DeploymentInput>(with("resources", nested)).is_ok());
    }

    #[test]
    fn unknown_fields_do_not_deserialize() {
        assert!(serde_json::from_value::<DeploymentInput>(with("replica", json!(2))).is_err());
        let port = json!([{"container_port": 80, "hostPort": 80}]);
        assert!(serde_json::from_value::<DeploymentInput>(with("ports", port)).is_err());
    }
}
