//! Several master nodes on one real PostgreSQL server (the one `scripts/test.sh` starts; these
//! tests need `MIRROR_TEST_POSTGRES`): every node answers for the whole cluster, a change made
//! through one reaches the others within a second, and the leader's death moves the lead within
//! ten seconds without losing or doubling a scheduled fire.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, generate_tree};
use mirror_tests::{Auth, MasterProcess, ROOT_PASSWORD, create_postgres_database, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The test server, or `None` (the test is then skipped, unless the suite requires PostgreSQL).
fn postgres() -> Option<String> {
    match std::env::var("MIRROR_TEST_POSTGRES") {
        Ok(base) => Some(base),
        Err(_) => {
            assert!(
                std::env::var_os("MIRROR_TEST_POSTGRES_REQUIRED").is_none(),
                "MIRROR_TEST_POSTGRES is not set but the PostgreSQL tests are required"
            );
            eprintln!("skipped: MIRROR_TEST_POSTGRES is not set");
            None
        }
    }
}

/// Node `name` of the cluster on `database`, with `root` as its mirror root (shared or its own).
async fn node(dir: &Path, database: &str, name: &str, root: &Path) -> MasterProcess {
    let cwd = dir.join(name);
    std::fs::create_dir_all(&cwd).unwrap();
    MasterProcess::start(
        &cwd,
        &[
            ("MIRROR_MASTER__DATABASE", database),
            ("MIRROR_MASTER__NODE", name),
            ("MIRROR_MASTER__MIRROR_ROOT", root.to_str().unwrap()),
            ("MIRROR_ROOT_PASSWORD", ROOT_PASSWORD),
            ("MIRROR_MASTER__RETRIES", "0"),
        ],
    )
    .await
}

async fn nodes_of(m: &MasterProcess) -> Vec<Value> {
    let r = m.api.get("/nodes", &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body.as_array().unwrap().clone()
}

fn leader_of(nodes: &[Value]) -> Option<String> {
    nodes.iter().find(|n| n["leader"] == json!(true)).map(|n| n["name"].as_str().unwrap().to_owned())
}

fn project(name: &str, port: u16, extra: Value) -> Value {
    let mut p = json!({
        "project": name, "rsync_host": "127.0.0.1", "rsync_port": port, "rsync_module": "data",
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": name,
        "rsync_options": {"basic": ["--no-motd"], "delete": "--delete"},
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

#[tokio::test]
async fn every_node_answers_for_the_cluster_and_sees_a_change_made_through_another_within_a_second() {
    let Some(base) = postgres() else { return };
    let database = create_postgres_database(&base);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mirror");
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push(node(dir.path(), &database, name, &root).await);
    }
    // Every node lists the three, one of them leading, and the same one for all.
    let listed = wait_for(10, "three nodes, one leader, on every node", || async {
        let mut leaders = Vec::new();
        for n in &nodes {
            let list = nodes_of(n).await;
            if list.len() != 3 || list.iter().any(|n| n["alive"] != json!(true)) {
                return None;
            }
            leaders.push(leader_of(&list)?);
        }
        leaders.windows(2).all(|w| w[0] == w[1]).then_some(leaders)
    })
    .await;
    let ctl = std::process::Command::new(mirror_tests::binary("mirrorctl"))
        .args(["--url", &nodes[2].api.base, "--json", "nodes"])
        .env("MIRRORCTL_USER", "root")
        .env("MIRRORCTL_PASSWORD", ROOT_PASSWORD)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(ctl.status.success(), "{}", String::from_utf8_lossy(&ctl.stderr));
    let from_ctl: Vec<Value> = serde_json::from_slice(&ctl.stdout).unwrap();
    assert_eq!(leader_of(&from_ctl), Some(listed[0].clone()));

    // A watcher on C, a change through B: C's listing and C's /events have it within a second.
    let (b, c) = (&nodes[1], &nodes[2]);
    let mut events = c
        .api
        .client
        .get(format!("{}/events", c.api.base))
        .basic_auth("root", Some(ROOT_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let r = b.api.post("/add_project/", &project("fromb", 873, json!({})), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let added = Instant::now();
    let mut seen = String::new();
    while !seen.contains("\"key\":\"fromb\"") {
        let chunk = tokio::time::timeout_at((added + Duration::from_secs(1)).into(), events.chunk())
            .await
            .expect("C's /events did not tell of the change made through B within a second")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    loop {
        let listed = c.api.get("/list_projects/", &Auth::root()).await.body;
        if listed.as_array().unwrap().iter().any(|p| p["id"] == json!("fromb")) {
            break;
        }
        assert!(added.elapsed() < Duration::from_secs(1), "C's listing did not show B's project within a second");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A change of it through C reaches B.
    let r = c.api.post("/disable_project/?id=fromb", &json!({}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_for(1, "B's listing showing the project disabled through C", || async {
        let listed = b.api.get("/list_projects/", &Auth::root()).await.body;
        listed.as_array()?.iter().find(|p| p["id"] == json!("fromb") && p["enabled"] == json!(false)).map(|_| ())
    })
    .await;
}

/// The fire times of a `second: "*/10"` schedule from `first` to `last`.
fn fires_between(first: DateTime<Utc>, last: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut t = first;
    while t <= last {
        out.push(t);
        t += chrono::Duration::seconds(10);
    }
    out
}

fn scheduled_fires(runs: &Value) -> Vec<DateTime<Utc>> {
    let mut fires: Vec<DateTime<Utc>> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["scheduled_for"].as_str())
        .map(|s| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
        .collect();
    fires.sort();
    fires
}

#[tokio::test]
async fn the_leader_killed_during_a_run_hands_over_within_ten_seconds_and_no_fire_is_lost_or_doubled() {
    let Some(base) = postgres() else { return };
    let database = create_postgres_database(&base);
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 5);
    // A file that takes about 40 s to pull at 100 KiB/s: the run the leader dies in.
    let slow: Vec<u8> = (0..40 * 100 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::create_dir_all(upstream.data().join("slow")).unwrap();
    std::fs::write(upstream.data().join("slow/slow.bin"), slow).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One mirror root that every node mounts (as an NFS or CephFS share would be).
    let root = dir.path().join("shared");
    let mut nodes: Vec<(String, MasterProcess)> = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push((name.to_owned(), node(dir.path(), &database, name, &root).await));
    }
    let api = nodes[0].1.api.clone();
    let tick = project(
        "tick",
        upstream.port,
        json!({"cron_options": {"second": "*/10"}, "rsync_options": {"basic": ["--no-motd", "--exclude=slow/"], "delete": "--delete"}}),
    );
    let r = api.post("/add_project/", &tick, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let slow = project("slow", upstream.port, json!({"rsync_options": {"basic": ["--no-motd", "--bwlimit=100"]}}));
    assert_eq!(api.post("/add_project/", &slow, &Auth::root()).await.status, StatusCode::CREATED);

    let mut handovers = Vec::new();
    for round in 0..3 {
        let survivor = nodes[0].1.api.clone();
        let leader = wait_for(10, "a leader", || async { leader_of(&nodes_of_api(&survivor).await) }).await;
        // A fire of `tick` has just happened: the kill comes six seconds after it, so the next
        // fire falls in the handover (the dead leader gone, its lease not yet expired).
        let fired = wait_for(15, "a scheduled run of tick", || async {
            let runs = survivor.get("/runs/?project=tick&limit=5", &Auth::root()).await.body;
            scheduled_fires(&runs).last().copied().filter(|t| Utc::now() - *t < chrono::Duration::seconds(3))
        })
        .await;
        // The slow run, going on the leader when it dies (asked through any node: passed on).
        let r = survivor.post("/syncup/?id=slow", &json!({}), &Auth::root()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "round {round}: {}", r.text);
        let slow_run = r.body["run_id"].as_i64().unwrap();
        wait_for(10, "the slow run running", || async {
            let run = survivor.get(&format!("/runs/{slow_run}"), &Auth::root()).await.body;
            (run["status"] == json!("running")).then_some(())
        })
        .await;
        let kill_at = fired + chrono::Duration::seconds(6);
        if let Ok(wait) = (kill_at - Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
        let i = nodes.iter().position(|(n, _)| *n == leader).unwrap();
        let (name, dead) = nodes.remove(i);
        let killed = Instant::now();
        // SIGKILL (kill -9): no goodbye, no resignation.
        dead.kill().await;
        let others = nodes[0].1.api.clone();
        let new_leader =
            wait_for(12, "a new leader", || async { leader_of(&nodes_of_api(&others).await).filter(|l| *l != name) })
                .await;
        handovers.push(killed.elapsed());
        assert!(killed.elapsed() < Duration::from_secs(10), "round {round}: no new leader within 10 s");
        assert_ne!(new_leader, name);
        wait_for(20, "the dead leader's run marked interrupted", || async {
            let run = others.get(&format!("/runs/{slow_run}"), &Auth::root()).await.body;
            (run["status"] == json!("interrupted")).then_some(())
        })
        .await;
        // The dead node comes back, as a follower.
        nodes.push((name.clone(), node(dir.path(), &database, &name, &root).await));
    }
    // Two more fires after the last handover, then every fire from the first on has exactly one run.
    let api = nodes[0].1.api.clone();
    let end = Utc::now() + chrono::Duration::seconds(20);
    let runs = wait_for(40, "fires after the last handover", || async {
        let runs = api.get("/runs/?project=tick&limit=100", &Auth::root()).await.body;
        scheduled_fires(&runs).last().is_some_and(|t| *t >= end).then_some(runs)
    })
    .await;
    let fires = scheduled_fires(&runs);
    let expected = fires_between(fires[0], *fires.last().unwrap());
    eprintln!("handovers (kill to a new leader seen): {handovers:?}");
    assert_eq!(fires, expected, "each fire once, none missing (handovers took {handovers:?})");
    let statuses: Vec<&Value> = runs.as_array().unwrap().iter().map(|r| &r["status"]).collect();
    assert!(statuses.iter().all(|s| *s == "success" || *s == "running" || *s == "queued"), "{statuses:?}");
}

async fn nodes_of_api(api: &mirror_tests::Api) -> Vec<Value> {
    let r = api.get("/nodes", &Auth::root()).await;
    if r.status != StatusCode::OK {
        return Vec::new();
    }
    r.body.as_array().cloned().unwrap_or_default()
}

/// What an operator sees of a master, for comparing before and after a move.
async fn views(api: &mirror_tests::Api) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for path in [
        "/list_projects/",
        "/projects/fedora",
        "/projects/fedora/history",
        "/projects/fedora/versions/2",
        "/projects/fedora/propagation",
        "/runs/?limit=100",
        "/list_slaves/",
        "/list_users/",
        "/users/alice/history",
        "/alerts",
        "/export",
    ] {
        let r = api.get(path, &Auth::root()).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        let mut body = r.body;
        // Health is a matter of the moment (the slave calls the new master as soon as it is up).
        if let Some(slaves) = body.as_array_mut().filter(|_| path == "/list_slaves/") {
            for s in slaves {
                s.as_object_mut().unwrap().remove("healthy");
                s.as_object_mut().unwrap().remove("last_seen");
            }
        }
        out.push((path.to_owned(), body));
    }
    out
}

#[tokio::test]
async fn a_sqlite_master_moves_to_postgresql_with_every_view_and_every_slave_token_kept() {
    use mirror_tests::cluster::{SlaveProcess, add_slave, cluster_settings};
    let Some(base) = postgres() else { return };
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 10);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cluster_settings(dir.path());
    let sqlite = dir.path().join("master.db");
    settings.database = sqlite.clone();
    let m = mirror_tests::TestMaster::start_with(tempfile::tempdir().unwrap(), settings.clone()).await;
    let address = m.api.base.trim_start_matches("http://").to_owned();
    let mut slave = SlaveProcess::start(&m.api.base).await;
    add_slave(&m.api, &mut slave).await;
    let fedora = json!({
        "project": "fedora", "rsync_host": "127.0.0.1", "rsync_port": upstream.port, "rsync_module": "data",
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": "pub/fedora",
        "rsync_options": {"basic": [], "delete": "--delete"},
    });
    assert_eq!(m.api.post("/add_project/", &fedora, &Auth::root()).await.status, StatusCode::CREATED);
    let r = m
        .api
        .post(
            "/update_project/basic/",
            &json!({"id": "fedora", "timeout_secs": 600, "comment": "second version"}),
            &Auth::root(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = m.api.post("/update_api_user/", &json!({"username": "alice", "role": "root"}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(mirror_tests::cluster::sync_and_wait(&m, "fedora").await, 1);
    wait_for(30, "the slave serving generation 1", || async {
        (slave.status().await["serving"]["fedora"]["generation"] == json!(1)).then_some(())
    })
    .await;
    let before = views(&m.api).await;
    m.stop().await;

    // The move, with the binary an operator runs; the password is not in the URL.
    let database = create_postgres_database(&base);
    let migrate = |to: &str| {
        std::process::Command::new(mirror_tests::binary("mirror-master"))
            .args(["migrate", "--from", sqlite.to_str().unwrap(), "--to", to])
            .env_clear()
            .env("MIRROR_MASTER__DATABASE", "unused.db")
            .output()
            .unwrap()
    };
    let moved = migrate(&database);
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    let said = String::from_utf8_lossy(&moved.stderr).into_owned();
    assert!(said.contains("runs: 1 rows") && said.contains("slaves: 1 rows"), "{said}");
    // A second move into the same database is refused, and changes nothing.
    let again = migrate(&database);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&again.stderr));

    // The same master on PostgreSQL, at the same address: the same views, the slave's old token.
    let mut on_postgres = settings.clone();
    on_postgres.database = database.into();
    on_postgres.listen = address;
    let m = mirror_tests::TestMaster::start_with(tempfile::tempdir().unwrap(), on_postgres).await;
    let after = views(&m.api).await;
    for ((path, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(a, b, "{path} differs after the move");
    }
    std::fs::write(upstream.data().join("after-the-move.txt"), b"generation two").unwrap();
    assert_eq!(mirror_tests::cluster::sync_and_wait(&m, "fedora").await, 2);
    wait_for(30, "the slave, with its old token, serving generation 2", || async {
        (slave.status().await["serving"]["fedora"]["generation"] == json!(2)).then_some(())
    })
    .await;
    let listed = m.api.get("/list_slaves/", &Auth::root()).await.body;
    assert_eq!(listed[0]["projects"][0]["generation"], json!(2), "{listed}");
}

/// Nodes `a` and `b` on `database`, each with a mirror root (and an rsync daemon) of its own.
async fn two_nodes(database: &str) -> Vec<mirror_tests::TestMaster> {
    let mut masters = Vec::new();
    for name in ["a", "b"] {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = mirror_tests::cluster::cluster_settings(dir.path());
        settings.database = database.to_owned().into();
        settings.node = Some(mirror_common::api::Name::parse(name).unwrap());
        masters.push(mirror_tests::TestMaster::start_with(dir, settings).await);
    }
    masters
}

#[tokio::test]
async fn the_console_of_one_node_syncs_follows_and_stops_a_project_that_another_node_runs() {
    use mirror_tests::console::{csrf_of, get_with, post_with, session_cookie};
    let Some(base) = postgres() else { return };
    let database = create_postgres_database(&base);
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 8);
    let masters = two_nodes(&database).await;
    let (a, b) = (&masters[0], &masters[1]);
    let mut p = project("pb", upstream.port, json!({"node": "b"}));
    p["rsync_options"]["basic"] = json!(["--no-motd", "--bwlimit=100"]);
    // Added through B, which holds it (a relative dest is taken under that node's mirror root).
    let r = b.api.post("/add_project/", &p, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // A console session opened on A (sessions are in the shared database).
    let cookie = session_cookie(&a.api.base, "root", ROOT_PASSWORD).await;
    let csrf = csrf_of(&a.api.base, &cookie).await;
    let form = [("csrf", csrf.as_str())];
    let same = [("sec-fetch-site", "same-origin")];
    let newest = || async {
        let r = a.api.get("/runs/?project=pb&limit=1", &Auth::root()).await;
        r.body.as_array().unwrap().first().cloned()
    };
    // A cross-site form is refused by A itself, never passed on: no run.
    let cross = [("sec-fetch-site", "cross-site")];
    let status = post_with(&a.api.base, &cookie, "/ui/projects/pb/sync", &form, &cross).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(newest().await, None, "the cross-site form started nothing");
    // Sync now through A's console: B runs it (the tree lands under B's root only).
    assert_eq!(post_with(&a.api.base, &cookie, "/ui/projects/pb/sync", &form, &same).await, StatusCode::SEE_OTHER);
    let id = newest().await.expect("a run")["id"].as_i64().unwrap();
    let run = mirror_tests::finished_run(&a.api, id, 60).await;
    assert_eq!(run["status"], json!("success"), "{run}");
    assert!(b.mirror_root().join("pb").is_dir() && !a.mirror_root().join("pb").exists());
    // Its output through A's console is B's log file, as B's console gives it.
    let (status, through_a) = get_with(&a.api.base, &cookie, &format!("/ui/runs/{id}/log")).await;
    assert_eq!(status, StatusCode::OK, "{through_a}");
    let (_, on_b) = get_with(&b.api.base, &cookie, &format!("/ui/runs/{id}/log")).await;
    assert!(!through_a.is_empty() && through_a == on_b, "{through_a:?} / {on_b:?}");
    // A slow run (600 KiB at 100 KiB/s), followed and stopped through A's console.
    std::fs::write(upstream.data().join("slow.bin"), vec![7u8; 600 * 1024]).unwrap();
    assert_eq!(post_with(&a.api.base, &cookie, "/ui/projects/pb/sync", &form, &same).await, StatusCode::SEE_OTHER);
    let id = wait_for(30, "the slow run to start", || async {
        newest().await.filter(|r| r["status"] == json!("running")).map(|r| r["id"].as_i64().unwrap())
    })
    .await;
    let (base_a, follower_cookie) = (a.api.base.clone(), cookie.clone());
    let follower =
        tokio::spawn(
            async move { get_with(&base_a, &follower_cookie, &format!("/ui/runs/{id}/log?follow=true")).await },
        );
    assert_eq!(post_with(&a.api.base, &cookie, "/ui/projects/pb/stop", &form, &same).await, StatusCode::SEE_OTHER);
    let run = mirror_tests::finished_run(&a.api, id, 30).await;
    assert_eq!(run["status"], json!("stopped"), "{run}");
    let (status, _) = tokio::time::timeout(Duration::from_secs(30), follower).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK, "the followed output ends with the run");
}

#[tokio::test]
async fn projects_on_two_nodes_with_their_own_storage_reach_the_slaves_from_the_node_that_holds_each() {
    use mirror_tests::cluster::{SlaveProcess, add_slave, served_generations};
    let Some(base) = postgres() else { return };
    let database = create_postgres_database(&base);
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 8);
    let masters = two_nodes(&database).await;
    let (a, b) = (&masters[0], &masters[1]);
    let mut slave = SlaveProcess::start(&a.api.base).await;
    add_slave(&a.api, &mut slave).await;
    // Each added through the node that holds it: a relative dest is taken under that node's
    // mirror root (here each node's root is a directory of its own).
    for (id, on, through) in [("pa", "a", a), ("pb", "b", b)] {
        let mut p = project(id, upstream.port, json!({"node": on}));
        p["dest"] = json!(format!("pub/{id}"));
        let r = through.api.post("/add_project/", &p, &Auth::root()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    // Each node lists what it runs.
    let nodes = nodes_of_api(&b.api).await;
    let runs_of = |n: &str| nodes.iter().find(|v| v["name"] == json!(n)).map(|v| v["projects"].clone());
    assert_eq!((runs_of("a"), runs_of("b")), (Some(json!(["pa"])), Some(json!(["pb"]))), "{nodes:?}");
    // Both asked through A: pb's run is passed on to B, which holds it.
    for id in ["pa", "pb"] {
        let r = a.api.post(&format!("/syncup/?id={id}"), &json!({}), &Auth::root()).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        let run = mirror_tests::finished_run(&a.api, r.body["run_id"].as_i64().unwrap(), 60).await;
        assert_eq!(run["status"], json!("success"), "{run}");
    }
    for id in ["pa", "pb"] {
        wait_for(30, &format!("the slave serving {id}"), || async {
            (served_generations(&a.api, id).await == vec![(format!("127.0.0.1:{}", slave.port), 1)]).then_some(())
        })
        .await;
        let served = mirror_tests::rsyncd::snapshot(&slave.root().join(format!("pub/{id}")));
        assert_eq!(served, mirror_tests::rsyncd::snapshot(&upstream.data()), "{id} on the slave");
    }
    // Each tree is only on the node that holds it: the slave got pb from B's daemon.
    assert!(a.mirror_root().join("pub/pa").is_dir() && !a.mirror_root().join("pub/pb").exists());
    assert!(b.mirror_root().join("pub/pb").is_dir() && !b.mirror_root().join("pub/pa").exists());
}

#[tokio::test]
async fn a_node_cut_off_from_the_database_stops_its_rsync_before_another_node_takes_the_tree() {
    use mirror_tests::rsyncd::{all_command_lines, snapshot};
    let Some(base) = postgres() else { return };
    let database = create_postgres_database(&base);
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 5);
    // About 6 s to pull at 100 KiB/s.
    let slow: Vec<u8> = (0..6 * 100 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(upstream.data().join("slow.bin"), slow).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shared");
    // Node a reaches PostgreSQL through a path that can go silent; b and c directly. a starts
    // first and leads.
    let server: reqwest::Url = base.parse().unwrap();
    let target = format!("{}:{}", server.host_str().unwrap(), server.port().unwrap()).parse().unwrap();
    let proxy = mirror_tests::FreezableProxy::start(target).await;
    let through_proxy = database.replace(&format!(":{}/", server.port().unwrap()), &format!(":{}/", proxy.port));
    let a = node(dir.path(), &through_proxy, "a", &root).await;
    wait_for(10, "a leading", || async { (leader_of(&nodes_of(&a).await).as_deref() == Some("a")).then_some(()) })
        .await;
    let b = node(dir.path(), &database, "b", &root).await;
    let c = node(dir.path(), &database, "c", &root).await;
    let slow = project(
        "slow",
        upstream.port,
        json!({"rsync_options": {"basic": ["--no-motd", "--bwlimit=100"], "delete": "--delete"}}),
    );
    assert_eq!(b.api.post("/add_project/", &slow, &Auth::root()).await.status, StatusCode::CREATED);
    let r = b.api.post("/syncup/?id=slow", &json!({}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let dest = root.join("slow");
    let dest = dest.to_str().unwrap().to_owned();
    let rsync_going = || all_command_lines().iter().any(|c| c.contains("--bwlimit=100") && c.contains(&dest));
    wait_for(10, "a's rsync going", || async { rsync_going().then_some(()) }).await;

    // a's path to the database goes silent (its connections stay open).
    proxy.freeze(true);
    let cut = Instant::now();
    let (mut stopped, mut taken) = (None, None);
    while stopped.is_none() || taken.is_none() {
        assert!(cut.elapsed() < Duration::from_secs(20), "stopped {stopped:?}, new leader {taken:?}");
        if stopped.is_none() && !rsync_going() {
            stopped = Some(cut.elapsed());
        }
        if taken.is_none() && leader_of(&nodes_of(&b).await).is_some_and(|l| l != "a") {
            taken = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("cut off: a's rsync gone after {stopped:?}, another node leading after {taken:?}");
    assert!(stopped < taken, "a's rsync went on after another node took the lead: {stopped:?} vs {taken:?}");

    // The new leader runs the project again once a is declared dead; the tree ends as upstream.
    let run = wait_for(30, "a run of slow on the new leader", || async {
        let r = c.api.post("/syncup/?id=slow", &json!({}), &Auth::root()).await;
        (r.status == StatusCode::ACCEPTED && r.body["follow_up_of"].is_null())
            .then(|| r.body["run_id"].as_i64().unwrap())
    })
    .await;
    let done = mirror_tests::finished_run(&c.api, run, 60).await;
    assert_eq!(done["status"], json!("success"), "{done}");
    assert_eq!(snapshot(Path::new(&dest)), snapshot(&upstream.data()));
    proxy.freeze(false);
    drop(a);
}

#[tokio::test]
async fn a_postgresql_restart_under_a_hundred_writing_clients_loses_no_acknowledged_write_and_gives_only_503s() {
    if postgres().is_none() {
        return;
    }
    // A server of this test's own: it is restarted.
    let server = std::sync::Arc::new(mirror_tests::pg::PostgresServer::start());
    let database = create_postgres_database(&server.base());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shared");
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        nodes.push(node(dir.path(), &database, name, &root).await);
    }
    let apis: Vec<mirror_tests::Api> = nodes.iter().map(|n| n.api.clone()).collect();
    let token = apis[0].token(&Auth::root()).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..100 {
        let (api, token, stop) = (apis[client % 3].clone(), token.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let (mut acknowledged, mut refused, mut i) = (Vec::new(), 0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let id = format!("c{client}-{i}");
                let body = json!({"project": id, "rsync_host": "rsync.example.org", "rsync_module": "m", "dest": id});
                let r = api.post("/add_project/", &body, &Auth::Bearer(token.clone())).await;
                match r.status.as_u16() {
                    201 => acknowledged.push(id),
                    503 => {
                        assert!(r.text.contains("\"success\":false"), "{}", r.text);
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => panic!("client {client}: {other} {}", r.text),
                }
                i += 1;
            }
            (acknowledged, refused)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarting = Instant::now();
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.restart()).await.unwrap();
    eprintln!("PostgreSQL restarted in {:?}", restarting.elapsed());
    // Writes go on after the restart until every node has written again.
    let after = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut acknowledged, mut refused) = (Vec::new(), 0);
    for c in clients {
        let (ack, re) = c.await.unwrap();
        acknowledged.extend(ack);
        refused += re;
    }
    eprintln!(
        "{} writes acknowledged, {refused} answered 503, {:?} of writing after the restart",
        acknowledged.len(),
        after.elapsed()
    );
    // Every acknowledged write is in the database, and every node's listing comes to show it
    // (the events held while PostgreSQL was away are stored once it is back, and followed).
    for api in &apis {
        let mut missing: Vec<String> = Vec::new();
        let converged = Instant::now();
        loop {
            let r = api.get("/list_projects/", &Auth::Bearer(token.clone())).await;
            if r.status == StatusCode::OK {
                let ids: std::collections::HashSet<&str> =
                    r.body.as_array().unwrap().iter().filter_map(|p| p["id"].as_str()).collect();
                missing = acknowledged.iter().filter(|id| !ids.contains(id.as_str())).cloned().collect();
                if missing.is_empty() {
                    break;
                }
            }
            assert!(
                converged.elapsed() < Duration::from_secs(15),
                "{} acknowledged writes missing on {}: {:?}",
                missing.len(),
                api.base,
                &missing[..missing.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("{} shows every acknowledged write {:?} after the writing stopped", api.base, converged.elapsed());
    }
    drop(nodes);
    drop(server);
}
