//! The attacks a `user` account (or an upstream it points at, or anyone on the network) can try,
//! each against real parts: a real upstream rsync daemon holding planted symlinks, device nodes
//! and set-uid files, the master with a SQLite file, and real `mirror-slave` processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use mirror_tests::cluster::{SlaveProcess, add_slave, cluster_settings};
use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, free_port, generate_tree};
use mirror_tests::{Api, Auth, TestMaster, finished_run, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A project over `data/<path>` of the upstream, into `<mirror root>/<name>`.
fn project(name: &str, upstream: &Upstream, path: &str, basic: Value) -> Value {
    json!({
        "project": name,
        "rsync_host": "127.0.0.1",
        "rsync_port": upstream.port,
        "rsync_module": format!("data/{path}"),
        "rsync_user": UPSTREAM_USER,
        "rsync_password": UPSTREAM_PASSWORD,
        "dest": name,
        "rsync_options": {"basic": basic},
    })
}

async fn add(api: &Api, body: &Value) {
    let r = api.post("/add_project/", body, &Auth::user()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

/// Runs the project now and returns the ended run (with its output, as a logged-in user reads it).
async fn run(api: &Api, id: &str) -> Value {
    let r = api.get(&format!("/syncup/?id={id}"), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    finished_run(api, r.body["run_id"].as_i64().unwrap(), 60).await
}

fn symlink(target: &Path, link: &Path) {
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Where an upstream's symlink leads a path option's writes: a directory outside the mirror, or
/// another project's tree. Each case runs twice, with a changed file in between, so that the
/// second run backs up, stages or delays through the symlink the first one brought.
const WRITE_CASES: [(&str, &[&str], &str); 4] = [
    ("backup", &["--backup", "--backup-dir=bk"], "bk"),
    ("temp", &["--temp-dir=tmpd"], "tmpd"),
    ("partial", &["--delay-updates", "--partial-dir=pd"], "pd"),
    ("neighbour", &["--backup", "--backup-dir=bk"], "bk"),
];

#[tokio::test]
async fn planted_symlinks_do_not_carry_a_runs_writes_outside_its_project() {
    let upstream = Upstream::start().await;
    let outside = tempfile::tempdir().unwrap();
    let m = TestMaster::start().await;
    add(&m.api, &project("victim", &upstream, "victim", json!([]))).await;
    std::fs::create_dir_all(upstream.data().join("victim")).unwrap();
    std::fs::write(upstream.data().join("victim/keep.txt"), "the neighbour's file\n").unwrap();
    assert_eq!(run(&m.api, "victim").await["status"], json!("success"));
    let victim = m.mirror_root().join("victim");
    for (case, options, link) in WRITE_CASES {
        let tree = upstream.data().join(case);
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("f.txt"), "first version\n").unwrap();
        let target = if case == "neighbour" { victim.clone() } else { outside.path().join(case) };
        std::fs::create_dir_all(&target).unwrap();
        symlink(&target, &tree.join(link));
        add(&m.api, &project(case, &upstream, case, json!(options))).await;
        run(&m.api, case).await;
        std::fs::write(tree.join("f.txt"), "second, longer version of the file\n").unwrap();
        let second = run(&m.api, case).await;
        eprintln!("DEBUG {case}: {second} {:?}", entries(&m.mirror_root().join(case)));
        if case == "neighbour" {
            assert_eq!(entries(&victim), vec!["keep.txt"], "{case}: another project's tree was written: {second}");
        } else {
            assert_eq!(entries(&target), Vec::<String>::new(), "{case}: rsync wrote outside the mirror: {second}");
        }
    }
    // Named directly, another project's tree is refused at once.
    let abs = format!("--backup-dir={}", victim.join("x").display());
    let r = m
        .api
        .post("/add_project/", &project("direct", &upstream, "backup", json!(["--backup", abs])), &Auth::user())
        .await;
    assert_eq!(
        (r.status, r.body["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("rsync_options.basic[1]")),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn planted_symlinks_do_not_let_a_run_read_outside_its_project() {
    let upstream = Upstream::start().await;
    let private = tempfile::tempdir().unwrap();
    // A secret of the master's, and an upstream file of the same name and size.
    std::fs::write(private.path().join("secret.txt"), "PRIVATE-0123456789\n").unwrap();
    std::fs::set_permissions(private.path().join("secret.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let m = TestMaster::start().await;
    for (case, option) in [("copy", "--copy-dest=bd"), ("link", "--link-dest=bd"), ("compare", "--compare-dest=bd")] {
        let tree = upstream.data().join(case);
        symlink(private.path(), &tree.join("bd"));
        add(&m.api, &project(case, &upstream, case, json!(["--size-only", option]))).await;
        run(&m.api, case).await;
        std::fs::write(tree.join("secret.txt"), "UPSTREAM-abcdefghi\n").unwrap();
        let second = run(&m.api, case).await;
        let got = std::fs::read_to_string(m.mirror_root().join(case).join("secret.txt")).unwrap_or_default();
        assert_eq!(got, "UPSTREAM-abcdefghi\n", "{case}: the mirror holds what the master may not read: {second}");
    }
    // A per-directory merge file that is a symlink to a private file of the master's: its lines
    // would come back in rsync's error messages. The link is relative, so that on the upstream it
    // leads nowhere (the upstream, on this same machine, must not be the one to read the file).
    let secret_dir = m.dir.path().join("private");
    std::fs::create_dir_all(&secret_dir).unwrap();
    std::fs::write(secret_dir.join("rules"), "TOPSECRET-rule-line\n").unwrap();
    let tree = upstream.data().join("merge");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a.txt"), "a\n").unwrap();
    for sub in ["", "sub/"] {
        symlink(
            Path::new(&format!("{}../../private/rules", if sub.is_empty() { "" } else { "../" })),
            &tree.join(format!("{sub}.rsync-filter")),
        );
    }
    std::fs::write(tree.join("sub/b.txt"), "b\n").unwrap();
    let mut body = project("merge", &upstream, "merge", json!(["-F"]));
    body["rsync_options"]["delete"] = json!("--delete");
    add(&m.api, &body).await;
    for _ in 0..2 {
        let r = run(&m.api, "merge").await;
        assert!(!r.to_string().contains("TOPSECRET"), "a private file's content in the run's output: {r}");
    }
    let logs = m.dir.path().join("logs/merge");
    for log in entries(&logs) {
        let text = std::fs::read_to_string(logs.join(&log)).unwrap();
        assert!(!text.contains("TOPSECRET"), "a private file's content in {log}");
    }
}

/// A sync request for a standalone slave, pulling `open/<path>` of the upstream.
fn pull_request(slave: &SlaveProcess, upstream: &Upstream, path: &str, options: &[&str], generation: i64) -> Value {
    json!({
        "slave": format!("127.0.0.1:{}", slave.port), "project": path, "path": path,
        "options": options, "generation": generation,
        "source": {"host": "127.0.0.1", "port": upstream.port, "module": "open", "user": null},
    })
}

async fn pull(slave: &SlaveProcess, request: &Value) {
    let r = slave.api.post("/sync_from_master/", request, &slave.auth()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let (project, generation) = (request["project"].as_str().unwrap(), request["generation"].clone());
    wait_for(60, "the slave's pull to end", || async {
        let s = slave.status().await;
        let done = s["running"].get(project).is_none()
            && s["serving"].get(project).is_some_and(|p| p["last_status"] != json!(""));
        (done
            && (s["serving"][project]["generation"] == generation
                || s["serving"][project]["last_status"] == json!("failed")))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_slave_pull_neither_writes_nor_reads_outside_its_project() {
    let upstream = Upstream::start().await;
    let outside = tempfile::tempdir().unwrap();
    let private = tempfile::tempdir().unwrap();
    std::fs::write(private.path().join("secret.txt"), "PRIVATE-0123456789\n").unwrap();
    let slave = SlaveProcess::start("http://127.0.0.1:9").await;
    assert_eq!(slave.status().await["confined"], json!(true));
    // Writes: the path options, through symlinks the pulled tree brings, out of the slave's root.
    for (case, options, link) in WRITE_CASES.iter().filter(|(case, ..)| *case != "neighbour") {
        let name = format!("s{case}");
        let tree = upstream.data().join(&name);
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("f.txt"), "first version\n").unwrap();
        let target = outside.path().join(case);
        std::fs::create_dir_all(&target).unwrap();
        symlink(&target, &tree.join(link));
        let options: Vec<&str> = ["-a"].iter().chain(options.iter()).copied().collect();
        pull(&slave, &pull_request(&slave, &upstream, &name, &options, 1)).await;
        std::fs::write(tree.join("f.txt"), "second, longer version of the file\n").unwrap();
        pull(&slave, &pull_request(&slave, &upstream, &name, &options, 2)).await;
        assert_eq!(entries(&target), Vec::<String>::new(), "{case}: the slave wrote outside its root");
    }
    // Reads: the basis-directory options through a symlink to a private directory.
    for (case, option) in [("copy", "--copy-dest=bd"), ("link", "--link-dest=bd"), ("compare", "--compare-dest=bd")] {
        let name = format!("s{case}");
        let tree = upstream.data().join(&name);
        symlink(private.path(), &tree.join("bd"));
        let options = ["-a", "--size-only", option];
        pull(&slave, &pull_request(&slave, &upstream, &name, &options, 1)).await;
        std::fs::write(tree.join("secret.txt"), "UPSTREAM-abcdefghi\n").unwrap();
        pull(&slave, &pull_request(&slave, &upstream, &name, &options, 2)).await;
        let got = std::fs::read_to_string(slave.root().join(&name).join("secret.txt")).unwrap_or_default();
        assert_eq!(got, "UPSTREAM-abcdefghi\n", "{case}: the slave's copy holds what it may not read");
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[tokio::test]
async fn device_nodes_and_set_uid_bits_never_reach_a_mirror() {
    let upstream = Upstream::start().await;
    let tree = upstream.data().join("nodes");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("plain.txt"), "plain\n").unwrap();
    std::fs::write(tree.join("suid"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(tree.join("suid"), std::fs::Permissions::from_mode(0o6755)).unwrap();
    // A block device node (as the master and the slaves run as root here, they could make one).
    if is_root() {
        let made = std::process::Command::new("mknod").arg(tree.join("disk")).args(["b", "7", "0"]).status().unwrap();
        assert!(made.success());
    }
    let m = TestMaster::start().await;
    let mut body = project("nodes", &upstream, "nodes", json!([]));
    body["rsync_options"]["defaults"] = json!(["-avH"]);
    add(&m.api, &body).await;
    let r = run(&m.api, "nodes").await;
    assert_eq!(r["status"], json!("success"), "{r}");
    let mirror = m.mirror_root().join("nodes");
    assert_eq!(entries(&mirror), vec!["plain.txt", "suid"], "no device node in the mirror");
    let mode = std::fs::metadata(mirror.join("suid")).unwrap().permissions().mode();
    assert_eq!(mode & 0o6000, 0, "set-uid/set-gid bits reached the mirror: {mode:o}");
    // The same on a slave, with the options a master would send.
    let slave = SlaveProcess::start("http://127.0.0.1:9").await;
    pull(&slave, &pull_request(&slave, &upstream, "nodes", &["-avH"], 1)).await;
    assert_eq!(entries(&slave.root().join("nodes")), vec!["plain.txt", "suid"]);
    let mode = std::fs::metadata(slave.root().join("nodes/suid")).unwrap().permissions().mode();
    assert_eq!(mode & 0o6000, 0, "set-uid/set-gid bits reached the slave: {mode:o}");
    // The options that would map owners or need super-user powers are refused.
    for bad in [
        "--super",
        "--devices",
        "--specials",
        "-D",
        "-avD",
        "--chown=root:root",
        "--usermap=*:root",
        "--groupmap=*:0",
        "--chmod=u+s",
        "--chmod=4755",
        "--copy-devices",
    ] {
        let r = m.api.post("/add_project/", &project("bad", &upstream, "nodes", json!([bad])), &Auth::user()).await;
        assert_eq!(
            (r.status, r.body["field"].clone()),
            (StatusCode::BAD_REQUEST, json!("rsync_options.basic[0]")),
            "{bad}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn no_request_field_becomes_an_option() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data().join("inj"), 2);
    let m = TestMaster::start().await;
    for (field, value) in [("rsync_user", "-e"), ("rsync_host", "-e"), ("rsync_module", "-x"), ("id", "-e")] {
        let mut body = project("inj", &upstream, "inj", json!([]));
        body[field] = json!(value);
        let r = m.api.post("/add_project/", &body, &Auth::user()).await;
        assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!(field)), "{field}: {}", r.text);
    }
    // A name that starts with '-' and a password, no user: the derived user is the id, and the
    // run really asks the upstream (which refuses that user) instead of "succeeding" unseen.
    let mut body = project("-e", &upstream, "inj", json!([]));
    body["id"] = json!("injected");
    body.as_object_mut().unwrap().remove("rsync_user");
    add(&m.api, &body).await;
    let r = run(&m.api, "injected").await;
    assert_eq!(r["status"], json!("failed"), "{r}");
    assert!(r["message"].as_str().unwrap().contains("auth failed"), "{r}");
    let listed = m.api.get("/projects/injected/propagation", &Auth::user()).await.body;
    assert_eq!(listed["generation"], json!(0));
}

#[tokio::test]
async fn hostile_schedules_are_refused_cheaply() {
    let m = TestMaster::start().await;
    let long: Vec<String> = (0..4000).map(|i| (i % 53 + 1).to_string()).collect();
    let many: Vec<String> = (0..65).map(|i| (i % 59).to_string()).collect();
    for (field, value) in [("week", long.join(",")), ("second", many.join(",")), ("minute", "1".repeat(300))] {
        let body = json!({"project": "sched", "rsync_host": "h.example", "rsync_module": "m", "dest": "sched",
                          "cron_options": {field: value}});
        let r = m.api.post("/add_project/", &body, &Auth::user()).await;
        let want = format!("cron_options.{field}");
        assert_eq!((r.status, r.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some(want.as_str())), "{}", r.text);
    }
    // Never fires: refused (the search for a next fire is bounded).
    let body = json!({"project": "never", "rsync_host": "h.example", "rsync_module": "m", "dest": "never",
                      "cron_options": {"month": "2", "day": "30"}});
    let r = m.api.post("/add_project/", &body, &Auth::user()).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!("cron_options")), "{}", r.text);
}

#[tokio::test]
async fn half_sent_requests_neither_hold_the_server_nor_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    settings.max_connections = 16;
    settings.header_read_timeout_secs = 2;
    settings.idle_timeout_secs = 3;
    let m = TestMaster::start_with(dir, settings).await;
    let addr = m.api.base.trim_start_matches("http://").to_owned();
    // Many more half-sent requests than the cap, as a slowloris client sends them.
    let mut idle = Vec::new();
    for _ in 0..40 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /list_projects/ HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        idle.push(s);
    }
    // A normal client is answered at once: the longest-waiting half-sent connection makes room.
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    for _ in 0..3 {
        let r = client.get(format!("{}/list_projects/", m.api.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Every half-sent connection is closed: evicted, or when its header did not come in time.
    let started = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        idle.into_iter()
            .filter(|mut s| {
                let mut buf = [0u8; 512];
                // EOF, a reset, or the 408 hyper sends before closing: all mean closed by the server.
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => true,
                    Ok(_) => s.read(&mut buf).map_or(true, |n| n == 0),
                }
            })
            .count()
    })
    .await
    .unwrap();
    assert_eq!(closed, 40);
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_slave_reports_only_for_itself_and_only_generations_that_were() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data().join("rep"), 2);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cluster_settings(dir.path());
    settings.rsyncd.manage = false;
    let m = TestMaster::start_with(dir, settings).await;
    let mut tokens = Vec::new();
    let ports = [free_port(), free_port()];
    for port in ports {
        let r = m.api.post("/add_slave/", &json!({"hostname": "127.0.0.1", "port": port}), &Auth::root()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        tokens.push(r.body["token"].as_str().unwrap().to_owned());
    }
    // The token is shown once: listed slaves only say that they have one.
    let listed = m.api.get("/list_slaves/", &Auth::root()).await;
    assert!(!listed.text.contains(&tokens[0]) && listed.body[0]["token_issued"] == json!(true), "{}", listed.text);
    add(&m.api, &project("rep", &upstream, "rep", json!([]))).await;
    assert_eq!(run(&m.api, "rep").await["status"], json!("success"));
    let report = |port: u16, generation: i64| {
        json!({"slave": format!("127.0.0.1:{port}"), "project": "rep", "generation": generation, "status": "success",
               "exit_code": 0, "message": "", "stats": {}, "started_at": null, "ended_at": "2026-01-01T00:00:00Z"})
    };
    let a = Auth::Bearer(tokens[0].clone());
    // Slave A cannot speak for slave B.
    let r = m.api.post("/slave_rsync_complete/", &report(ports[1], 1), &a).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    // Nor claim a generation the project never had.
    let r = m.api.post("/slave_rsync_complete/", &report(ports[0], 99), &a).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::CONFLICT, json!("generation")), "{}", r.text);
    let r = m.api.post("/slave_rsync_complete/", &report(ports[0], 1), &a).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let p = m.api.get("/projects/rep/propagation", &Auth::root()).await.body;
    let served = |port: u16| {
        let name = json!(format!("127.0.0.1:{port}"));
        let s = p["slaves"].as_array().unwrap().iter().find(|s| s["slave"] == name).unwrap();
        (s["generation"].clone(), s["lag"].clone())
    };
    assert_eq!((served(ports[0]), served(ports[1])), ((json!(1), json!(0)), (json!(0), json!(1))), "{p}");
    // A rotated token replaces the old one at once.
    let r =
        m.api.post("/rotate_slave_token/", &json!({"hostname": "127.0.0.1", "port": ports[0]}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let rotated = Auth::Bearer(r.body["token"].as_str().unwrap().to_owned());
    assert_eq!(m.api.post("/slave_rsync_complete/", &report(ports[0], 1), &a).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(m.api.post("/slave_rsync_complete/", &report(ports[0], 1), &rotated).await.status, StatusCode::OK);
    // Only a root manages slave tokens.
    let r =
        m.api.post("/rotate_slave_token/", &json!({"hostname": "127.0.0.1", "port": ports[0]}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// The payload of a JWT, decoded.
fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn tokens_cannot_renew_themselves_and_die_with_their_users_identity() {
    let m = TestMaster::start().await;
    let bob = Auth::basic("bob", "bob-password-1");
    let r =
        m.api.post("/create_api_user/", &json!({"username": "bob", "password": "bob-password-1"}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let parent = m.api.token(&bob).await;
    // A token minted with a token expires when its parent does.
    let r = m.api.get("/get_token/", &Auth::Bearer(parent.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let child = r.body["token"].as_str().unwrap().to_owned();
    assert!(claims(&child)["exp"].as_i64().unwrap() <= claims(&parent)["exp"].as_i64().unwrap());
    assert!(r.body["duration"].as_u64().unwrap() <= 3600);

    // Removed and created again under the same name: the old tokens stay dead.
    m.api.post("/remove_api_user/", &json!({"username": "bob"}), &Auth::root()).await;
    m.api.post("/create_api_user/", &json!({"username": "bob", "password": "bob-password-1"}), &Auth::root()).await;
    for t in [&parent, &child] {
        assert_eq!(m.api.get("/get_token/", &Auth::Bearer(t.clone())).await.status, StatusCode::UNAUTHORIZED);
    }
    // A user changes its own password: its tokens and its old password stop working.
    // With a token alone it cannot: a token (stolen, left on a screen) is not the password.
    let token = Auth::Bearer(m.api.token(&bob).await);
    let change = json!({"username": "bob", "password": "bob-password-2"});
    let r = m.api.post("/update_api_user/", &change, &token).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!("current_password")), "{}", r.text);
    let wrong = json!({"username": "bob", "password": "bob-password-2", "current_password": "guess"});
    assert_eq!(m.api.post("/update_api_user/", &wrong, &token).await.status, StatusCode::FORBIDDEN);
    assert_eq!(m.api.get("/get_token/", &bob).await.status, StatusCode::OK, "the password is unchanged");
    let change = json!({"username": "bob", "password": "bob-password-2", "current_password": "bob-password-1"});
    let r = m.api.post("/update_api_user/", &change, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(m.api.get("/get_token/", &token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(m.api.get("/get_token/", &bob).await.status, StatusCode::UNAUTHORIZED);
    let bob = Auth::basic("bob", "bob-password-2");
    let token = Auth::Bearer(m.api.token(&bob).await);
    // ... but not its role, nor anyone else's password.
    let r = m.api.post("/update_api_user/", &json!({"username": "bob", "role": "root"}), &bob).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = m.api.post("/update_api_user/", &json!({"username": "alice", "password": "x-new"}), &bob).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    // A root changes the role: the tokens issued under the old role stop working.
    let r = m.api.post("/update_api_user/", &json!({"username": "bob", "role": "root"}), &Auth::root()).await;
    assert_eq!((r.status, r.body["role"].clone()), (StatusCode::OK, json!("root")), "{}", r.text);
    assert_eq!(m.api.get("/get_token/", &token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(m.api.get("/list_users/", &bob).await.status, StatusCode::OK);
    // The last root cannot be demoted.
    m.api.post("/remove_api_user/", &json!({"username": "bob"}), &Auth::root()).await;
    let r = m.api.post("/update_api_user/", &json!({"username": "root", "role": "user"}), &Auth::root()).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::CONFLICT, json!("role")), "{}", r.text);
}

#[tokio::test]
async fn anonymous_readers_see_a_status_page_not_paths_output_or_addresses() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data().join("pub"), 2);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cluster_settings(dir.path());
    settings.runs_keep = 3;
    let m = TestMaster::start_with(dir, settings).await;
    let mut slave = SlaveProcess::start(&m.api.base).await;
    add_slave(&m.api, &mut slave).await;
    add(&m.api, &project("pub", &upstream, "pub", json!([]))).await;
    let mut runs = Vec::new();
    for _ in 0..5 {
        runs.push(run(&m.api, "pub").await["id"].as_i64().unwrap());
    }
    let root_path = m.mirror_root().display().to_string();
    let slave_addr = format!("127.0.0.1:{}", slave.port);
    // Not `wait_for`: should it time out, what the master and the slave saw is the diagnosis.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = m.api.get("/projects/pub/propagation", &Auth::root()).await.body;
        if view["slaves"][0]["lag"] == json!(0) {
            break;
        }
        if Instant::now() > deadline {
            let log = slave.drain_log();
            let tail = log[log.len().saturating_sub(40)..].join("\n");
            panic!("the slave never caught up: {view}\nslave status: {}\nslave log:\n{tail}", slave.status().await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Logged in: everything.
    let full = m.api.get(&format!("/runs/{}", runs[4]), &Auth::user()).await.body;
    assert!(full["log_tail"].as_str().unwrap().contains("Number of files"), "{full}");
    assert!(m.api.get("/list_projects/", &Auth::user()).await.text.contains(&root_path));
    assert!(m.api.get("/projects/pub/propagation", &Auth::user()).await.text.contains(&slave_addr));
    // Anonymous: names, states, times, sizes, generations.
    let one = m.api.get(&format!("/runs/{}", runs[4]), &Auth::None).await;
    assert_eq!(one.body["status"], json!("success"));
    assert!(one.body.get("log_tail").is_none() && one.body["message"].is_null(), "{}", one.text);
    let listing = m.api.get("/list_projects/", &Auth::None).await;
    // Five runs of one unchanged tree: one generation.
    assert_eq!((listing.body[0]["id"].clone(), listing.body[0]["generation"].clone()), (json!("pub"), json!(1)));
    assert!(listing.body[0]["last_run"]["stats"]["total_size"].as_u64().unwrap() > 0, "{}", listing.text);
    let propagation = m.api.get("/projects/pub/propagation", &Auth::None).await;
    assert_eq!(propagation.body["slaves"][0]["slave"], json!("slave-1"), "{}", propagation.text);
    let list_runs = m.api.get("/runs/?project=pub", &Auth::None).await;
    for text in [&one.text, &listing.text, &propagation.text, &list_runs.text] {
        assert!(!text.contains(&root_path) && !text.contains(&slave_addr), "{text}");
    }
    let status = slave.api.get("/status", &Auth::None).await.body;
    assert!(status.get("root").is_none() && status["serving"]["pub"]["generation"] == json!(1), "{status}");
    assert!(slave.status().await["root"].as_str().unwrap().starts_with(slave.dir.path().to_str().unwrap()));
    // Retention: the newest runs_keep runs are kept.
    let kept: Vec<i64> = m
        .api
        .get("/runs/?project=pub", &Auth::user())
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(kept, vec![runs[4], runs[3], runs[2]]);
    assert_eq!(m.api.get(&format!("/runs/{}", runs[0]), &Auth::user()).await.status, StatusCode::NOT_FOUND);
    // The master says whether its runs are confined.
    let s = m.api.get("/status/", &Auth::None).await.body;
    assert_eq!(s["confined"], json!(true), "{s}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let m = TestMaster::start().await;
    let big = json!({"project": "x".repeat(2 * 1024 * 1024)});
    let r = m.api.post("/add_project/", &big, &Auth::user()).await;
    assert_eq!((r.status, r.body["error"].clone()), (StatusCode::PAYLOAD_TOO_LARGE, json!("too_large")), "{}", r.text);
}

#[tokio::test]
async fn a_root_master_runs_rsync_and_its_daemon_as_the_run_as_account() {
    if !is_root() {
        eprintln!("skipped: run_as needs a master started as root");
        return;
    }
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data().join("dropped"), 3);
    let dir = tempfile::tempdir().unwrap();
    // The account must reach the tree and the helper: a world-traversable directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let helper = dir.path().join("mirror-confine");
    std::fs::copy(mirror_tests::binary("mirror-confine"), &helper).unwrap();
    let mut settings = cluster_settings(dir.path());
    settings.run_as = Some("nobody".into());
    settings.confine_helper = Some(helper);
    let m = TestMaster::start_with(dir, settings).await;
    let mut slave = SlaveProcess::start(&m.api.base).await;
    add_slave(&m.api, &mut slave).await;
    add(&m.api, &project("dropped", &upstream, "dropped", json!([]))).await;
    let r = run(&m.api, "dropped").await;
    assert_eq!(r["status"], json!("success"), "{r}");
    let nobody = nix_uid("nobody");
    let tree = m.mirror_root().join("dropped");
    for entry in walk(&tree) {
        assert_eq!(
            std::fs::symlink_metadata(&entry).unwrap().uid(),
            nobody,
            "{} is not the run_as account's",
            entry.display()
        );
    }
    // The managed daemon, run as the same account, serves the slave.
    wait_for(60, "the slave to serve the project", || async {
        (slave.status().await["serving"]["dropped"]["generation"] == json!(1)).then_some(())
    })
    .await;
    assert_eq!(entries(&slave.root().join("dropped")), entries(&tree));
}

fn nix_uid(user: &str) -> u32 {
    let out = std::process::Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![root.to_path_buf()];
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}
