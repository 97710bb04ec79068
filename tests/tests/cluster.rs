//! Propagation end to end: a real upstream rsync daemon, a master with its managed rsync daemon,
//! and three real `mirror-slave` processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use mirror_tests::cluster::{
    RSYNCD_PASSWORD, STANDALONE_TOKEN, SlaveProcess, add_slave, cluster_settings, served_generations,
    start_cluster_master, start_slaves, sync_and_wait,
};
use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, all_command_lines, generate_tree, snapshot};
use mirror_tests::{Api, Auth, TestMaster, finished_run, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn project(name: &str, upstream: &Upstream, basic: Value) -> Value {
    json!({
        "project": name,
        "rsync_host": "127.0.0.1",
        "rsync_port": upstream.port,
        "rsync_module": "data",
        "rsync_user": UPSTREAM_USER,
        "rsync_password": UPSTREAM_PASSWORD,
        "dest": format!("pub/{name}"),
        "rsync_options": {"basic": basic, "delete": "--delete"},
    })
}

async fn wait_all_at(api: &Api, project: &str, slaves: usize, generation: i64, secs: u64) {
    wait_for(secs, &format!("{slaves} slaves to serve generation {generation}"), || async {
        let served = served_generations(api, project).await;
        (served.len() == slaves && served.iter().all(|(_, g)| *g == generation)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_sync_reaches_all_three_slaves_with_the_same_tree() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 30);
    let m = start_cluster_master().await;
    let mut slaves = start_slaves(&m.api, 3).await;
    assert_eq!(
        m.api.post("/add_project/", &project("fedora", &upstream, json!([])), &Auth::root()).await.status,
        StatusCode::CREATED
    );

    assert_eq!(sync_and_wait(&m, "fedora").await, 1);
    wait_all_at(&m.api, "fedora", 3, 1, 30).await;
    for s in &slaves {
        assert_eq!(snapshot(&s.root().join("pub/fedora")), snapshot(&upstream.data()), "slave {}", s.port);
        assert_eq!(s.status().await["serving"]["fedora"]["generation"], json!(1));
    }

    // A change upstream: generation 2, everywhere, deletions included.
    std::fs::write(upstream.data().join("dir1/changed.txt"), b"generation two").unwrap();
    std::fs::remove_file(upstream.data().join("big.bin")).unwrap();
    assert_eq!(sync_and_wait(&m, "fedora").await, 2);
    wait_all_at(&m.api, "fedora", 3, 2, 30).await;
    for s in &slaves {
        assert_eq!(snapshot(&s.root().join("pub/fedora")), snapshot(&upstream.data()), "slave {}", s.port);
    }

    let listed = m.api.get("/list_slaves/", &Auth::root()).await.body;
    for s in listed.as_array().unwrap() {
        assert_eq!(s["healthy"], json!(true), "{s}");
        assert_eq!(s["projects"][0], json!({"project": "fedora", "generation": 2, "current": 2, "lag": 0}), "{s}");
    }
    let prop = m.api.get("/projects/fedora/propagation", &Auth::None).await.body;
    assert!(
        prop["slaves"].as_array().unwrap().iter().all(|s| s["served_at"].is_string() && s["lag"] == json!(0)),
        "{prop}"
    );

    // A slave added later receives every enabled project without an operator's call.
    let mut late = SlaveProcess::start(&m.api.base).await;
    add_slave(&m.api, &mut late).await;
    wait_all_at(&m.api, "fedora", 4, 2, 30).await;
    assert_eq!(snapshot(&late.root().join("pub/fedora")), snapshot(&upstream.data()));

    // A removed slave is no longer told anything.
    let r = m.api.post("/remove_slave/", &json!({"hostname": "127.0.0.1", "port": late.port}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK);
    std::fs::write(upstream.data().join("dir2/third.txt"), b"generation three").unwrap();
    assert_eq!(sync_and_wait(&m, "fedora").await, 3);
    wait_all_at(&m.api, "fedora", 3, 3, 30).await;
    assert_eq!(late.status().await["serving"]["fedora"]["generation"], json!(2));

    // Nothing was pulled twice: one completed pull per generation on each slave, while the
    // reconciler ran every second throughout.
    for s in slaves.iter_mut() {
        let pulls: Vec<String> = s.drain_log().into_iter().filter(|l| l.contains("pulled from the master")).collect();
        assert_eq!(pulls.len(), 3, "slave {}: {pulls:#?}", s.port);
        for g in 1..=3 {
            assert_eq!(pulls.iter().filter(|l| l.contains(&format!("generation={g}"))).count(), 1, "{pulls:#?}");
        }
    }
}

#[tokio::test]
async fn a_slave_down_during_the_fan_out_catches_up_through_the_reconciler() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 10);
    let m = start_cluster_master().await;
    let mut slaves = start_slaves(&m.api, 3).await;
    m.api.post("/add_project/", &project("debian", &upstream, json!([])), &Auth::root()).await;
    slaves[2].kill().await;
    assert_eq!(sync_and_wait(&m, "debian").await, 1);
    wait_for(30, "the two live slaves", || async {
        let served = served_generations(&m.api, "debian").await;
        (served.iter().filter(|(_, g)| *g == 1).count() == 2).then_some(())
    })
    .await;
    let down = format!("127.0.0.1:{}", slaves[2].port);
    let prop = m.api.get("/projects/debian/propagation", &Auth::root()).await.body;
    let entry = prop["slaves"].as_array().unwrap().iter().find(|s| s["slave"] == json!(down)).unwrap().clone();
    assert_eq!(entry["generation"], json!(0), "{entry}");

    // Back up, with no operator call: the reconciler brings it to the current generation.
    slaves[2].restart().await;
    wait_all_at(&m.api, "debian", 3, 1, 30).await;
    assert_eq!(snapshot(&slaves[2].root().join("pub/debian")), snapshot(&upstream.data()));

    // Killed in the middle of its pull, then restarted: it converges too, and no generation is
    // pulled twice by a slave that already serves it.
    std::fs::write(upstream.data().join("slow.bin"), vec![3u8; 300 * 1024]).unwrap();
    let r = m
        .api
        .post(
            "/update_project/basic/",
            &json!({"id": "debian", "rsync_options": {"basic": ["--bwlimit=200"]}}),
            &Auth::root(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let gen2 = sync_and_wait(&m, "debian").await;
    wait_for(30, "slave 0 pulling", || async {
        (slaves[0].status().await["running"]["debian"] == json!(gen2)).then_some(())
    })
    .await;
    slaves[0].kill().await;
    slaves[0].restart().await;
    wait_all_at(&m.api, "debian", 3, gen2, 60).await;
    for s in &slaves {
        assert_eq!(snapshot(&s.root().join("pub/debian")), snapshot(&upstream.data()), "slave {}", s.port);
    }
    // What the killed pull was receiving went to the slave's temporary directory, which the next
    // pull emptied: no half-written file stays behind, in the tree or beside it.
    let temp = slaves[0].root().join(".mirror-sync-tmp/debian");
    assert_eq!(std::fs::read_dir(&temp).unwrap().count(), 0, "{}", temp.display());
}

#[tokio::test]
async fn an_unreachable_slave_does_not_slow_the_others() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 10);
    // A notification timeout far longer than a healthy slave's whole pull: waiting on the silent
    // slave first would show plainly.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cluster_settings(dir.path());
    settings.notify_timeout_secs = 6;
    let m = TestMaster::start_with(dir, settings).await;
    // A "slave" that accepts connections and never answers.
    let tarpit = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tarpit_port = tarpit.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = tarpit.accept().await {
            held.push(sock);
        }
    });
    let r = m.api.post("/add_slave/", &json!({"hostname": "127.0.0.1", "port": tarpit_port}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let _slaves = start_slaves(&m.api, 2).await;
    m.api.post("/add_project/", &project("arch", &upstream, json!([])), &Auth::root()).await;
    sync_and_wait(&m, "arch").await;
    let run_end = Instant::now();
    wait_for(30, "the two live slaves", || async {
        let served = served_generations(&m.api, "arch").await;
        (served.iter().filter(|(_, g)| *g == 1).count() == 2).then_some(())
    })
    .await;
    let took = run_end.elapsed();
    // The silent slave costs 6 s per attempt; the others must not wait for it.
    assert!(took < Duration::from_secs(5), "live slaves acknowledged after {took:?}");
    let listed = m.api.get("/list_slaves/", &Auth::root()).await.body;
    let pit = listed.as_array().unwrap().iter().find(|s| s["port"] == json!(tarpit_port)).unwrap().clone();
    assert_eq!(pit["healthy"], json!(false), "{pit}");
    assert_eq!(pit["projects"][0]["lag"], json!(1), "{pit}");
}

#[tokio::test]
async fn requests_without_the_cluster_token_are_refused_and_nothing_runs() {
    let m = start_cluster_master().await;
    let slave = SlaveProcess::start(&m.api.base).await;
    let request = json!({
        "slave": format!("127.0.0.1:{}", slave.port), "project": "evil", "path": "evil", "options": ["-a"],
        "generation": 1, "source": {"host": "127.0.0.1", "port": 1, "module": "mirror", "user": "mirror"},
    });
    for auth in [
        Auth::None,
        Auth::Bearer("wrong-token-wrong-token".into()),
        Auth::Bearer(format!("{STANDALONE_TOKEN}x")),
        Auth::root(),
    ] {
        let r = slave.api.post("/sync_from_master/", &request, &auth).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}: {}", r.text);
    }
    // With the token, hostile requests are refused too.
    for (key, value) in [("path", json!("../../etc")), ("options", json!(["-e", "sh"])), ("project", json!("../x"))] {
        let mut bad = request.clone();
        bad[key] = value;
        let r = slave.api.post("/sync_from_master/", &bad, &Auth::Bearer(STANDALONE_TOKEN.into())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{key}: {}", r.text);
    }
    let status = slave.status().await;
    assert_eq!((status["running"].clone(), status["serving"].clone()), (json!({}), json!({})), "{status}");
    assert!(!slave.root().join("evil").exists());
    // The master's report endpoint takes slaves' reports only.
    let report = json!({"slave": "x:1", "project": "p", "generation": 1, "status": "success", "exit_code": 0,
                        "message": "", "stats": {}, "started_at": null, "ended_at": "2026-01-01T00:00:00Z"});
    for auth in [Auth::None, Auth::root(), Auth::Bearer("wrong-token-wrong-token".into())] {
        assert_eq!(m.api.post("/slave_rsync_complete/", &report, &auth).await.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn no_password_or_token_in_argv_logs_or_responses() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 5);
    std::fs::write(upstream.data().join("slow.bin"), vec![9u8; 400 * 1024]).unwrap();
    let m = start_cluster_master().await;
    let mut slave = SlaveProcess::start(&m.api.base).await;
    add_slave(&m.api, &mut slave).await;
    m.api.post("/add_project/", &project("secretive", &upstream, json!(["--bwlimit=200"])), &Auth::root()).await;
    let r = m.api.get("/syncup/?id=secretive", &Auth::root()).await;
    finished_run(&m.api, r.body["run_id"].as_i64().unwrap(), 60).await;
    // While the slave pulls, look at every command line.
    let lines = wait_for(30, "the slave's rsync", || async {
        let lines = all_command_lines();
        lines.iter().any(|l| l.contains("rsync://mirror@127.0.0.1")).then_some(lines)
    })
    .await;
    for secret in [RSYNCD_PASSWORD, STANDALONE_TOKEN, UPSTREAM_PASSWORD] {
        assert!(!lines.iter().any(|l| l.contains(secret)), "a secret in a command line");
    }
    wait_all_at(&m.api, "secretive", 1, 1, 60).await;
    let mut responses = String::new();
    for path in ["/list_slaves/", "/list_projects/", "/projects/secretive/propagation", "/runs/"] {
        responses += &m.api.get(path, &Auth::root()).await.text;
    }
    responses += &slave.status().await.to_string();
    let log = slave.drain_log().join("\n");
    assert!(log.contains("pulled from the master"), "the slave's log is being read: {log}");
    for secret in [RSYNCD_PASSWORD, STANDALONE_TOKEN, UPSTREAM_PASSWORD] {
        assert!(!responses.contains(secret), "a secret in a response");
        assert!(!log.contains(secret), "a secret in the slave's log");
    }
    // The managed daemon's secrets file is readable by its owner only.
    let mode = std::fs::metadata(m.dir.path().join("rsyncd/rsyncd.secrets")).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
}

#[tokio::test]
async fn newer_generations_during_a_pull_queue_exactly_one_follow_up() {
    let upstream = Upstream::start().await;
    let tree = upstream.data().join("follow");
    generate_tree(&tree, 5);
    // 400 KiB at 200 KiB/s: the first pull lasts about two seconds.
    std::fs::write(tree.join("slow.bin"), vec![7u8; 400 * 1024]).unwrap();
    let m = start_cluster_master().await;
    let slave = SlaveProcess::start(&m.api.base).await;
    let token = Auth::Bearer(STANDALONE_TOKEN.into());
    let request = |generation: i64| {
        json!({
            "slave": format!("127.0.0.1:{}", slave.port), "project": "follow", "path": "follow",
            "options": ["-a", "--bwlimit=200"], "generation": generation,
            "source": {"host": "127.0.0.1", "port": upstream.port, "module": "open", "user": null},
        })
    };
    let r = slave.api.post("/sync_from_master/", &request(1), &token).await;
    assert_eq!((r.status, r.body["state"].clone()), (StatusCode::ACCEPTED, json!("started")), "{}", r.text);
    for generation in [2, 3, 2] {
        let r = slave.api.post("/sync_from_master/", &request(generation), &token).await;
        assert_eq!(r.body["state"], json!("queued"), "generation {generation}: {}", r.text);
    }
    let status = slave.status().await;
    assert_eq!((status["running"]["follow"].clone(), status["queued"]["follow"].clone()), (json!(1), json!(3)));
    wait_for(60, "the slave to serve generation 3", || async {
        let s = slave.status().await;
        (s["serving"]["follow"]["generation"] == json!(3) && s["running"] == json!({})).then_some(())
    })
    .await;
    // Generation 1, then only the newest one that came meanwhile: two pulls, not three.
    let log = std::fs::read_to_string(upstream.dir.path().join("rsyncd.log")).unwrap();
    let pulls = log.lines().filter(|l| l.contains("rsync on open/follow")).count();
    assert_eq!(pulls, 2, "{log}");
    assert_eq!(snapshot(&slave.root().join("follow")), snapshot(&tree));
    // A request for what it already serves starts nothing.
    let r = slave.api.post("/sync_from_master/", &request(3), &token).await;
    assert_eq!(r.body["state"], json!("current"), "{}", r.text);
}

#[tokio::test]
async fn a_slave_does_not_pull_through_a_symlink_out_of_its_root() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data().join("linked"), 3);
    let m = start_cluster_master().await;
    let slave = SlaveProcess::start(&m.api.base).await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(slave.root()).unwrap();
    std::os::unix::fs::symlink(outside.path(), slave.root().join("linked")).unwrap();
    let request = json!({
        "slave": format!("127.0.0.1:{}", slave.port), "project": "linked", "path": "linked", "options": ["-a"],
        "generation": 1, "source": {"host": "127.0.0.1", "port": upstream.port, "module": "open", "user": null},
    });
    let r = slave.api.post("/sync_from_master/", &request, &Auth::Bearer(STANDALONE_TOKEN.into())).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let served = wait_for(30, "the slave to give up on the pull", || async {
        let s = slave.status().await;
        (s["running"] == json!({}) && s["serving"]["linked"].is_object()).then(|| s["serving"]["linked"].clone())
    })
    .await;
    assert_eq!((served["last_status"].clone(), served["generation"].clone()), (json!("failed"), json!(0)), "{served}");
    assert!(served["last_message"].as_str().unwrap().contains("not pulled"), "{served}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "the slave wrote outside its root");
}

#[tokio::test]
async fn the_managed_rsync_daemon_is_started_again_when_it_dies() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 10);
    let m = start_cluster_master().await;
    let slaves = start_slaves(&m.api, 1).await;
    m.api.post("/add_project/", &project("phoenix", &upstream, json!([])), &Auth::root()).await;
    let pid_file = m.dir.path().join("rsyncd/rsyncd.pid");
    let read_pid = || std::fs::read_to_string(&pid_file).ok().and_then(|p| p.trim().parse::<i32>().ok());
    let first = read_pid().expect("the managed daemon writes its pid file");
    // An OOM kill, say.
    let killed = std::process::Command::new("kill").args(["-9", &first.to_string()]).status().unwrap();
    assert!(killed.success());
    let port = m.settings.rsyncd.port;
    wait_for(30, "a new managed rsync daemon", || async {
        let new = read_pid().filter(|p| *p != first)?;
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| new)
    })
    .await;
    // Slaves pull from it as before.
    let generation = sync_and_wait(&m, "phoenix").await;
    wait_all_at(&m.api, "phoenix", 1, generation, 30).await;
    assert_eq!(snapshot(&slaves[0].root().join("pub/phoenix")), snapshot(&upstream.data()));
}
