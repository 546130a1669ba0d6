//! Where depmanctl talks to, and as whom: flags and the environment first,
//! then a named context of the config file (`~/.config/depman/config.yaml`):
//!
//! ```yaml
//! current-context: local
//! contexts:
//!   local: {server: "http://127.0.0.1:8080", user: alice}
//!   prod: {server: "https://depman.example.com", user: alice, token: "..."}
//! ```

use std::{collections::BTreeMap, path::PathBuf};

use serde::Deserialize;

use crate::{cli::Global, error::CtlError};

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    current_context: Option<String>,
    #[serde(default)]
    contexts: BTreeMap<String, Context>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Context {
    server: Option<String>,
    user: Option<String>,
    token: Option<String>,
}

/// The server, the user and the token to use.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: String,
    pub user: Option<String>,
    pub token: Option<String>,
}

pub fn resolve(global: &Global) -> Result<Target, CtlError> {
    let context = context(global)?;
    Ok(Target {
        server: global
            .server
            .clone()
            .or(context.server)
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned()),
        user: global.user.clone().or(context.user),
        token: global.token.clone().or(context.token),
    })
}

/// The context named by `--context`, or the file's current one; none when
/// there is no file (unless one was named).
fn context(global: &Global) -> Result<Context, CtlError> {
    let (path, named) = match &global.config {
        Some(path) => (path.clone(), true),
        None => match default_path() {
            Some(path) => (path, false),
            None => return Ok(Context::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if !named && error.kind() == std::io::ErrorKind::NotFound => {
            return match &global.context {
                Some(name) => Err(CtlError::Usage(format!(
                    "context `{name}`: there is no config file at {}",
                    path.display()
                ))),
                None => Ok(Context::default()),
            };
        }
        Err(error) => {
            return Err(CtlError::Usage(format!("{}: {error}", path.display())));
        }
    };
    let file: File = serde_saphyr::from_str(&text)
        .map_err(|error| CtlError::Usage(format!("{}: {error}", path.display())))?;
    let Some(name) = global.context.clone().or(file.current_context) else {
        return Ok(Context::default());
    };
    file.contexts
        .get(&name)
        .cloned()
        .ok_or_else(|| CtlError::Usage(format!("{}: no context `{name}`", path.display())))
}

fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("depman").join("config.yaml"))
}
