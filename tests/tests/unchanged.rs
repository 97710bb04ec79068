//! A run costs what rsync costs (issue 26): a run that changed nothing makes no generation and
//! tells no slave or bucket; the deletion guard is rsync's own `--max-delete` in the run itself,
//! with what it deleted put back from the previous generation's frozen copy. A real upstream rsync
//! daemon, a real master, a slave played by the test that records every notification, and a real
//! S3-compatible server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, generate_tree, snapshot};
use mirror_tests::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use mirror_tests::{Api, Auth, TestMaster, finished_run, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::snapshots::HeldSlave;

fn project(upstream: &Upstream, extra: Value) -> Value {
    let mut body = json!({
        "project": "p", "rsync_host": "127.0.0.1", "rsync_port": upstream.port, "rsync_module": "data",
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": "p",
        "rsync_options": {"delete": "--delete"},
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn run(api: &Api) -> Value {
    let r = api.get("/syncup/?id=p", &Auth::root()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    finished_run(api, r.body["run_id"].as_i64().unwrap(), 60).await
}

async fn generation(api: &Api) -> i64 {
    api.get("/projects/p", &Auth::root()).await.body["generation"].as_i64().unwrap()
}

async fn pushes(api: &Api) -> Vec<Value> {
    api.get("/targets/pushes?id=p", &Auth::root()).await.body.as_array().unwrap().clone()
}

/// No change: a success with `changed: false`, the generation as it was, no notification to the
/// slave, no push to the bucket. A change after it: all of those again.
#[tokio::test]
async fn a_run_that_changed_nothing_makes_no_generation_and_tells_no_one() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 20);
    let s3 = S3Server::start(&["mirror"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestMaster::settings_in(dir.path());
    s.s3_credentials = vec![mirror_tests::s3::credentials(dir.path(), ACCESS_KEY, SECRET_KEY, &s3.endpoint())];
    let m = TestMaster::start_with(dir, s).await;
    let slave = HeldSlave::default();
    slave.register(&m).await;
    let target = json!({"name": "cdn", "endpoint": s3.endpoint(), "bucket": "mirror", "credentials": "local", "target_prefix": "p/"});
    let r = m.api.post("/add_project/", &project(&upstream, json!({"targets": [target]})), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let first = run(&m.api).await;
    assert_eq!((first["status"].clone(), first["changed"].clone()), (json!("success"), json!(true)), "{first}");
    slave.request_for(1).await;
    wait_for(30, "the first push", || async { (pushes(&m.api).await.len() == 1).then_some(()) }).await;
    wait_for(30, "the first push to end", || async {
        (pushes(&m.api).await[0]["status"] == json!("success")).then_some(())
    })
    .await;
    let _ = s3.take_requests();

    let same = run(&m.api).await;
    assert_eq!((same["status"].clone(), same["changed"].clone()), (json!("success"), json!(false)), "{same}");
    assert_eq!(generation(&m.api).await, 1);
    let listed = m.api.get("/projects/p", &Auth::root()).await.body;
    assert_eq!(listed["last_success"], same["ended_at"], "the staleness clock moves: {listed}");

    // A change: generation 2, told and pushed; then nothing of the unchanged run was ever sent.
    std::fs::write(upstream.data().join("new.txt"), "new\n").unwrap();
    let changed = run(&m.api).await;
    assert_eq!(changed["changed"], json!(true), "{changed}");
    assert_eq!(generation(&m.api).await, 2);
    slave.request_for(2).await;
    wait_for(30, "the second push", || async { (pushes(&m.api).await.len() == 2).then_some(()) }).await;
    let told: Vec<i64> = slave.seen.lock().unwrap().iter().map(|r| r["generation"].as_i64().unwrap()).collect();
    assert_eq!(told, [1, 2], "the unchanged run told the slave something");
    assert_eq!(pushes(&m.api).await.len(), 2, "the unchanged run pushed");
}

/// Only a deletion, only a mode change, only a new symlink: each is a change.
#[tokio::test]
async fn only_a_deletion_a_mode_change_or_a_symlink_is_still_a_change() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 6);
    let m = TestMaster::start().await;
    assert_eq!(
        m.api.post("/add_project/", &project(&upstream, json!({})), &Auth::root()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(run(&m.api).await["changed"], json!(true));
    assert_eq!(run(&m.api).await["changed"], json!(false));
    let data = upstream.data();
    let first = std::fs::read_dir(data.join("dir0/sub0")).unwrap().flatten().next().unwrap().path();
    type Change = (&'static str, Box<dyn Fn()>);
    let changes: [Change; 3] = [
        (
            "a deletion",
            // Its directory keeps its time: the deletion is the one thing that changed.
            Box::new(move || {
                let dir = first.parent().unwrap();
                let time = std::fs::metadata(dir).unwrap().modified().unwrap();
                std::fs::remove_file(&first).unwrap();
                std::fs::File::open(dir).unwrap().set_modified(time).unwrap();
            }),
        ),
        (
            "a mode change",
            Box::new({
                let data = data.clone();
                move || {
                    let f = std::fs::read_dir(data.join("dir1/sub1")).unwrap().flatten().next().unwrap().path();
                    std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
                }
            }),
        ),
        ("a symlink", Box::new(move || std::os::unix::fs::symlink("dir1", data.join("to-dir1")).unwrap())),
    ];
    for (i, (what, change)) in changes.iter().enumerate() {
        change();
        let r = run(&m.api).await;
        assert_eq!((r["status"].clone(), r["changed"].clone()), (json!("success"), json!(true)), "{what}: {r}");
        assert_eq!(generation(&m.api).await, 2 + i as i64, "{what}");
        assert_eq!(run(&m.api).await["changed"], json!(false), "after {what}");
    }
}

fn files(root: &std::path::Path) -> usize {
    snapshot(root).len()
}

/// Over the limit, the run itself stops at rsync's --max-delete: it fails, the generation stays,
/// and what it deleted comes back from the previous generation's frozen copy (with a slave, so
/// that there is one). The upstream is asked for its file list once: no dry run first.
#[tokio::test]
async fn a_run_over_the_deletion_limit_puts_back_what_it_deleted() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 12);
    let m = TestMaster::start().await;
    HeldSlave::default().register(&m).await;
    let body = project(&upstream, json!({"max_delete": 3}));
    assert_eq!(m.api.post("/add_project/", &body, &Auth::root()).await.status, StatusCode::CREATED);
    assert_eq!(run(&m.api).await["status"], json!("success"));
    let tree = m.mirror_root().join("p");
    let before = snapshot(&tree);
    let log_before = std::fs::read_to_string(upstream.dir.path().join("rsyncd.log")).unwrap_or_default();
    let gone: Vec<&String> = before.keys().filter(|k| k.starts_with("dir")).take(6).collect();
    assert_eq!(gone.len(), 6);
    for f in gone {
        std::fs::remove_file(upstream.data().join(f)).unwrap();
    }
    let r = run(&m.api).await;
    assert_eq!(r["status"], json!("failed"), "{r}");
    let message = r["message"].as_str().unwrap();
    assert!(message.contains("max_delete 3") && message.contains("put back"), "{message}");
    assert_eq!(generation(&m.api).await, 1);
    assert_eq!(snapshot(&tree), before, "what it deleted is back, as it was");
    let log = std::fs::read_to_string(upstream.dir.path().join("rsyncd.log")).unwrap_or_default();
    let connections = log[log_before.len()..].matches("connect from").count();
    assert_eq!(connections, 1, "one walk of the upstream, not a dry run and a run:\n{}", &log[log_before.len()..]);
}

/// Without a frozen copy (no slave and no target: none is made) the few files rsync deleted before
/// it stopped stay deleted; the run fails, the generation stays, and the message says so.
#[tokio::test]
async fn without_a_frozen_copy_the_few_deleted_files_stay_deleted_and_it_says_so() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 12);
    let m = TestMaster::start().await;
    let body = project(&upstream, json!({"max_delete": 3}));
    assert_eq!(m.api.post("/add_project/", &body, &Auth::root()).await.status, StatusCode::CREATED);
    assert_eq!(run(&m.api).await["status"], json!("success"));
    let tree = m.mirror_root().join("p");
    let count = files(&tree);
    let names: Vec<String> = snapshot(&tree).keys().filter(|k| k.starts_with("dir")).take(6).cloned().collect();
    assert_eq!(names.len(), 6);
    for f in &names {
        std::fs::remove_file(upstream.data().join(f)).unwrap();
    }
    let r = run(&m.api).await;
    assert_eq!(r["status"], json!("failed"), "{r}");
    assert!(r["message"].as_str().unwrap().contains("no frozen copy"), "{r}");
    assert_eq!(generation(&m.api).await, 1);
    let left = files(&tree);
    assert!(left >= count - 3 && left < count, "at most the limit deleted: {count} -> {left}");
}

/// A probe that did not change ends the run before any walk of the upstream: the daemon sees one
/// connection, for the probe alone; a change elsewhere is not fetched. Once the probe changes,
/// the run goes in full.
#[tokio::test]
async fn a_probe_that_did_not_change_skips_the_walk_and_one_that_did_runs_in_full() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 6);
    let trace = upstream.data().join("project/trace");
    std::fs::create_dir_all(&trace).unwrap();
    std::fs::write(trace.join("master"), "Archive serial: 2026120301\n").unwrap();
    let m = TestMaster::start().await;
    let body = project(&upstream, json!({"probe": "project/trace/master"}));
    assert_eq!(m.api.post("/add_project/", &body, &Auth::root()).await.status, StatusCode::CREATED);
    let first = run(&m.api).await;
    assert_eq!((first["changed"].clone(), first["probe"].clone()), (json!(true), json!("first")), "{first}");

    std::fs::write(upstream.data().join("dir0/late.txt"), "written without a new trace\n").unwrap();
    let log_path = upstream.dir.path().join("rsyncd.log");
    let before = std::fs::read_to_string(&log_path).unwrap_or_default().len();
    let skipped = run(&m.api).await;
    assert_eq!(
        (skipped["status"].clone(), skipped["changed"].clone(), skipped["probe"].clone()),
        (json!("success"), json!(false), json!("unchanged")),
        "{skipped}"
    );
    assert_eq!(generation(&m.api).await, 1);
    assert!(!m.mirror_root().join("p/dir0/late.txt").exists(), "the tree was walked");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let log = &log[before..];
    assert_eq!(log.matches("connect from").count(), 1, "{log}");
    assert!(log.contains("project/trace/master"), "{log}");

    std::fs::write(trace.join("master"), "Archive serial: 2026120302\n").unwrap();
    let full = run(&m.api).await;
    assert_eq!((full["changed"].clone(), full["probe"].clone()), (json!(true), json!("changed")), "{full}");
    assert_eq!(generation(&m.api).await, 2);
    assert!(m.mirror_root().join("p/dir0/late.txt").exists());
    // A probe that is not a path in the module is refused by name.
    let r = m.api.post("/update_project/basic/", &json!({"id": "p", "probe": "../etc/passwd"}), &Auth::root()).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!("probe")), "{}", r.text);
}
