//! How answers are shown: tables, coloured status words, `--json`, `--format` templates.

use std::io::IsTerminal;

use comfy_table::{ContentArrangement, Table, presets};
use mirror_common::api::ProjectView;
use serde_json::Value;

use crate::client::Result;

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING).set_content_arrangement(ContentArrangement::Dynamic).set_header(header.to_vec());
    if !std::io::stdout().is_terminal() {
        t.force_no_tty();
    }
    t
}

/// A status word, coloured on a terminal.
pub fn paint(word: &str) -> String {
    if !std::io::stdout().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
        return word.to_owned();
    }
    let code = match word {
        "success" | "delivered" => "32",
        "failed" | "timeout" | "interrupted" | "stale" | "given_up" => "31",
        "running" | "queued" => "34",
        _ => return word.to_owned(),
    };
    format!("\x1b[{code}m{word}\x1b[0m")
}

/// What a call answered, as JSON (`--json`).
pub fn print_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn is_stale(p: &ProjectView, hours: Option<i64>) -> bool {
    let now = chrono::Utc::now();
    match hours {
        Some(h) => p.enabled && p.last_success.is_some_and(|t| now - t.to_datetime() > chrono::Duration::hours(h)),
        None => p.stale_after.is_some_and(|t| now > t.to_datetime()),
    }
}

pub fn state_of(p: &ProjectView, stale_hours: Option<i64>) -> String {
    if !p.enabled {
        "disabled".into()
    } else if is_stale(p, stale_hours) {
        "stale".into()
    } else {
        p.status.clone()
    }
}

/// A `--format` template with each `{field}` replaced by the entry's value.
pub fn fill(template: &str, fields: &Value) -> String {
    let mut out = template.replace("\\t", "\t").replace("\\n", "\n");
    if let Some(map) = fields.as_object() {
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            out = out.replace(&format!("{{{k}}}"), &text);
        }
    }
    out
}

pub fn time_text(t: Option<mirror_common::time::Timestamp>) -> String {
    t.map_or_else(|| "-".into(), |t| t.to_datetime().format("%Y-%m-%d %H:%M").to_string())
}

/// Bytes as `rsync -h` would print them (units of 1000).
pub fn human_bytes(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["", "K", "M", "G", "T"] {
        if value < 1000.0 || unit == "T" {
            return if unit.is_empty() { format!("{bytes} B") } else { format!("{value:.2} {unit}B") };
        }
        value /= 1000.0;
    }
    format!("{bytes} B")
}
