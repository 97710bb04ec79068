//! `interval_options` (APScheduler's `IntervalTrigger`) and `jitter` on a real master against a
//! real rsync daemon: the fires themselves are proved against APScheduler in
//! common/tests/apscheduler_table.rs; here, that a project runs by them and that every write keeps
//! them whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, generate_tree};
use mirror_tests::{Api, Auth, TestMaster, wait_for};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn project(name: &str, port: u16, extra: Value) -> Value {
    let mut p = json!({
        "project": name, "rsync_host": "127.0.0.1", "rsync_port": port, "rsync_module": "data",
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": name,
        "rsync_options": {"basic": ["--no-motd"]},
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

async fn view(api: &Api, id: &str) -> Value {
    let r = api.get(&format!("/projects/{id}"), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body
}

fn at(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().with_timezone(&Utc)
}

#[tokio::test]
async fn a_project_runs_every_interval_and_writes_keep_its_start() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 5);
    let m = TestMaster::start().await;
    let add = |body: Value| {
        let api = &m.api;
        async move { api.post("/add_project/", &body, &Auth::root()).await }
    };

    // One kind of schedule at a time; errors name the field.
    let both = json!({"cron_options": {"minute": "0"}, "interval_options": {"hours": 1}});
    let r = add(project("x", upstream.port, both)).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!("interval_options")), "{}", r.text);
    let r = add(project("x", upstream.port, json!({"interval_options": {"hours": 1, "timezone": "Mars/Base"}}))).await;
    assert_eq!(r.body["field"], json!("interval_options.timezone"), "{}", r.text);
    let r = add(project("x", upstream.port, json!({"interval_options": {"hours": 1, "jitter": 86_401}}))).await;
    assert_eq!(r.body["field"], json!("interval_options.jitter"), "{}", r.text);
    let r = add(project("x", upstream.port, json!({"interval_options": {"hourz": 1}}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = add(project("x", upstream.port, json!({"interval_options": {"hours": 1, "end_date": "2001-01-01"}}))).await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.text.contains("never fires"), "{}", r.text);

    // Every 2 seconds from when it was added: it runs by itself, again and again.
    let added = Utc::now();
    let r = add(project("every2", upstream.port, json!({"interval_options": {"seconds": 2}}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let p = view(&m.api, "every2").await;
    let start = at(&p["interval_options"]["start_date"]);
    assert!(start >= added && (start - added).num_seconds() <= 3, "{p}");
    assert_eq!(p["cron_options"], Value::Null, "{p}");
    let runs = wait_for(30, "three scheduled runs", || async {
        let runs = m.api.get("/runs/?project=every2", &Auth::root()).await.body;
        let scheduled: Vec<Value> =
            runs.as_array()?.iter().filter(|r| r["trigger"] == json!("schedule")).cloned().collect();
        (scheduled.len() >= 3).then_some(scheduled)
    })
    .await;
    for run in &runs {
        let due = at(&run["scheduled_for"]);
        assert_eq!((due - start).num_seconds() % 2, 0, "fires are start + n * 2 s: {run}");
    }

    // Written again without a start (as a projects_dir file is, at every reload): the start stays,
    // and nothing changed, so no version is made.
    let before = view(&m.api, "every2").await;
    let mut again = project("every2", upstream.port, json!({"interval_options": {"seconds": 2}}));
    again["version"] = before["version"].clone();
    let r = m.api.call(Method::PUT, "/projects/every2", Some(&again), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let after = view(&m.api, "every2").await;
    assert_eq!(after["interval_options"], before["interval_options"]);
    assert_eq!(after["version"], before["version"]);

    // Exported and imported elsewhere, it keeps its start.
    let doc = m.api.get("/export", &Auth::root()).await.body;
    let entry = doc["projects"].as_array().unwrap().iter().find(|p| p["id"] == json!("every2")).unwrap().clone();
    assert_eq!(entry["interval_options"], before["interval_options"], "{entry}");

    // The 2014 call replaces it with a cron schedule; jitter delays each fire by at most its bound.
    let r = m
        .api
        .post("/update_project/schedule/", &json!({"id": "every2", "minute": "0", "jitter": 600}), &Auth::user())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let p = view(&m.api, "every2").await;
    assert_eq!((p["interval_options"].clone(), p["cron_options"]["jitter"].clone()), (Value::Null, json!(600)), "{p}");
    let next = at(&p["next_run_time"]);
    let hour = next.timestamp() - next.timestamp() % 3600;
    assert!(next.timestamp() - hour <= 600, "{next} is within 600 s after the hour");
}
