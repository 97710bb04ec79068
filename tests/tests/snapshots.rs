//! Slaves pull a frozen copy of each generation (`snapshots = true`, the default), not the
//! master's live tree: what a slave gets under generation N is N, whatever the master's tree has
//! become meanwhile. A real upstream rsync daemon, a master with its managed rsync daemon, a real
//! `mirror-slave`, and a slave played by the test (to hold a pull open as long as it likes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use mirror_master::config::Settings;
use mirror_tests::cluster::{RSYNCD_PASSWORD, cluster_settings, served_generations, start_slaves, sync_and_wait};
use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, generate_tree, snapshot};
use mirror_tests::{Auth, TestMaster, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn add_project(m: &TestMaster, upstream: &Upstream, id: &str) {
    let body = json!({
        "project": id,
        "rsync_host": "127.0.0.1",
        "rsync_port": upstream.port,
        "rsync_module": "data",
        "rsync_user": UPSTREAM_USER,
        "rsync_password": UPSTREAM_PASSWORD,
        "dest": format!("pub/{id}"),
        "rsync_options": {"delete": "--delete"},
    });
    let r = m.api.post("/add_project/", &body, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

/// A slave that takes every notification, keeps it, and never pulls by itself. `old`: as a slave
/// from before snapshots, it refuses a request with a field it does not know (`source_path`).
#[derive(Clone, Default)]
pub(crate) struct HeldSlave {
    pub(crate) seen: Arc<Mutex<Vec<Value>>>,
    old: bool,
}

impl HeldSlave {
    async fn serve(&self) -> u16 {
        async fn take(State(me): State<HeldSlave>, body: Bytes) -> (StatusCode, axum::Json<Value>) {
            let request: Value = serde_json::from_slice(&body).unwrap();
            if me.old && request.get("source_path").is_some() {
                let refused = json!({"success": false, "field": "source_path", "message": "unknown field"});
                return (StatusCode::BAD_REQUEST, axum::Json(refused));
            }
            me.seen.lock().unwrap().push(request);
            (StatusCode::OK, axum::Json(json!({"success": true, "state": "started"})))
        }
        let app = Router::new().route("/sync_from_master/", axum::routing::post(take)).with_state(self.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    /// Serves, and is registered with the master: its port and the token the master issued.
    pub(crate) async fn register(&self, m: &TestMaster) -> (u16, String) {
        let port = self.serve().await;
        let r = m.api.post("/add_slave/", &json!({"hostname": "127.0.0.1", "port": port}), &Auth::root()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        (port, r.body["token"].as_str().unwrap().to_owned())
    }

    pub(crate) async fn request_for(&self, generation: i64) -> Value {
        wait_for(30, &format!("the notification of generation {generation}"), || async {
            self.seen.lock().unwrap().iter().find(|r| r["generation"] == json!(generation)).cloned()
        })
        .await
    }
}

/// What the propagation view says of the current generation's snapshot (project `tree`).
async fn snapshot_shown(m: &TestMaster) -> Value {
    m.api.get("/projects/tree/propagation", &Auth::root()).await.body["snapshot"].clone()
}

/// The paths where two trees differ (`snapshot`'s maps), not their bytes.
fn differences(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
}

/// What plain rsync gets from the master's daemon at `path` in its module (as a slave pulls).
fn pull(m: &TestMaster, path: &str, into: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let r = &m.settings.rsyncd;
    let out = std::process::Command::new("rsync")
        .arg("-a")
        .arg(format!("rsync://{}@127.0.0.1:{}/{}/{path}/", r.user, r.port, r.module))
        .arg(format!("{}/", into.display()))
        .env("RSYNC_PASSWORD", RSYNCD_PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    snapshot(into)
}

/// An upstream daemon serving a generated tree of `files` files, and a master with its managed
/// rsync daemon, its settings changed by `tweak` first.
async fn upstream_and_master(files: usize, tweak: impl FnOnce(&mut Settings)) -> (Upstream, TestMaster) {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), files);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cluster_settings(dir.path());
    tweak(&mut settings);
    (upstream, TestMaster::start_with(dir, settings).await)
}

#[tokio::test]
async fn a_generation_is_pulled_whole_after_the_master_has_moved_on_and_removed_once_pulled() {
    // A pull not reported keeps its snapshot for three times this (the reconciler's patience).
    let (upstream, m) = upstream_and_master(20, |s| s.notify_timeout_secs = 10).await;
    std::fs::write(upstream.data().join("version"), "1").unwrap();
    let held = HeldSlave::default();
    let (port, token) = held.register(&m).await;
    add_project(&m, &upstream, "tree").await;

    assert_eq!(sync_and_wait(&m, "tree").await, 1);
    let first = held.request_for(1).await;
    assert_eq!(first["source_path"], json!(".mirror-sync-snap/tree/1"), "{first}");
    assert_eq!(snapshot_shown(&m).await, json!(true));
    assert_eq!(first["path"], json!("pub/tree"));
    let one = snapshot(&upstream.data());

    // The upstream changes: one file edited, one gone, one new. The master's tree follows.
    // (Another length: rsync skips a file of the same size and mtime second.)
    std::fs::write(upstream.data().join("version"), "two").unwrap();
    std::fs::remove_file(upstream.data().join("dir0/sub0/file0.txt")).unwrap();
    std::fs::write(upstream.data().join("added"), "new in 2").unwrap();
    assert_eq!(sync_and_wait(&m, "tree").await, 2);
    assert_eq!(held.request_for(2).await["source_path"], json!(".mirror-sync-snap/tree/2"));
    let live = m.mirror_root().join("pub/tree");
    let (live_tree, two) = (snapshot(&live), snapshot(&upstream.data()));
    assert_eq!(differences(&live_tree, &two), Vec::<String>::new(), "the master's own tree is generation 2");

    // The slave still pulling generation 1 gets generation 1, exactly.
    let scratch = tempfile::tempdir().unwrap();
    let pulled = pull(&m, ".mirror-sync-snap/tree/1", &scratch.path().join("one"));
    assert_eq!(differences(&pulled, &one), Vec::<String>::new(), "what a slave of generation 1 gets");
    let snaps = m.mirror_root().join(".mirror-sync-snap/tree");
    assert!(snaps.join("1").is_dir() && snaps.join("2").is_dir());

    // It reports generation 1 pulled: that snapshot goes (the current one stays).
    let report = json!({
        "slave": format!("127.0.0.1:{port}"), "project": "tree", "generation": 1, "status": "success",
        "exit_code": 0, "message": "", "stats": {}, "started_at": null, "ended_at": "2026-01-01T00:00:00.000Z",
    });
    let r = m.api.post("/slave_rsync_complete/", &report, &Auth::Bearer(token)).await;
    assert!(r.status.is_success(), "{}", r.text);
    wait_for(15, "snapshot 1 to be removed", || async { (!snaps.join("1").exists()).then_some(()) }).await;
    assert!(snaps.join("2").is_dir(), "the current generation's snapshot stays");
    // Hard links: a file of the snapshot is the tree's own file, not a copy.
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (std::fs::metadata(live.join("added")).unwrap(), std::fs::metadata(snaps.join("2/added")).unwrap());
    assert_eq!(a.ino(), b.ino());

    // A removed project's snapshots go with it.
    let r = m.api.post("/remove_project/", &json!({"id": "tree"}), &Auth::root()).await;
    assert!(r.status.is_success(), "{}", r.text);
    wait_for(15, "the project's snapshots to be removed", || async { (!snaps.exists()).then_some(()) }).await;
}

#[tokio::test]
async fn a_real_slave_pulls_the_generation_not_what_the_master_is_writing() {
    let (upstream, m) = upstream_and_master(20, |_| {}).await;
    let mut slaves = start_slaves(&m.api, 1).await;
    add_project(&m, &upstream, "tree").await;
    // The slave is down while generation 1 is made, and while the master's tree is half way to
    // the next (as during a run: a new file written, an old one gone).
    slaves[0].kill().await;
    assert_eq!(sync_and_wait(&m, "tree").await, 1);
    let live = m.mirror_root().join("pub/tree");
    std::fs::write(live.join("half-written"), "not a generation").unwrap();
    std::fs::remove_file(live.join("dir1/sub1/file1.txt")).unwrap();

    slaves[0].restart().await;
    wait_for(30, "the slave to serve generation 1", || async {
        (served_generations(&m.api, "tree").await == vec![(format!("127.0.0.1:{}", slaves[0].port), 1)]).then_some(())
    })
    .await;
    let (served, upstream_tree) = (snapshot(&slaves[0].root().join("pub/tree")), snapshot(&upstream.data()));
    assert_eq!(differences(&served, &upstream_tree), Vec::<String>::new(), "the slave serves generation 1");
}

/// With `snapshots = false`, as before they existed: no snapshot, the slave is told the live tree.
#[tokio::test]
async fn without_snapshots_slaves_are_told_the_live_tree() {
    let (upstream, m) = upstream_and_master(5, |s| s.snapshots = false).await;
    let held = HeldSlave::default();
    held.register(&m).await;
    add_project(&m, &upstream, "tree").await;
    assert_eq!(sync_and_wait(&m, "tree").await, 1);
    let request = held.request_for(1).await;
    assert!(request.get("source_path").is_none(), "{request}");
    assert!(!m.mirror_root().join(".mirror-sync-snap").exists());
    assert_eq!(snapshot_shown(&m).await, json!(false));
}

/// A slave from before snapshots refuses `source_path`: it is asked again at once for the live
/// tree, so slaves and master can be upgraded in either order.
#[tokio::test]
async fn a_slave_from_before_snapshots_is_asked_for_the_live_tree() {
    let (upstream, m) = upstream_and_master(5, |_| {}).await;
    let (old, new) = (HeldSlave { old: true, ..HeldSlave::default() }, HeldSlave::default());
    for slave in [&old, &new] {
        slave.register(&m).await;
    }
    add_project(&m, &upstream, "tree").await;
    assert_eq!(sync_and_wait(&m, "tree").await, 1);
    let (to_old, to_new) = (old.request_for(1).await, new.request_for(1).await);
    assert!(to_old.get("source_path").is_none(), "{to_old}");
    assert_eq!(to_old["path"], json!("pub/tree"));
    assert_eq!(to_new["source_path"], json!(".mirror-sync-snap/tree/1"), "{to_new}");
}

/// With no slave to tell and no object store to push to, a run makes no snapshot; a slave added
/// then is told the live tree for the generation it finds, and gets snapshots from the next one.
#[tokio::test]
async fn no_snapshot_is_made_for_nobody() {
    let (upstream, m) = upstream_and_master(5, |_| {}).await;
    add_project(&m, &upstream, "tree").await;
    assert_eq!(sync_and_wait(&m, "tree").await, 1);
    assert!(!m.mirror_root().join(".mirror-sync-snap").exists());
    assert_eq!(snapshot_shown(&m).await, json!(false));

    let held = HeldSlave::default();
    held.register(&m).await;
    let first = held.request_for(1).await;
    assert!(first.get("source_path").is_none(), "{first}");
    std::fs::write(upstream.data().join("second.txt"), "two\n").unwrap();
    assert_eq!(sync_and_wait(&m, "tree").await, 2);
    assert_eq!(held.request_for(2).await["source_path"], json!(".mirror-sync-snap/tree/2"));
    assert_eq!(snapshot_shown(&m).await, json!(true));
}
