//! Showing what the API answered: a table for people (status and health
//! coloured on a terminal only, never with `NO_COLOR`), JSON or YAML for
//! scripts, or just names.

use std::io::IsTerminal;

use serde_json::Value;

use crate::{cli::Format, error::CtlError};

/// What a command shows: its format, and whether colour is wanted.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub format: Format,
    pub colour: bool,
}

impl Output {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            colour: colour_wanted(std::io::stdout().is_terminal()),
        }
    }

    /// Prints `items` as `kind` rows (`-o json` and `yaml` print the list).
    pub fn list(&self, kind: Kind, items: &[Value]) -> Result<(), CtlError> {
        match self.format {
            Format::Json => println!("{}", pretty(&Value::Array(items.to_vec()))),
            Format::Yaml => print!("{}", yaml(&Value::Array(items.to_vec()))?),
            Format::Name => items
                .iter()
                .for_each(|item| println!("{}", kind.name(item))),
            Format::Table => print!("{}", self.table(kind, items)),
        }
        Ok(())
    }

    /// Prints one `kind`.
    pub fn one(&self, kind: Kind, item: &Value) -> Result<(), CtlError> {
        match self.format {
            Format::Json => println!("{}", pretty(item)),
            Format::Yaml => print!("{}", yaml(item)?),
            Format::Name => println!("{}", kind.name(item)),
            Format::Table => print!("{}", self.table(kind, std::slice::from_ref(item))),
        }
        Ok(())
    }

    fn table(&self, kind: Kind, items: &[Value]) -> String {
        let columns = kind.columns();
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|item| columns.iter().map(|(_, cell)| cell(item)).collect())
            .collect();
        let widths: Vec<usize> = columns
            .iter()
            .enumerate()
            .map(|(i, (header, _))| {
                rows.iter()
                    .map(|row| row[i].chars().count())
                    .chain([header.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let line = |cells: Vec<String>, out: &mut String| {
            let last = cells.len() - 1;
            for (i, cell) in cells.into_iter().enumerate() {
                let padding = widths[i].saturating_sub(cell.chars().count());
                out.push_str(&self.paint(&cell));
                if i < last {
                    out.push_str(&" ".repeat(padding + 3));
                }
            }
            out.push('\n');
        };
        line(
            columns.iter().map(|(h, _)| (*h).to_owned()).collect(),
            &mut out,
        );
        for row in rows {
            line(row, &mut out);
        }
        out
    }

    /// A status or health word in its colour, anything else as it is.
    pub fn paint(&self, word: &str) -> String {
        let code = match word {
            "SUCCESS" | "HEALTHY" | "COMPLETE" => "32",
            "FAILURE" | "FAILED" | "DEGRADED" => "31",
            "PROGRESSING" | "UPDATING" | "INITIATED" | "SUPERSEDED" => "33",
            _ => return word.to_owned(),
        };
        self.colour(code, word)
    }

    /// `text` in the ANSI colour `code`, when colour is on.
    pub fn colour(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// Colour on a terminal, unless `NO_COLOR` is set (no-color.org) or the
/// terminal is dumb.
pub fn colour_wanted(terminal: bool) -> bool {
    terminal
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |term| term != "dumb")
}

pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

pub fn yaml(value: &Value) -> Result<String, CtlError> {
    serde_saphyr::to_string(value).map_err(|e| CtlError::Failed(format!("cannot write YAML: {e}")))
}

/// What is shown.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Request,
    Deployment,
    Revision,
}

type Cell = fn(&Value) -> String;

impl Kind {
    fn name(self, item: &Value) -> String {
        match self {
            Self::Request => format!("request/{}", text(&item["id"])),
            Self::Deployment => format!("deployment/{}", text(&item["identifier"])),
            Self::Revision => format!("revision/{}", text(&item["revision"])),
        }
    }

    fn columns(self) -> Vec<(&'static str, Cell)> {
        match self {
            Self::Request => vec![
                ("ID", |r| text(&r["id"])),
                ("IDENTIFIER", |r| text(&r["identifier"])),
                ("TYPE", |r| text(&r["request_type"])),
                ("STATUS", |r| text(&r["status"])),
                ("ROLLOUT", |r| text(&r["rollout"]["state"])),
                ("IMAGE", |r| text(&r["image"])),
                ("CREATED", |r| text(&r["created_on"])),
                ("REASON", reason),
            ],
            Self::Deployment => vec![
                ("IDENTIFIER", |d| text(&d["identifier"])),
                ("NAMESPACE", |d| text(&d["namespace"])),
                ("IMAGE", |d| text(&d["image"])),
                ("READY", |d| {
                    format!(
                        "{}/{}",
                        number(&d["ready_replicas"]),
                        number(&d["replicas"])
                    )
                }),
                ("STATUS", |d| text(&d["status"])),
                ("HEALTH", |d| text(&d["health"])),
                ("REASON", |d| text(&d["health_reason"])),
                ("UPDATED", |d| text(&d["updated_on"])),
            ],
            Self::Revision => vec![
                ("REVISION", |r| text(&r["revision"])),
                ("IMAGE", |r| text(&r["spec"]["image"])),
                ("REPLICAS", |r| text(&r["spec"]["replicas"])),
                ("ROLLOUT", |r| text(&r["rollout"]["state"])),
                ("APPLIED", |r| text(&r["applied_on"])),
                ("ACTOR", |r| text(&r["actor"])),
                ("NOTE", |r| match r["rolled_back_to"].as_i64() {
                    Some(n) => format!("rollback to {n}"),
                    None => String::new(),
                }),
            ],
        }
    }
}

/// Why a request failed, or its rollout did.
fn reason(request: &Value) -> String {
    let rollout = &request["rollout"];
    if let Some(reason) = request["failure_reason"].as_str() {
        return reason.to_owned();
    }
    match (rollout["reason"].as_str(), rollout["message"].as_str()) {
        (Some(reason), Some(message)) if rollout["state"] == "FAILED" => {
            format!("{reason}: {message}")
        }
        _ => String::new(),
    }
}

/// A cell: a string as it is, a number or boolean written out, nothing as
/// empty.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn number(value: &Value) -> String {
    value.as_i64().unwrap_or(0).to_string()
}
