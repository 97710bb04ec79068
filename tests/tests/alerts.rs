//! Alerts to webhooks, against a real HTTP receiver: a failed run, a recovery, staleness, slaves
//! going down, lagging and coming back; a receiver that is down for a while, and a master restart
//! in between.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use mirror_master::config::{Secret, Settings, WebhookSettings};
use mirror_tests::cluster::{SlaveProcess, add_slave, cluster_settings};
use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, free_port, generate_tree};
use mirror_tests::{Api, Auth, TestMaster, finished_run, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SECRET: &str = "webhook-signing-secret";

/// One request the receiver took.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    at: Instant,
    delivery: i64,
    signature: Option<String>,
    raw: Bytes,
    body: Value,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Received>>>);

impl Receiver {
    /// Serves on `port` (0: any) until the test ends; returns the port.
    async fn serve(&self, port: u16) -> u16 {
        async fn take(
            State(r): State<Receiver>,
            Path(path): Path<String>,
            headers: HeaderMap,
            raw: Bytes,
        ) -> StatusCode {
            let body: Value = serde_json::from_slice(&raw).unwrap();
            let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let delivery = header("x-mirror-sync-delivery").and_then(|d| d.parse().ok()).unwrap_or(-1);
            let signature = header("x-mirror-sync-signature");
            r.0.lock().unwrap().push(Received { path, at: Instant::now(), delivery, signature, raw, body });
            StatusCode::NO_CONTENT
        }
        let app = Router::new().route("/{path}", axum::routing::post(take)).with_state(self.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    fn got(&self, path: &str) -> Vec<Received> {
        self.0.lock().unwrap().iter().filter(|r| r.path == path).cloned().collect()
    }

    fn events(&self, path: &str) -> Vec<String> {
        self.got(path).iter().map(|r| r.body["event"].as_str().unwrap().to_owned()).collect()
    }
}

fn hook(name: &str, port: u16, events: Value) -> WebhookSettings {
    WebhookSettings {
        name: mirror_common::api::Name::parse(name).unwrap(),
        url: Secret::new(format!("http://127.0.0.1:{port}/{name}")),
        events: serde_json::from_value(events).unwrap(),
        secret: Some(Secret::new(SECRET)),
        secret_file: None,
    }
}

fn fast_alerts(s: &mut Settings, hooks: Vec<WebhookSettings>) {
    s.alerts.webhook = hooks;
    s.alerts.check_interval_secs = 1;
    s.alerts.retry_base_ms = 100;
    s.alerts.retry_max_secs = 1;
    s.retries = 0;
}

fn project(name: &str, upstream: &Upstream, module: &str, extra: Value) -> Value {
    let mut p = json!({
        "project": name,
        "rsync_host": "127.0.0.1",
        "rsync_port": upstream.port,
        "rsync_module": module,
        "rsync_user": UPSTREAM_USER,
        "rsync_password": UPSTREAM_PASSWORD,
        "dest": name,
        "rsync_options": {"basic": ["--no-motd"], "delete": "--delete"},
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

/// Runs `id` now and waits for its end; returns its status.
async fn run(api: &Api, id: &str) -> String {
    let r = api.post(&format!("/syncup/?id={id}"), &json!({}), &Auth::root()).await;
    assert!(r.status.is_success(), "{}", r.text);
    let run = finished_run(api, r.body["run_id"].as_i64().unwrap(), 60).await;
    run["status"].as_str().unwrap().to_owned()
}

async fn set_module(api: &Api, id: &str, module: &str) {
    // A new module needs its password again (a password stays with its upstream).
    let body = json!({"id": id, "rsync_module": module, "rsync_password": UPSTREAM_PASSWORD});
    let r = api.post("/update_project/basic/", &body, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

fn check_signature(r: &Received) {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&r.raw);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r.signature.as_deref(), Some(format!("sha256={hex}").as_str()));
}

#[tokio::test]
async fn a_failed_run_is_alerted_within_five_seconds_once_per_change_and_staleness_too() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 3);
    let receiver = Receiver::default();
    let port = receiver.serve(0).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    fast_alerts(
        &mut settings,
        vec![
            hook("runs", port, json!(["run_failed", "run_recovered"])),
            hook("age", port, json!(["stale", "fresh_again"])),
        ],
    );
    let m = TestMaster::start_with(dir, settings).await;
    let r = m.api.post("/add_project/", &project("deb", &upstream, "no-such-module", json!({})), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // Failed: delivered, signed, within 5 s of the run's end.
    assert_eq!(run(&m.api, "deb").await, "failed");
    let ended = Instant::now();
    let first = wait_for(10, "run_failed", || async { receiver.got("runs").first().cloned() }).await;
    let took = first.at.duration_since(ended);
    assert!(took < Duration::from_secs(5), "delivered {took:?} after the run ended");
    println!("run_failed delivered {} ms after the run ended", took.as_millis());
    check_signature(&first);
    assert_eq!(first.body["event"], "run_failed");
    assert_eq!(first.body["project"], "deb");
    let text = first.body["text"].as_str().unwrap();
    assert!(text.starts_with("mirror-sync: deb failed") && !text.contains('\n'), "{text}");

    // Failing again is no new event; succeeding is one; succeeding again is none.
    assert_eq!(run(&m.api, "deb").await, "failed");
    set_module(&m.api, "deb", "data").await;
    assert_eq!(run(&m.api, "deb").await, "success");
    assert_eq!(run(&m.api, "deb").await, "success");
    wait_for(10, "run_recovered", || async { (receiver.got("runs").len() >= 2).then_some(()) }).await;

    // A one-second objective: stale a second after the success, fresh again after the next one.
    let r = m.api.post("/update_project/basic/", &json!({"id": "deb", "max_age_secs": 1}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(m.api.get("/projects/deb", &Auth::root()).await.body["max_age_secs"], json!(1));
    // The listing is rendered now, most likely before the objective passes; nothing changes
    // after, yet it must say stale once it is.
    let listing = || async {
        let all = m.api.get("/list_projects/", &Auth::root()).await.body;
        all.as_array().unwrap().iter().find(|p| p["id"] == json!("deb")).cloned().unwrap()
    };
    let before = listing().await;
    wait_for(10, "stale", || async { receiver.got("age").first().cloned() }).await;
    let listed = m.api.get("/projects/deb", &Auth::root()).await.body;
    assert!(listed["stale_after"].is_string(), "{listed}");
    assert_eq!(listed["stale"], json!(true), "{listed}");
    let after = listing().await;
    assert_eq!((after["stale"].clone(), after["stale_after"].clone()), (json!(true), before["stale_after"].clone()));
    let metrics = m.api.get("/metrics", &Auth::root()).await.text;
    assert!(metrics.contains("mirror_sync_project_stale{project=\"deb\"} 1"), "{metrics}");
    let r = m.api.post("/update_project/basic/", &json!({"id": "deb", "max_age_secs": 3600}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_for(10, "fresh_again", || async { (receiver.got("age").len() >= 2).then_some(()) }).await;
    assert_eq!(listing().await["stale"], json!(false));

    // A bad objective is refused, naming the field.
    let r = m.api.post("/update_project/basic/", &json!({"id": "deb", "max_age_secs": 0}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["field"], "max_age_secs", "{}", r.text);

    // Four changes, four deliveries: nothing else was queued, and each was taken once.
    let listed = m.api.get("/alerts", &Auth::root()).await;
    assert_eq!(listed.status, StatusCode::OK);
    let states: Vec<&str> = listed.body.as_array().unwrap().iter().map(|d| d["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["delivered"; 4], "{}", listed.text);
    assert_eq!(receiver.events("runs"), ["run_failed", "run_recovered"]);
    assert_eq!(receiver.events("age"), ["stale", "fresh_again"]);
    // The operator's view of them.
    let token = m.api.token(&Auth::root()).await;
    let out = tokio::process::Command::new(mirror_tests::binary("mirrorctl"))
        .args(["alerts"])
        .env("MIRRORCTL_URL", &m.api.base)
        .env("MIRRORCTL_TOKEN", token)
        .output()
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains("fresh_again") && table.contains("delivered"), "{table}");
    assert!(!listed.text.contains("127.0.0.1:"), "the webhook URL is never shown: {}", listed.text);
    assert_eq!(m.api.get("/alerts", &Auth::user()).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_every_event_once_in_order_across_a_master_restart() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 3);
    // Nothing listens on the receiver's port yet.
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    fast_alerts(&mut settings, vec![hook("ops", port, json!([]))]);
    let m = TestMaster::start_with(dir, settings.clone()).await;
    let r = m.api.post("/add_project/", &project("deb", &upstream, "no-such-module", json!({})), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(run(&m.api, "deb").await, "failed");
    set_module(&m.api, "deb", "data").await;
    assert_eq!(run(&m.api, "deb").await, "success");
    set_module(&m.api, "deb", "no-such-module").await;
    assert_eq!(run(&m.api, "deb").await, "failed");
    // All three queued; the oldest tried and refused more than once (in order: the others wait).
    let pending = wait_for(20, "retried deliveries", || async {
        let list = m.api.get("/alerts", &Auth::root()).await.body;
        let list = list.as_array().cloned().unwrap_or_default();
        (list.len() == 3 && list[2]["attempts"].as_u64() >= Some(2)).then_some(list)
    })
    .await;
    assert!(pending.iter().all(|d| d["state"] == "pending"), "{pending:?}");
    assert!(pending[2]["last_error"].as_str().unwrap().contains("did not answer"), "{pending:?}");

    // The master stops with them undelivered; the receiver comes up; a new master on the same
    // database sends them all, in order, once.
    let dir = m.stop().await;
    let receiver = Receiver::default();
    receiver.serve(port).await;
    let m = TestMaster::start_with(dir, settings).await;
    wait_for(20, "three deliveries", || async { (receiver.got("ops").len() >= 3).then_some(()) }).await;
    wait_for(10, "all delivered", || async {
        let list = m.api.get("/alerts", &Auth::root()).await.body;
        list.as_array().unwrap().iter().all(|d| d["state"] == "delivered").then_some(())
    })
    .await;
    let got = receiver.got("ops");
    assert_eq!(receiver.events("ops"), ["run_failed", "run_recovered", "run_failed"]);
    let ids: Vec<i64> = got.iter().map(|r| r.delivery).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    got.iter().for_each(check_signature);
}

#[tokio::test]
async fn a_slave_down_lagging_and_back_is_alerted_once_each() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 3);
    let receiver = Receiver::default();
    let port = receiver.serve(0).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cluster_settings(dir.path());
    fast_alerts(&mut settings, vec![hook("slaves", port, json!(["slave_down", "slave_back", "slave_lagging"]))]);
    settings.alerts.lag_after_secs = 3;
    let m = TestMaster::start_with(dir, settings).await;
    let mut slave = SlaveProcess::start(&m.api.base).await;
    add_slave(&m.api, &mut slave).await;
    let r = m.api.post("/add_project/", &project("deb", &upstream, "data", json!({})), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(run(&m.api, "deb").await, "success");
    wait_for(30, "the slave to serve generation 1", || async {
        let p = m.api.get("/projects/deb/propagation", &Auth::root()).await.body;
        (p["slaves"][0]["generation"] == json!(1)).then_some(())
    })
    .await;

    // Down while a new generation comes: it is down, then lagging.
    slave.kill().await;
    std::fs::write(upstream.data().join("second.txt"), "two\n").unwrap();
    assert_eq!(run(&m.api, "deb").await, "success");
    wait_for(20, "slave_down and slave_lagging", || async {
        let mut e = receiver.events("slaves");
        e.sort();
        (e == ["slave_down", "slave_lagging"]).then_some(())
    })
    .await;
    let down = receiver.got("slaves");
    let name = format!("127.0.0.1:{}", slave.port);
    assert!(down.iter().all(|r| r.body["slave"] == json!(name)), "{down:?}");

    // Back: it catches up, and says so once.
    slave.restart().await;
    wait_for(30, "slave_back", || async { (receiver.events("slaves").len() >= 3).then_some(()) }).await;
    assert_eq!(receiver.events("slaves")[2], "slave_back");
    wait_for(30, "the slave to serve generation 2", || async {
        let p = m.api.get("/projects/deb/propagation", &Auth::root()).await.body;
        (p["slaves"][0]["generation"] == json!(2)).then_some(())
    })
    .await;
    let list = m.api.get("/alerts", &Auth::root()).await.body;
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    assert_eq!(receiver.events("slaves").len(), 3);
}

/// A push to an object-store target that fails is alerted once (not at each failing push), and
/// its recovery once.
#[tokio::test]
async fn a_failing_push_is_alerted_once_and_its_recovery_too() {
    use mirror_tests::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
    let receiver = Receiver::default();
    let port = receiver.serve(0).await;
    let mut s3 = S3Server::start(&["bucket"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestMaster::settings_in(dir.path());
    fast_alerts(&mut s, vec![hook("ops", port, json!(["push_failed", "push_recovered"]))]);
    s.s3_credentials = vec![mirror_tests::s3::credentials(dir.path(), ACCESS_KEY, SECRET_KEY, &s3.endpoint())];
    s.targets.retries = 0;
    let m = TestMaster::start_with(dir, s).await;
    let body = json!({"project": "pushed", "source": "pushed", "targets": [
        {"name": "cdn", "endpoint": s3.endpoint(), "bucket": "bucket", "credentials": "local"}
    ]});
    assert_eq!(m.api.post("/add_project/", &body, &Auth::root()).await.status, StatusCode::CREATED);
    std::fs::create_dir_all(m.mirror_root().join("pushed")).unwrap();
    std::fs::write(m.mirror_root().join("pushed/f.txt"), b"x").unwrap();
    let push = |expected: &'static str| {
        let api = m.api.clone();
        async move {
            let before = api.get("/targets/pushes?id=pushed&limit=1", &Auth::root()).await.body[0]["id"].as_i64();
            let r = api.post("/targets/sync?id=pushed", &json!({}), &Auth::root()).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
            wait_for(30, "the push to end", || async {
                let p = api.get("/targets/pushes?id=pushed&limit=1", &Auth::root()).await.body[0].clone();
                (p["id"].as_i64() != before && p["status"] != json!("running")).then_some(p)
            })
            .await;
            let p = api.get("/targets/pushes?id=pushed&limit=1", &Auth::root()).await.body[0].clone();
            assert_eq!(p["status"], json!(expected), "{p}");
        }
    };
    push("success").await;
    s3.stop().await;
    push("failed").await;
    push("failed").await;
    wait_for(10, "push_failed delivered", || async { (!receiver.got("ops").is_empty()).then_some(()) }).await;
    s3.restart().await;
    push("success").await;
    wait_for(10, "push_recovered delivered", || async { (receiver.got("ops").len() >= 2).then_some(()) }).await;
    assert_eq!(receiver.events("ops"), ["push_failed", "push_recovered"], "once per change of state");
    let failed = &receiver.got("ops")[0].body;
    assert!(failed["text"].as_str().unwrap().starts_with("mirror-sync: push of pushed to cdn failed"), "{failed}");
}
