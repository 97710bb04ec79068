//! Freshness files (Arch's `lastupdate` and `lastsync`, a redirector's `trace_epoch_file`) on a
//! real master and a real slave after a flip (the project publishes with `flip`), against a real
//! rsync daemon.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mirror_tests::cluster::{served_generations, start_cluster_master, start_slaves, sync_and_wait};
use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, generate_tree};
use mirror_tests::{Auth, wait_for};
use reqwest::StatusCode;
use serde_json::json;

fn read_epoch(path: &Path) -> i64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.ends_with('\n') && text.lines().count() == 1, "{text:?}");
    text.trim().parse().unwrap()
}

fn set_mtime(path: &Path, secs: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[tokio::test]
async fn a_slave_gets_the_freshness_files_with_the_tree_they_describe() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 10);
    // The upstream's newest file: what `lastupdate` must say.
    std::fs::write(upstream.data().join("newest.txt"), b"new").unwrap();
    set_mtime(&upstream.data().join("newest.txt"), 1_800_000_000);
    // Files of the same names upstream are neither brought nor allowed to remove ours.
    std::fs::write(upstream.data().join("lastsync"), b"1\n").unwrap();
    let m = start_cluster_master().await;
    let slaves = start_slaves(&m.api, 1).await;
    let mut body = json!({
        "project": "arch", "rsync_host": "127.0.0.1", "rsync_port": upstream.port, "rsync_module": "data",
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": "pub/arch",
        "rsync_options": {"basic": ["--no-motd"], "delete": "--delete"}, "freshness": true, "flip": true,
        "trace_epoch_file": "../x",
    });
    let r = m.api.post("/add_project/", &body, &Auth::root()).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!("trace_epoch_file")), "{}", r.text);
    body["trace_epoch_file"] = json!("lastsync");
    let r = m.api.post("/add_project/", &body, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    body["trace_epoch_file"] = json!("TIME");
    let r = m.api.post("/add_project/", &body, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert_eq!(sync_and_wait(&m, "arch").await, 1);
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let master_tree = m.mirror_root().join("pub/arch");
    assert_eq!(read_epoch(&master_tree.join("lastupdate")), 1_800_000_000);
    let lastsync = read_epoch(&master_tree.join("lastsync"));
    assert!((before..=after).contains(&lastsync), "{before} <= {lastsync} <= {after}");
    assert_eq!(read_epoch(&master_tree.join("TIME")), lastsync);

    // The slave serves the same files as the tree it got them with.
    let slave_tree = slaves[0].root().join("pub/arch");
    wait_for(30, "the slave to serve generation 1", || async {
        (served_generations(&m.api, "arch").await == vec![(format!("127.0.0.1:{}", slaves[0].port), 1)]).then_some(())
    })
    .await;
    for name in ["lastupdate", "lastsync", "TIME"] {
        assert_eq!(read_epoch(&slave_tree.join(name)), read_epoch(&master_tree.join(name)), "{name}");
    }
    assert!(slave_tree.join("newest.txt").exists());

    // A run that changes nothing makes no generation and leaves them; a change upstream moves
    // them forward, on the master and the slave, and --delete does not take them away.
    assert_eq!(sync_and_wait(&m, "arch").await, 1);
    assert_eq!(read_epoch(&master_tree.join("lastsync")), lastsync);
    std::fs::write(upstream.data().join("newer.txt"), b"newer").unwrap();
    set_mtime(&upstream.data().join("newer.txt"), 1_800_000_100);
    assert_eq!(sync_and_wait(&m, "arch").await, 2);
    wait_for(30, "the slave to serve generation 2", || async {
        (served_generations(&m.api, "arch").await.first().map(|s| s.1) == Some(2)).then_some(())
    })
    .await;
    assert_eq!(read_epoch(&slave_tree.join("lastupdate")), 1_800_000_100);
    assert!(read_epoch(&slave_tree.join("lastsync")) >= lastsync);
    assert_eq!(read_epoch(&slave_tree.join("TIME")), read_epoch(&slave_tree.join("lastsync")));
    assert_eq!(
        std::fs::read(slave_tree.join("lastsync")).unwrap(),
        std::fs::read(master_tree.join("lastsync")).unwrap()
    );
}
