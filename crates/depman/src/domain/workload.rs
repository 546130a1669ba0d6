//! The rules of a workload's own fields: replicas, the progress deadline,
//! environment variable names, port names and free text. Each pattern is what its check takes,
//! for the OpenAPI document (`schema`).

pub const MAX_REPLICAS: i64 = 1000;

/// How long Kubernetes waits for a rollout to progress before it reports
/// `ProgressDeadlineExceeded` (its `progressDeadlineSeconds`).
pub const PROGRESS_DEADLINE: std::ops::RangeInclusive<i64> = 10..=3600;
/// Kubernetes' own default.
pub const DEFAULT_PROGRESS_DEADLINE: i64 = 600;

/// An environment variable name `check_env_name` takes.
pub const ENV_NAME_PATTERN: &str = "^[-._a-zA-Z][-._a-zA-Z0-9]*$";
/// A port name `check_port_name` takes (an IANA service name).
pub const PORT_NAME_PATTERN: &str = "^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(?:-[a-z0-9]+)*$";
/// Free text (env values, annotation values, command, args): anything but
/// NUL, which the body check refuses everywhere.
pub const TEXT_PATTERN: &str = "^[^\\x00]*$";

/// Environment variable names as Kubernetes has long accepted them.
pub fn check_env_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid variable name: letters, digits, '_', '-' and '.', not starting with a digit"
        ))
    }
}

/// An IANA service name, as Kubernetes requires of port names.
pub fn check_port_name(name: &str) -> Result<(), String> {
    let valid = (1..=15).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(
            "must be 1 to 15 lowercase letters, digits and single '-', with at least one letter"
                .into(),
        )
    }
}
