//! What anyone sees of the mirrors: tunasync's `/jobs`, and the status page loaded in a real
//! headless Chromium against a master with real runs (one succeeded and reached a slave, one failed,
//! one never ran). The page's screenshots are kept in `target/test-artifacts/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;

use mirror_tests::cluster::{served_generations, start_cluster_master, start_slaves};
use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, generate_tree};
use mirror_tests::{Auth, TestMaster, finished_run, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn project(name: &str, upstream: &Upstream, module: &str) -> Value {
    json!({
        "project": name,
        "rsync_host": "127.0.0.1",
        "rsync_port": upstream.port,
        "rsync_module": module,
        "rsync_user": UPSTREAM_USER,
        "rsync_password": UPSTREAM_PASSWORD,
        "dest": format!("pub/{name}"),
        "cron_options": {"hour": "*/6", "minute": "7"},
    })
}

async fn run(m: &TestMaster, id: &str) -> Value {
    let r = m.api.get(&format!("/syncup/?id={id}"), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    finished_run(&m.api, r.body["run_id"].as_i64().unwrap(), 60).await
}

/// A master with `fedora` synced to one slave, `broken` failed, `idle` never run.
async fn mirrors() -> (TestMaster, Upstream, Vec<mirror_tests::cluster::SlaveProcess>) {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 20);
    let m = start_cluster_master().await;
    let slaves = start_slaves(&m.api, 1).await;
    for (name, module) in [("fedora", "data"), ("broken", "no-such-module"), ("idle", "data")] {
        let r = m.api.post("/add_project/", &project(name, &upstream, module), &Auth::root()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    assert_eq!(run(&m, "fedora").await["status"], json!("success"));
    assert_eq!(run(&m, "broken").await["status"], json!("failed"));
    wait_for(30, "the slave to serve fedora", || async {
        let served = served_generations(&m.api, "fedora").await;
        (served.len() == 1 && served[0].1 == 1).then_some(())
    })
    .await;
    (m, upstream, slaves)
}

/// tunasync's `WebMirrorStatus` (internal/status_web.go): each JSON field and its JSON type.
const TUNASYNC_FIELDS: [(&str, &str); 13] = [
    ("name", "string"),
    ("is_master", "bool"),
    ("status", "string"),
    ("last_update", "string"),
    ("last_update_ts", "number"),
    ("last_started", "string"),
    ("last_started_ts", "number"),
    ("last_ended", "string"),
    ("last_ended_ts", "number"),
    ("next_schedule", "string"),
    ("next_schedule_ts", "number"),
    ("upstream", "string"),
    ("size", "string"),
];

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "number",
        _ => "other",
    }
}

/// tunasync's text time, `2006-01-02 15:04:05 -0700`, read back to Unix seconds.
fn text_time(s: &str) -> i64 {
    chrono::DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S %z").unwrap_or_else(|e| panic!("{s}: {e}")).timestamp()
}

#[tokio::test]
async fn jobs_answer_as_tunasync_and_the_status_page_shows_what_happened() {
    let (m, _upstream, _slaves) = mirrors().await;

    let jobs = m.api.get("/jobs", &Auth::None).await;
    assert_eq!(jobs.status, StatusCode::OK, "{}", jobs.text);
    let jobs = jobs.body.as_array().unwrap().clone();
    assert_eq!(jobs.len(), 3);
    for job in &jobs {
        let keys: Vec<&str> = job.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), TUNASYNC_FIELDS.len(), "{job}");
        for (name, kind) in TUNASYNC_FIELDS {
            assert_eq!(json_type(&job[name]), kind, "{name} in {job}");
        }
        for t in ["last_update", "last_started", "last_ended", "next_schedule"] {
            let text = job[t].as_str().unwrap();
            assert_eq!(text_time(text), job[format!("{t}_ts")].as_i64().unwrap(), "{t} in {job}");
        }
        assert!(
            ["none", "failed", "success", "syncing", "paused", "disabled"].contains(&job["status"].as_str().unwrap())
        );
    }
    let by_name = |n: &str| jobs.iter().find(|j| j["name"] == json!(n)).unwrap().clone();
    let fedora = by_name("fedora");
    assert_eq!((fedora["status"].clone(), fedora["is_master"].clone()), (json!("success"), json!(true)));
    assert!(fedora["last_update_ts"].as_i64().unwrap() > 1_700_000_000, "{fedora}");
    assert!(fedora["size"].as_str().unwrap().ends_with('K'), "{fedora}");
    assert!(fedora["upstream"].as_str().unwrap().starts_with("rsync://127.0.0.1:"), "{fedora}");
    assert!(!fedora["upstream"].as_str().unwrap().contains(UPSTREAM_USER), "no login in {fedora}");
    assert_eq!(by_name("broken")["status"], json!("failed"));
    let idle = by_name("idle");
    assert_eq!(
        (idle["status"].clone(), idle["last_update"].clone()),
        (json!("none"), json!("0001-01-01 00:00:00 +0000"))
    );
    assert!(idle["next_schedule_ts"].as_i64().unwrap() > 1_700_000_000, "{idle}");

    // The JSON status is still there for scripts.
    let status = m.api.get("/status/", &Auth::None).await;
    assert_eq!(status.body["method"], json!("status"), "{}", status.text);

    // What a person sees, in a real browser.
    let index = chromium_dom(&format!("{}/", m.api.base), "status").await;
    for id in ["fedora", "broken", "idle"] {
        assert!(index.contains(&format!("<a href=\"/status/{id}\">{id}</a>")), "row {id} in {index}");
    }
    assert!(index.contains("<span class=\"badge failed\">failed</span>"), "{index}");
    assert!(index.contains("<span class=\"badge success\">success</span>"), "{index}");
    assert!(index.contains("3 projects · <strong>1</strong> failed"), "{index}");
    assert!(!index.contains(&m.mirror_root().display().to_string()), "no local path on the page");
    let page = chromium_dom(&format!("{}/status/fedora", m.api.base), "fedora").await;
    let slaves = page.split("id=\"slaves\"").nth(1).expect("a slave table");
    assert!(slaves.contains("<td>slave-1</td>") && slaves.contains("badge success\">up"), "{slaves}");
    assert!(slaves.contains("<td>1</td><td>0</td>"), "generation 1, behind by 0: {slaves}");
    assert!(page.contains("id=\"runs\"") && page.contains("badge success\">success"), "{page}");
}

