//! `GET /events`: configuration commits and run states as server-sent events, how fast they
//! reach a watcher, and resuming after a reconnect with `Last-Event-ID`; `mirrorctl watch`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use mirror_tests::{Auth, ROOT_PASSWORD, TestMaster, binary, finished_run};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A watcher: the events it receives (id, kind, data) with when they came.
async fn watch(base: &str, last_event_id: Option<i64>) -> mpsc::UnboundedReceiver<(i64, String, Value, Instant)> {
    let mut req = reqwest::Client::new().get(format!("{base}/events")).basic_auth("root", Some(ROOT_PASSWORD));
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let mut resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buffer = String::new();
        let (mut id, mut kind, mut data) = (0, String::new(), String::new());
        while let Ok(Some(chunk)) = resp.chunk().await {
            let at = Instant::now();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find('\n') {
                let line: String = buffer.drain(..=end).collect();
                let line = line.trim_end();
                if line.is_empty() && !data.is_empty() {
                    let _ = tx.send((id, std::mem::take(&mut kind), serde_json::from_str(&data).unwrap(), at));
                    data.clear();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().unwrap();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = v.to_owned();
                }
            }
        }
    });
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(i64, String, Value, Instant)>) -> (i64, String, Value, Instant) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("an event within 10 s").unwrap()
}

#[tokio::test]
async fn changes_reach_a_watcher_at_once_and_a_reconnect_resumes_where_it_left() {
    let m = TestMaster::start().await;
    let mut events = watch(&m.api.base, None).await;
    let body = json!({"project": "deb", "rsync_host": "127.0.0.1", "rsync_port": 1, "rsync_module": "none",
                      "dest": "deb", "comment": "new"});
    let sent = Instant::now();
    let r = m.api.post("/add_project/", &body, &Auth::root()).await;
    let answered = sent.elapsed();
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let (mut first, mut kind, mut data, mut at) = next(&mut events).await;
    // The harness's own user `alice`, created just before the watcher connected: its event may be
    // stored (PostgreSQL: a transaction of its own) after the watcher came.
    if data["kind"] == json!("user") && data["key"] == json!("alice") {
        (first, kind, data, at) = next(&mut events).await;
    }
    let took = at.saturating_duration_since(sent);
    println!(
        "the commit reached the watcher {} µs after the write was sent (its answer came after {} µs)",
        took.as_micros(),
        answered.as_micros()
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(kind, "config");
    assert_eq!(
        data,
        json!({"kind": "project", "key": "deb", "version": 1, "author": "root", "comment": "new", "removed": false})
    );

    // A run: queued, running, ended (a refused connection: failed).
    let r = m.api.post("/syncup/?id=deb", &json!({}), &Auth::root()).await;
    let run = r.body["run_id"].as_i64().unwrap();
    finished_run(&m.api, run, 30).await;
    let mut states = Vec::new();
    while states.last().map(String::as_str) != Some("failed") {
        let (_, kind, data, _) = next(&mut events).await;
        assert_eq!((kind.as_str(), data["run"].as_i64()), ("run", Some(run)), "{data}");
        states.push(data["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(states, ["queued", "running", "failed"]);

    // The watcher goes away; meanwhile two changes; it comes back from the last id it saw.
    drop(events);
    let r = m.api.post("/disable_project/?id=deb", &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = m.api.post("/remove_project/", &json!({"id": "deb"}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK);
    let mut resumed = watch(&m.api.base, Some(first + 3)).await;
    let (a, _, disabled, _) = next(&mut resumed).await;
    let (b, _, removed, _) = next(&mut resumed).await;
    assert_eq!((a, b), (first + 4, first + 5));
    assert_eq!((disabled["version"].clone(), disabled["author"].clone()), (json!(2), json!("alice")));
    assert_eq!((removed["version"].clone(), removed["removed"].clone()), (json!(3), json!(true)));

    // mirrorctl watch replays the same.
    let out = tokio::process::Command::new(binary("mirrorctl"))
        .args(["watch", "--since", &(first + 3).to_string(), "--count", "2"])
        .env("MIRRORCTL_URL", &m.api.base)
        .env("MIRRORCTL_USER", "root")
        .env("MIRRORCTL_PASSWORD", ROOT_PASSWORD)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["project deb changed (version 2) by alice", "project deb removed (version 3) by root"]
    );
    // Not without a login.
    assert_eq!(m.api.get("/events", &Auth::None).await.status, StatusCode::UNAUTHORIZED);
}
