//! Faults (issue 10): writes whose clients give up, a master killed with its managed daemon, a
//! slave killed in the middle of a pull. Real processes throughout.

use std::path::Path;
use std::time::{Duration, Instant};

use mirror_tests::cluster::{SlaveProcess, add_slave, cluster_settings, served_generations};
use mirror_tests::rsyncd::{
    UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, all_command_lines, free_port, generate_tree, snapshot,
};
use mirror_tests::{Auth, MasterProcess, ROOT_PASSWORD, TestMaster, finished_run, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// 200 clients add scheduled projects and give up after 1 to 150 ms, most before the answer. Every
/// project that was stored fires: none is left in the database without its timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_whose_clients_give_up_still_schedule_what_they_stored() {
    let m = TestMaster::start().await;
    let closed_port = free_port();
    // A token: checked at once (a Basic login would cost each new client an argon2 verification).
    let token = m.api.token(&Auth::root()).await;
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..200u64 {
        let (base, token) = (m.api.base.clone(), token.clone());
        clients.spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_millis(1 + (i * 7) % 150)).build().unwrap();
            let body = json!({
                "project": format!("p{i}"), "rsync_host": "127.0.0.1", "rsync_port": closed_port,
                "rsync_module": "m", "dest": format!("p{i}"), "cron_options": {"second": "*/2"}
            });
            http.post(format!("{base}/add_project/"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| e.is_timeout())
        });
    }
    let (mut gave_up, mut answers) = (0, std::collections::BTreeMap::new());
    while let Some(r) = clients.join_next().await {
        match r.unwrap() {
            Ok(status) => *answers.entry(status).or_insert(0) += 1,
            Err(timeout) => gave_up += usize::from(timeout),
        }
    }
    println!("answers: {answers:?}, gave up: {gave_up}");
    assert!(gave_up > 0, "no client gave up: the test proves nothing");
    // Writes whose clients gave up may still be committing: wait until one at least is there.
    let stored: Vec<String> = wait_for(10, "a stored project", || async {
        let listing = m.api.get("/list_projects/", &Auth::root()).await.body;
        let ids: Vec<String> = listing.as_array()?.iter().filter_map(|p| p["id"].as_str().map(str::to_owned)).collect();
        (!ids.is_empty()).then_some(ids)
    })
    .await;
    // Every stored project fires (its runs fail: nothing listens on the port; they are runs). A
    // write whose client gave up may still be committed after the listing above was read: the
    // listing can grow, and what it gains must fire too.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listing = m.api.get("/list_projects/", &Auth::root()).await.body;
        let projects = listing.as_array().cloned().unwrap_or_default();
        let ids: Vec<&str> = projects.iter().filter_map(|p| p["id"].as_str()).collect();
        let missing: Vec<&String> = stored.iter().filter(|id| !ids.contains(&id.as_str())).collect();
        let silent: Vec<(&str, &Value, &Value)> = projects
            .iter()
            .filter(|p| p["status"] == json!("never_run") || p["next_run_time"].is_null())
            .map(|p| (p["id"].as_str().unwrap_or("?"), &p["status"], &p["next_run_time"]))
            .collect();
        if missing.is_empty() && silent.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 30 s, stored projects missing from the listing: {missing:?}; projects that never fired \
             (id, status, next_run_time): {silent:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("{gave_up} of 200 clients gave up; {} projects stored, every one fired", stored.len());
}

fn read_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    // A zombie (dead, not yet reaped by its parent) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

