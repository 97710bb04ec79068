//! `mirrorctl watch`: the master's event stream (`GET /events`), printed as it comes, resumed
//! from the last event seen when the connection drops.

use std::time::Duration;

use mirror_common::api::{ConfigEvent, RunEvent};
use serde_json::Value;

use crate::client::{Client, Exit, Failure, Result};

/// One server-sent event.
#[derive(Debug, Default, PartialEq)]
pub struct SseEvent {
    pub id: Option<i64>,
    pub kind: String,
    pub data: String,
}

/// Reads server-sent events from lines; `push` returns an event when a blank line ends one.
#[derive(Default)]
pub struct SseParser {
    current: SseEvent,
    buffer: String,
}

impl SseParser {
    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buffer.push_str(&String::from_utf8_lossy(chunk));
        let mut out = Vec::new();
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                let done = std::mem::take(&mut self.current);
                if !done.data.is_empty() || !done.kind.is_empty() {
                    out.push(done);
                }
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.current.id = value.parse().ok(),
                "event" => self.current.kind = value.to_owned(),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                _ => {}
            }
        }
        out
    }
}

fn line_for(e: &SseEvent) -> String {
    let undecoded = || format!("{}: {}", e.kind, e.data);
    match e.kind.as_str() {
        "config" => serde_json::from_str::<ConfigEvent>(&e.data).map_or_else(
            |_| undecoded(),
            |d| {
                let what = if d.removed { "removed" } else { "changed" };
                let who = d.author.as_deref().unwrap_or("(master)");
                let why = d.comment.map(|c| format!(": {c}")).unwrap_or_default();
                format!("{} {} {what} (version {}) by {who}{why}", d.kind, d.key, d.version)
            },
        ),
        "run" => serde_json::from_str::<RunEvent>(&e.data)
            .map_or_else(|_| undecoded(), |d| format!("run {} of {}: {}", d.run, d.project, d.status)),
        _ => undecoded(),
    }
}

/// One event as `--json` prints it, a line each.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    id: Option<i64>,
    event: &'a str,
    data: Value,
}

/// Prints events until interrupted (or, with `count`, until that many were printed).
pub async fn watch(c: &Client, since: Option<i64>, count: Option<usize>, as_json: bool) -> Result<()> {
    let mut last = since;
    let mut printed = 0usize;
    let mut failures = 0u32;
    loop {
        let headers: Vec<(&str, String)> = last.map(|l| ("Last-Event-ID", l.to_string())).into_iter().collect();
        let mut resp = match c.open_stream("/events", &headers).await {
            Ok(r) => r,
            // Refused (not logged in, bad id): no use trying again.
            Err(f) if f.exit != Exit::Server => return Err(f),
            Err(f) => {
                failures += 1;
                if failures > 30 {
                    return Err(f);
                }
                eprintln!("mirrorctl: {}; reconnecting", f.message);
                tokio::time::sleep(Duration::from_secs(u64::from(failures.min(10)))).await;
                continue;
            }
        };
        failures = 0;
        let mut parser = SseParser::default();
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) | Err(_) => break,
            };
            for e in parser.feed(&chunk) {
                if as_json {
                    let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
                    println!("{}", serde_json::to_string(&JsonLine { id: e.id, event: &e.kind, data })?);
                } else {
                    println!("{}", line_for(&e));
                }
                if e.id.is_some() {
                    last = e.id;
                }
                printed += 1;
                if count.is_some_and(|n| printed >= n) {
                    return Ok(());
                }
            }
        }
        eprintln!("mirrorctl: the event stream ended; reconnecting");
        if count.is_some() && failures > 0 {
            return Err(Failure::new(Exit::Server, "the event stream ended"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.feed(b"id: 7\nevent: run\nda").is_empty());
        let got = p.feed(b"ta: {\"a\":1}\n\n: keep-alive\n\n");
        assert_eq!(got, [SseEvent { id: Some(7), kind: "run".into(), data: "{\"a\":1}".into() }]);
    }
}