#[tokio::test]
async fn metrics_pass_promtool_and_show_runs_slaves_and_requests() {
    let (m, _upstream, _slaves) = mirrors().await;
    assert_eq!(m.api.get("/metrics", &Auth::None).await.status, StatusCode::UNAUTHORIZED, "slave hosts are not public");
    let r = m.api.get("/metrics", &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let text = r.text;
    for line in [
        "mirror_sync_project_runs_total{project=\"fedora\",result=\"success\"} 1",
        "mirror_sync_project_runs_total{project=\"broken\",result=\"failed\"} 1",
        "mirror_sync_project_last_run_status{project=\"broken\",status=\"failed\"} 1",
        "mirror_sync_project_running{project=\"idle\"} 0",
        "mirror_sync_project_generation{project=\"fedora\"} 1",
        "mirror_sync_project_snapshots_total{project=\"fedora\",result=\"made\"} 1",
        "mirror_sync_project_snapshot_seconds_total{project=\"fedora\"} ",
        "mirror_sync_run_queue_length 0",
        "mirror_sync_rsyncd_up 1",
        "mirror_sync_slave_lag_generations{slave=",
        "mirror_sync_http_requests_total{route=\"/syncup/\",status=\"202\"}",
        "mirror_sync_http_request_duration_seconds_bucket{le=",
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
    let bytes = text
        .lines()
        .find(|l| l.starts_with("mirror_sync_project_transferred_bytes_total{project=\"fedora\"}"))
        .unwrap();
    assert!(bytes.rsplit(' ').next().unwrap().parse::<f64>().unwrap() > 1000.0, "{bytes}");
    let slave_gen = text.lines().find(|l| l.starts_with("mirror_sync_slave_generation{")).unwrap();
    assert!(slave_gen.contains("project=\"fedora\"") && slave_gen.ends_with(" 1"), "{slave_gen}");
    assert!(text.contains("mirror_sync_project_staleness_seconds{project=\"fedora\"}"));
    assert!(
        !text.contains("mirror_sync_project_last_success_timestamp_seconds{project=\"idle\"}"),
        "no value for a project that never succeeded"
    );

    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    use tokio::io::AsyncWriteExt;
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).await.unwrap();
    let out = promtool.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The DOM Chromium builds for `url`, after a screenshot of it is saved as `<name>.png`.
async fn chromium_dom(url: &str, name: &str) -> String {
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ];
    let user_data = format!("--user-data-dir={}", profile.path().display());
    let shot = format!("--screenshot={}", artifacts.join(format!("{name}.png")).display());
    let out = tokio::process::Command::new("chromium")
        .args(base)
        .args([user_data.as_str(), shot.as_str(), "--window-size=412,900", url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .expect("chromium (Debian's chromium package; scripts/test.sh installs it)");
    assert!(out.success(), "screenshot of {url}");
    let dom = tokio::process::Command::new("chromium")
        .args(base)
        .args([user_data.as_str(), "--dump-dom", url])
        .stderr(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(dom.status.success(), "dump of {url}");
    String::from_utf8(dom.stdout).unwrap()
}
