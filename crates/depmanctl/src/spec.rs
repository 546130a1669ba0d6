//! The body of a create or update, from a file, flags, or both.

use std::io::Read;

use serde_json::{Map, Value};

use crate::{cli::SpecFlags, error::CtlError};

/// A CREATE body: the file's object with the flags set over it.
pub fn create_body(flags: &SpecFlags) -> Result<Value, CtlError> {
    let body = body(flags, false)?;
    if body.as_object().is_some_and(Map::is_empty) {
        return Err(CtlError::Usage(
            "nothing to create: give -f FILE or --name, --namespace and --image".into(),
        ));
    }
    Ok(body)
}

/// An UPDATE body: a merge patch, where `KEY-` removes a key.
pub fn patch_body(flags: &SpecFlags) -> Result<Value, CtlError> {
    if flags.name.is_some() || flags.namespace.is_some() || flags.identifier.is_some() {
        return Err(CtlError::Usage(
            "--name, --namespace and --identifier cannot change: create a new deployment".into(),
        ));
    }
    let body = body(flags, true)?;
    if body.as_object().is_some_and(Map::is_empty) {
        return Err(CtlError::Usage(
            "nothing to change: give -f FILE or flags such as --image or --replicas".into(),
        ));
    }
    Ok(body)
}

fn body(flags: &SpecFlags, patch: bool) -> Result<Value, CtlError> {
    let mut body = match &flags.file {
        Some(path) => read(path)?,
        None => Map::new(),
    };
    let strings = [
        ("name", &flags.name),
        ("namespace", &flags.namespace),
        ("image", &flags.image),
        ("identifier", &flags.identifier),
    ];
    for (field, value) in strings {
        if let Some(value) = value {
            body.insert(field.into(), value.clone().into());
        }
    }
    if let Some(replicas) = flags.replicas {
        body.insert("replicas".into(), replicas.into());
    }
    let maps = [
        ("env", &flags.env),
        ("labels", &flags.labels),
        ("annotations", &flags.annotations),
    ];
    for (field, pairs) in maps {
        if pairs.is_empty() {
            continue;
        }
        let map = body
            .entry(field)
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(map) = map.as_object_mut() else {
            return Err(CtlError::Usage(format!(
                "`{field}` in the file is not a map"
            )));
        };
        for pair in pairs {
            let (key, value) = key_value(field, pair, patch)?;
            map.insert(key, value);
        }
    }
    if !flags.ports.is_empty() {
        let ports = flags
            .ports
            .iter()
            .map(|port| serde_json::json!({"container_port": port}))
            .collect();
        body.insert("ports".into(), Value::Array(ports));
    }
    Ok(Value::Object(body))
}

/// `KEY=VALUE`, or (in a patch) `KEY-` for removing the key.
fn key_value(field: &str, pair: &str, patch: bool) -> Result<(String, Value), CtlError> {
    if let Some((key, value)) = pair.split_once('=') {
        return Ok((key.to_owned(), value.into()));
    }
    match pair.strip_suffix('-') {
        Some(key) if patch => Ok((key.to_owned(), Value::Null)),
        _ => Err(CtlError::Usage(format!(
            "--{} `{pair}`: expected KEY=VALUE{}",
            field.trim_end_matches('s'),
            if patch { " or KEY-" } else { "" }
        ))),
    }
}

/// A YAML or JSON object from `path`, or stdin for `-`.
fn read(path: &std::path::Path) -> Result<Map<String, Value>, CtlError> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CtlError::Usage(format!("stdin: {e}")))?;
        text
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| CtlError::Usage(format!("{}: {e}", path.display())))?
    };
    // JSON first: every JSON document is YAML, but JSON's errors are clearer.
    let value: Value = serde_json::from_str(&text)
        .or_else(|_| serde_saphyr::from_str(&text))
        .map_err(|e| CtlError::Usage(format!("{}: {e}", path.display())))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(CtlError::Usage(format!(
            "{}: expected a mapping of the spec's fields",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> SpecFlags {
        SpecFlags {
            file: None,
            name: None,
            namespace: None,
            image: None,
            identifier: None,
            replicas: None,
            env: Vec::new(),
            labels: Vec::new(),
            annotations: Vec::new(),
            ports: Vec::new(),
        }
    }

    #[test]
    fn flags_make_a_create_body() {
        let mut flags = flags();
        flags.name = Some("web".into());
        flags.replicas = Some(2);
        flags.env = vec!["A=1".into(), "B=x=y".into()];
        flags.ports = vec![80];
        let body = create_body(&flags).expect("a body");
        assert_eq!(
            body,
            serde_json::json!({"name": "web", "replicas": 2, "env": {"A": "1", "B": "x=y"},
                               "ports": [{"container_port": 80}]})
        );
    }

    #[test]
    fn a_patch_removes_with_key_dash_and_cannot_rename() {
        let mut flags = flags();
        flags.env = vec!["OLD-".into(), "NEW=1".into()];
        let body = patch_body(&flags).expect("a patch");
        assert_eq!(body, serde_json::json!({"env": {"OLD": null, "NEW": "1"}}));
        flags.name = Some("other".into());
        assert!(matches!(patch_body(&flags), Err(CtlError::Usage(_))));
    }

    #[test]
    fn removal_is_for_patches_only() {
        let mut flags = flags();
        flags.name = Some("web".into());
        flags.labels = vec!["tier-".into()];
        assert!(matches!(create_body(&flags), Err(CtlError::Usage(_))));
    }
}