/// `kill -9` of a master takes its managed rsync daemon along; a daemon an older master left
/// running (one without the guard) is stopped by the next master, which then binds its own.
#[tokio::test]
async fn a_killed_master_leaves_no_daemon_and_the_next_one_binds_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let env = [
        ("MIRROR_ROOT_PASSWORD", ROOT_PASSWORD),
        ("MIRROR_MASTER__RSYNCD__MANAGE", "true"),
        ("MIRROR_MASTER__RSYNCD__PORT", port.as_str()),
        ("MIRROR_MASTER__RSYNCD__PASSWORD", "daemon-Pa55"),
    ];
    let port: u16 = port.parse().unwrap();
    let pid_file = dir.path().join("rsyncd/rsyncd.pid");
    let first = MasterProcess::start(dir.path(), &env).await;
    let daemon = wait_for(10, "the daemon's pid file", || async { read_pid(&pid_file) }).await;
    assert!(mirror_runtime::rsync::listens_on(daemon, port), "the first master's daemon holds the port");
    first.kill().await;
    wait_for(5, "the daemon to die with its master", || async { (!alive(daemon)).then_some(()) }).await;

    // A daemon as an older master would have left it: same configuration, port and pid file.
    let _ = std::fs::remove_file(&pid_file);
    let mut leftover = tokio::process::Command::new("rsync")
        .args(["--daemon", "--no-detach", "--address=127.0.0.1"])
        .arg(format!("--config={}", dir.path().join("rsyncd/rsyncd.conf").canonicalize().unwrap().display()))
        .arg(format!("--port={port}"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let leftover_pid = leftover.id().unwrap();
    wait_for(10, "the leftover daemon to listen", || async {
        mirror_runtime::rsync::listens_on(leftover_pid, port).then_some(())
    })
    .await;

    let mut second = MasterProcess::start(dir.path(), &env).await;
    let exit = tokio::time::timeout(Duration::from_secs(5), leftover.wait()).await;
    assert!(exit.is_ok(), "the leftover daemon was not stopped");
    let daemon = wait_for(10, "the new daemon to hold the port", || async {
        read_pid(&pid_file).filter(|pid| *pid != leftover_pid && mirror_runtime::rsync::listens_on(*pid, port))
    })
    .await;
    let log = second.drain_log().join("\n");
    assert!(log.contains("stopped the rsync daemon a previous master left running"), "{log}");
    assert!(!log.contains("Address already in use"), "{log}");
    second.kill().await;
    wait_for(5, "the second daemon to die with its master", || async { (!alive(daemon)).then_some(()) }).await;
}

/// The rsync processes pulling into `root`.
fn pulls_into(root: &Path) -> Vec<String> {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let marker = format!("{}/", root.display());
    all_command_lines().into_iter().filter(|c| c.contains("rsync") && c.contains(&marker)).collect()
}

/// A slave killed in the middle of a pull leaves no rsync behind, and once restarted it serves the
/// current generation within 10 s (it tells the master it is back; the master does not wait out
/// the pull it thought was going), with the master's tree.
#[tokio::test]
async fn a_slave_killed_mid_pull_leaves_no_rsync_and_is_caught_up_within_ten_seconds_of_its_restart() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 30);
    let big: Vec<u8> = (0..1_500_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    std::fs::write(upstream.data().join("large.bin"), big).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cluster_settings(dir.path());
    // A master that would wait long for a slave it thinks is pulling: only the slave's word
    // that it restarted can make the catch-up fast.
    settings.reconcile_interval_secs = 30;
    let m = TestMaster::start_with(dir, settings).await;
    let project = |basic: Value| {
        json!({
            "project": "big", "rsync_host": "127.0.0.1", "rsync_port": upstream.port, "rsync_module": "data",
            "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": "pub/big",
            "rsync_options": {"basic": basic, "delete": "--delete"},
        })
    };
    assert_eq!(m.api.post("/add_project/", &project(json!([])), &Auth::root()).await.status, StatusCode::CREATED);
    let run = m.api.get("/syncup/?id=big", &Auth::root()).await.body["run_id"].as_i64().unwrap();
    assert_eq!(finished_run(&m.api, run, 60).await["status"], json!("success"));
    // Slow pulls from now on (the master's next run has nothing to transfer).
    let slow = json!({"id": "big", "rsync_options": {"basic": ["--bwlimit=20"], "delete": "--delete"}});
    assert_eq!(m.api.post("/update_project/basic/", &slow, &Auth::root()).await.status, StatusCode::OK);
    // A small change, so that the run makes generation 2 (a run that changes nothing makes none).
    std::fs::write(upstream.data().join("second.txt"), "two\n").unwrap();
    let run = m.api.get("/syncup/?id=big", &Auth::root()).await.body["run_id"].as_i64().unwrap();
    assert_eq!(finished_run(&m.api, run, 60).await["status"], json!("success"));

    let mut slave = SlaveProcess::start(&m.api.base).await;
    add_slave(&m.api, &mut slave).await;
    let root = slave.root();
    wait_for(20, "the slave's pull to be under way", || async { (!pulls_into(&root).is_empty()).then_some(()) }).await;
    slave.kill().await;
    wait_for(5, "no rsync of the killed slave left", || async { pulls_into(&root).is_empty().then_some(()) }).await;

    // Fast again, then the slave comes back.
    let fast = json!({"id": "big", "rsync_options": {"basic": [], "delete": "--delete"}});
    assert_eq!(m.api.post("/update_project/basic/", &fast, &Auth::root()).await.status, StatusCode::OK);
    let restarted = Instant::now();
    slave.restart().await;
    wait_for(10, "the restarted slave to serve generation 2", || async {
        let served = served_generations(&m.api, "big").await;
        (served.len() == 1 && served[0].1 == 2).then_some(())
    })
    .await;
    println!("caught up {:.1} s after the restart", restarted.elapsed().as_secs_f64());
    assert_eq!(snapshot(&root.join("pub/big")), snapshot(&upstream.data()));
}

/// Out of file descriptors: the accepts that fail are logged with a count and retried after a
/// short pause; once connections close, the master answers again.
#[tokio::test]
async fn a_master_out_of_file_descriptors_counts_failed_accepts_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = MasterProcess::start(dir.path(), &[("MIRROR_ROOT_PASSWORD", ROOT_PASSWORD)]).await;
    let pid = master.child.id().unwrap().to_string();
    let limited = std::process::Command::new("prlimit").args(["--pid", &pid, "--nofile=64:64"]).status().unwrap();
    assert!(limited.success(), "prlimit failed");
    let addr = master.api.base.trim_start_matches("http://").to_owned();
    let held: Vec<std::net::TcpStream> = (0..120).filter_map(|_| std::net::TcpStream::connect(&addr).ok()).collect();
    let mut log = String::new();
    wait_for(10, "a failed accept to be logged", || {
        log.push_str(&master.drain_log().join("\n"));
        let seen = log.contains("accept failed") && log.contains("accept_errors_total");
        async move { seen.then_some(()) }
    })
    .await;
    drop(held);
    wait_for(10, "the master to answer again", || async {
        (master.api.get("/status/", &Auth::None).await.status == StatusCode::OK).then_some(())
    })
    .await;
}
