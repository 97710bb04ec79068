//! Scheduled and manual runs against a real rsync daemon as the upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use mirror_tests::rsyncd::{
    UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, all_command_lines, free_port, generate_tree, snapshot,
};
use mirror_tests::{Api, Auth, MasterProcess, TestMaster, finished_run, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn project(name: &str, upstream_port: u16, extra: Value) -> Value {
    let mut p = json!({
        "project": name,
        "rsync_host": "127.0.0.1",
        "rsync_port": upstream_port,
        "rsync_module": "data",
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

async fn add(api: &Api, body: &Value) {
    let r = api.post("/add_project/", body, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

async fn syncup(api: &Api, id: &str) -> i64 {
    let r = api.post(&format!("/syncup/?id={id}"), &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.body["run_id"].as_i64().unwrap()
}

/// A file that takes about `secs` seconds to pull at `--bwlimit=100` (KiB/s).
fn slow_file(upstream: &Upstream, secs: usize) {
    let bytes: Vec<u8> = (0..secs * 100 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(upstream.data().join("slow.bin"), bytes).unwrap();
}

#[tokio::test]
async fn a_schedule_every_second_copies_the_tree_and_later_changes() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 40);
    let m = TestMaster::start().await;
    add(&m.api, &project("everysec", upstream.port, json!({"cron_options": {"second": "*"}}))).await;
    let dest = m.mirror_root().join("everysec");

    let first = wait_for(30, "a scheduled run that copied the tree", || async {
        let runs = m.api.get("/runs/?project=everysec", &Auth::root()).await.body;
        runs.as_array()?.iter().find(|r| r["status"] == json!("success")).cloned()
    })
    .await;
    assert_eq!(first["trigger"], json!("schedule"));
    assert!(first["scheduled_for"].is_string());
    assert_eq!(snapshot(&dest), snapshot(&upstream.data()));
    assert!(first["stats"]["files_transferred"].as_u64().unwrap() >= 40, "{first}");

    // A change upstream reaches the mirror by a later scheduled run, deletions included.
    std::fs::write(upstream.data().join("dir0/new.txt"), b"new upstream file").unwrap();
    std::fs::write(upstream.data().join("empty"), b"no longer empty").unwrap();
    std::fs::remove_file(upstream.data().join("big.bin")).unwrap();
    let changed_at = chrono::Utc::now();
    wait_for(30, "a later run with the change", || async {
        let runs = m.api.get("/runs/?project=everysec&limit=20", &Auth::root()).await.body;
        runs.as_array()?
            .iter()
            .find(|r| {
                r["status"] == json!("success")
                    && r["started_at"]
                        .as_str()
                        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                        .is_some_and(|s| s > changed_at)
            })
            .cloned()
    })
    .await;
    assert_eq!(snapshot(&dest), snapshot(&upstream.data()));
    // Each run keeps what it created and deleted: over all of them, the one deletion upstream.
    let runs = m.api.get("/runs/?project=everysec&limit=100", &Auth::root()).await.body;
    let sum =
        |field: &str| runs.as_array().unwrap().iter().map(|r| r["stats"][field].as_u64().unwrap_or(0)).sum::<u64>();
    assert_eq!(sum("files_deleted"), 1, "{runs}");
    assert!(sum("files_created") > 40, "{runs}");

    let listed = &m.api.get("/list_projects/", &Auth::None).await.body[0];
    assert!(listed["next_run_time"].is_string() && listed["last_success"].is_string(), "{listed}");
    assert!(listed["last_run"]["id"].is_i64(), "{listed}");

    // Disabling stops the schedule at once.
    assert_eq!(m.api.get("/disable_project/?id=everysec", &Auth::user()).await.status, StatusCode::OK);
    let settle = m.api.get("/runs/?project=everysec&limit=1", &Auth::root()).await.body[0]["id"].as_i64().unwrap();
    finished_run(&m.api, settle, 30).await;
    let last = m.api.get("/runs/?project=everysec&limit=1", &Auth::root()).await.body[0]["id"].as_i64().unwrap();
    // Two seconds later there is still no newer run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = m.api.get("/runs/?project=everysec&limit=1", &Auth::root()).await.body[0]["id"].as_i64().unwrap();
    assert_eq!(after, last);
}

#[tokio::test]
async fn syncup_copies_at_once_and_calls_during_the_run_bring_exactly_one_more_pass() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 10);
    slow_file(&upstream, 3);
    let m = TestMaster::start().await;
    add(&m.api, &project("manual", upstream.port, json!({"rsync_options": {"basic": ["--bwlimit=100"]}}))).await;
    assert_eq!(m.api.get("/list_projects/", &Auth::None).await.body[0]["status"], json!("never_run"));

    let run = syncup(&m.api, "manual").await;
    // Asked for again during the run (ftpsync's Archive-Update-Required): one more full pass after
    // it, however many times it is asked.
    let second = m.api.get("/syncup/?project=manual", &Auth::user()).await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.text);
    assert_eq!(second.body["follow_up_of"], json!(run), "{}", second.text);
    let follow = second.body["run_id"].as_i64().unwrap();
    assert!(follow > run);
    let third = m.api.post("/syncup/?id=manual", &json!({}), &Auth::user()).await;
    assert_eq!(
        (third.body["run_id"].as_i64(), third.body["follow_up_of"].as_i64()),
        (Some(follow), Some(run)),
        "{}",
        third.text
    );
    let status = m.api.get("/list_projects/", &Auth::None).await.body[0]["status"].clone();
    assert!(status == json!("running") || status == json!("queued"), "{status}");
    assert_eq!(m.api.get(&format!("/runs/{follow}"), &Auth::root()).await.body["status"], json!("queued"));

    let done = finished_run(&m.api, run, 60).await;
    let pass = finished_run(&m.api, follow, 60).await;
    assert_eq!(pass["status"], json!("success"), "{pass}");
    assert!(pass["started_at"].as_str() >= done["ended_at"].as_str(), "the pass starts after the run: {pass} {done}");
    let runs = m.api.get("/runs/?project=manual", &Auth::root()).await.body;
    assert_eq!(runs.as_array().unwrap().len(), 2, "exactly one more pass: {runs}");
    assert_eq!(done["status"], json!("success"), "{done}");
    assert_eq!((done["trigger"].clone(), done["exit_code"].clone()), (json!("manual"), json!(0)));
    assert!(done["log_tail"].as_str().unwrap().contains("Number of files"), "{done}");
    assert_eq!(snapshot(&m.mirror_root().join("manual")), snapshot(&upstream.data()));
    // The full log is on disk.
    let log = m.dir.path().join("logs/manual").join(format!("{run}.log"));
    assert!(std::fs::read_to_string(log).unwrap().contains("Total file size"));

    // Once it is over, a new syncup is accepted; unknown projects are 404.
    let again = syncup(&m.api, "manual").await;
    assert!(again > run);
    finished_run(&m.api, again, 60).await;
    assert_eq!(m.api.get("/syncup/?id=nope", &Auth::user()).await.status, StatusCode::NOT_FOUND);
    assert_eq!(m.api.get("/syncup/?id=manual", &Auth::None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(m.api.get("/runs/999999", &Auth::None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(m.api.get("/runs/?limit=0", &Auth::None).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn failures_keep_rsyncs_message_and_only_connection_failures_retry() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 3);
    let m = TestMaster::start().await;
    add(&m.api, &project("wrongpw", upstream.port, json!({"rsync_password": "not-the-password"}))).await;
    let closed = free_port();
    add(&m.api, &project("nohost", closed, json!({}))).await;

    let run = syncup(&m.api, "wrongpw").await;
    let done = finished_run(&m.api, run, 60).await;
    assert_eq!(done["status"], json!("failed"), "{done}");
    assert_eq!(done["exit_code"], json!(5));
    assert!(done["message"].as_str().unwrap().contains("auth failed"), "{done}");
    assert_eq!(done["attempts"], json!(1), "a refused login is not retried");

    let run = syncup(&m.api, "nohost").await;
    let done = finished_run(&m.api, run, 60).await;
    assert_eq!(done["status"], json!("failed"), "{done}");
    assert_eq!(done["exit_code"], json!(10), "{done}");
    assert!(done["message"].as_str().unwrap().contains("Connection refused"), "{done}");
    assert_eq!(done["attempts"], json!(3), "two retries after the first attempt: {done}");
}

#[tokio::test]
async fn a_timeout_kills_the_child() {
    let upstream = Upstream::start().await;
    slow_file(&upstream, 30);
    let m = TestMaster::start().await;
    add(
        &m.api,
        &project("slow", upstream.port, json!({"timeout_secs": 1, "rsync_options": {"basic": ["--bwlimit=100"]}})),
    )
    .await;
    let started = Instant::now();
    let run = syncup(&m.api, "slow").await;
    let done = finished_run(&m.api, run, 30).await;
    assert_eq!(done["status"], json!("timeout"), "{done}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let dest = m.mirror_root().join("slow");
    let dest = dest.to_str().unwrap();
    assert!(!all_command_lines().iter().any(|c| c.contains("rsync") && c.contains(dest)), "rsync is still running");
}

#[tokio::test]
async fn the_password_is_never_in_argv_logs_or_responses() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 5);
    slow_file(&upstream, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut master = MasterProcess::start(
        dir.path(),
        &[("MIRROR_ROOT_PASSWORD", mirror_tests::ROOT_PASSWORD), ("MIRROR_MASTER__LOG", "debug")],
    )
    .await;
    let api = master.api.clone();
    add(&api, &project("secret", upstream.port, json!({"rsync_options": {"basic": ["--bwlimit=100"]}}))).await;
    let run = api.get("/syncup/?id=secret", &Auth::root()).await.body["run_id"].as_i64().unwrap();
    // While rsync runs, look at every process's command line.
    let seen_rsync = wait_for(20, "the rsync process", || async {
        let lines = all_command_lines();
        lines.iter().any(|l| l.contains("rsync") && l.contains("--bwlimit=100")).then_some(lines)
    })
    .await;
    assert!(!seen_rsync.iter().any(|l| l.contains(UPSTREAM_PASSWORD)), "password in a command line");
    let done = finished_run(&api, run, 60).await;
    assert_eq!(done["status"], json!("success"), "{done}");
    let mut responses = String::new();
    for path in ["/list_projects/", "/runs/", &format!("/runs/{run}")] {
        responses += &api.get(path, &Auth::root()).await.text;
    }
    assert!(!responses.contains(UPSTREAM_PASSWORD), "password in a response");
    let log = master.drain_log().join("\n");
    assert!(log.contains("run succeeded"), "the log is being read: {log}");
    assert!(!log.contains(UPSTREAM_PASSWORD), "password in the master's log");
    let run_log = std::fs::read_to_string(dir.path().join("logs/secret").join(format!("{run}.log"))).unwrap();
    assert!(!run_log.contains(UPSTREAM_PASSWORD));
    master.kill().await;
}

#[tokio::test]
async fn kill_9_during_a_run_leaves_it_interrupted_and_the_schedule_goes_on() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 5);
    slow_file(&upstream, 30);
    let dir = tempfile::tempdir().unwrap();
    let env = [("MIRROR_ROOT_PASSWORD", mirror_tests::ROOT_PASSWORD)];
    let master = MasterProcess::start(dir.path(), &env).await;
    let api = master.api.clone();
    add(&api, &project("long", upstream.port, json!({"rsync_options": {"basic": ["--bwlimit=100"]}}))).await;
    add(
        &api,
        &project(
            "ticking",
            upstream.port,
            json!({"cron_options": {"second": "*/2"}, "rsync_options": {"basic": ["--exclude=slow.bin"]}}),
        ),
    )
    .await;
    let run = api.get("/syncup/?id=long", &Auth::root()).await.body["run_id"].as_i64().unwrap();
    wait_for(20, "the long run to be running", || async {
        let r = api.get(&format!("/runs/{run}"), &Auth::root()).await;
        (r.body["status"] == json!("running")).then_some(())
    })
    .await;
    // SIGKILL: no chance to clean up.
    master.kill().await;
    // The run's rsync, and the receiver it forked, die with the master, before any restart.
    let dest = dir.path().join("mirror/long");
    let dest = std::fs::canonicalize(dest).unwrap();
    let dest = dest.to_str().unwrap();
    wait_for(5, "the dead master's rsync to be gone", || async {
        (!all_command_lines().iter().any(|c| c.contains("--bwlimit=100") && c.contains(dest))).then_some(())
    })
    .await;

    let master = MasterProcess::start(dir.path(), &env).await;
    let api = master.api.clone();
    let r = api.get(&format!("/runs/{run}"), &Auth::root()).await.body;
    assert_eq!(r["status"], json!("interrupted"), "{r}");
    assert!(r["ended_at"].is_string());
    // Everything else is intact and the schedules go on after the restart.
    let listed = api.get("/list_projects/", &Auth::None).await.body;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let restarted_at = chrono::Utc::now();
    wait_for(30, "a scheduled run after the restart", || async {
        let runs = api.get("/runs/?project=ticking", &Auth::root()).await.body;
        runs.as_array()?
            .iter()
            .find(|r| {
                r["status"] == json!("success")
                    && r["queued_at"]
                        .as_str()
                        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                        .is_some_and(|s| s > restarted_at)
            })
            .cloned()
    })
    .await;
    // A new manual run of the interrupted project is accepted.
    assert_eq!(api.get("/syncup/?id=long", &Auth::root()).await.status, StatusCode::ACCEPTED);
    master.kill().await;
}

#[tokio::test]
async fn a_graceful_stop_lets_runs_finish_within_the_grace_then_interrupts_them() {
    let upstream = Upstream::start().await;
    slow_file(&upstream, 30);
    // About half a second at 100 KiB/s: it ends within the 2 s grace.
    std::fs::write(upstream.data().join("quick.bin"), vec![7u8; 50 * 1024]).unwrap();
    let m = TestMaster::start().await; // shutdown_grace_secs = 2
    add(&m.api, &project("graceful", upstream.port, json!({"rsync_options": {"basic": ["--bwlimit=100"]}}))).await;
    let quick_opts = json!({"rsync_options": {"basic": ["--bwlimit=100", "--exclude=slow.bin"]}});
    add(&m.api, &project("quick", upstream.port, quick_opts)).await;
    let run = syncup(&m.api, "graceful").await;
    let quick = syncup(&m.api, "quick").await;
    let api = m.api.clone();
    for id in [run, quick] {
        wait_for(20, "the runs to be running", || async {
            (api.get(&format!("/runs/{id}"), &Auth::root()).await.body["status"] == json!("running")).then_some(())
        })
        .await;
    }
    let settings = m.settings.clone();
    let started = Instant::now();
    let dir = m.stop().await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1900) && waited < Duration::from_secs(20), "stopped after {waited:?}");

    // Reopen the same database: the run was recorded as interrupted by the stop itself.
    let m = TestMaster::start_with(dir, settings).await;
    let r = m.api.get(&format!("/runs/{run}"), &Auth::root()).await.body;
    assert_eq!(r["status"], json!("interrupted"), "{r}");
    assert_eq!(r["message"], json!("stopped before it finished"), "{r}");
    let q = m.api.get(&format!("/runs/{quick}"), &Auth::root()).await.body;
    assert_eq!(q["status"], json!("success"), "the run that ended within the grace: {q}");
}

#[tokio::test]
async fn missed_fires_give_at_most_one_catch_up_run_and_only_when_asked() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 3);
    let m = TestMaster::start().await;
    let every2 = json!({"cron_options": {"second": "*/2"}});
    add(&m.api, &project("catcher", upstream.port, json!({"cron_options": {"second": "*/2"}, "catch_up": true}))).await;
    add(&m.api, &project("nocatch", upstream.port, every2)).await;
    for id in ["catcher", "nocatch"] {
        wait_for(20, "a first scheduled run", || async {
            let runs = m.api.get(&format!("/runs/?project={id}"), &Auth::root()).await.body;
            runs.as_array()?.iter().find(|r| r["status"] == json!("success")).cloned()
        })
        .await;
    }
    let settings = m.settings.clone();
    let dir = m.stop().await;
    // Down for several fire times.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m = TestMaster::start_with(dir, settings).await;
    let catch_ups = |id: &'static str| {
        let api = m.api.clone();
        async move {
            let runs = api.get(&format!("/runs/?project={id}&limit=1000"), &Auth::root()).await.body;
            runs.as_array().unwrap().iter().filter(|r| r["trigger"] == json!("catch_up")).count()
        }
    };
    wait_for(10, "the catch-up run", || async { (catch_ups("catcher").await == 1).then_some(()) }).await;
    assert_eq!(catch_ups("nocatch").await, 0);
    // Scheduled runs resume without replaying the missed ones.
    let restarted = chrono::Utc::now();
    wait_for(20, "a scheduled run after the restart", || async {
        let runs = m.api.get("/runs/?project=nocatch", &Auth::root()).await.body;
        runs.as_array()?
            .iter()
            .find(|r| {
                r["queued_at"]
                    .as_str()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    .is_some_and(|s| s > restarted)
            })
            .cloned()
    })
    .await;
    assert_eq!(catch_ups("catcher").await, 1);
}

#[tokio::test]
async fn the_concurrency_cap_queues_runs_in_order() {
    let upstream = Upstream::start().await;
    slow_file(&upstream, 2);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    settings.max_concurrent_runs = 1;
    let m = TestMaster::start_with(dir, settings).await;
    for name in ["capa", "capb", "capc"] {
        add(&m.api, &project(name, upstream.port, json!({"rsync_options": {"basic": ["--bwlimit=200"]}}))).await;
    }
    let runs = [syncup(&m.api, "capa").await, syncup(&m.api, "capb").await, syncup(&m.api, "capc").await];
    let second = m.api.get(&format!("/runs/{}", runs[1]), &Auth::root()).await.body;
    assert_eq!(second["status"], json!("queued"), "{second}");
    let mut ends = Vec::new();
    for id in runs {
        let r = finished_run(&m.api, id, 60).await;
        assert_eq!(r["status"], json!("success"), "{r}");
        ends.push((r["started_at"].as_str().unwrap().to_owned(), r["ended_at"].as_str().unwrap().to_owned()));
    }
    // One at a time, in the order triggered: each starts after the previous one ended.
    assert!(ends[0].1 <= ends[1].0 && ends[1].1 <= ends[2].0, "{ends:?}");
}

#[tokio::test]
async fn projects_due_on_the_same_second_each_get_their_own_run() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 10);
    let m = TestMaster::start().await;
    let names = ["same0", "same1", "same2", "same3"];
    for name in names {
        add(&m.api, &project(name, upstream.port, json!({"cron_options": {"second": "*"}}))).await;
    }
    // A fire time at which all four ran, each its own run of its own project.
    let shared = wait_for(30, "one fire that started all four projects", || async {
        let mut per_project = Vec::new();
        for name in names {
            let runs = m.api.get(&format!("/runs/?project={name}&limit=50"), &Auth::root()).await.body;
            let done: std::collections::BTreeSet<String> = runs
                .as_array()?
                .iter()
                .filter(|r| r["status"] == json!("success") && r["project"] == json!(name))
                .filter_map(|r| r["scheduled_for"].as_str().map(str::to_owned))
                .collect();
            per_project.push(done);
        }
        let first = per_project[0].clone();
        first.into_iter().find(|t| per_project.iter().all(|p| p.contains(t)))
    })
    .await;
    assert!(!shared.is_empty());
    for name in names {
        assert_eq!(snapshot(&m.mirror_root().join(name)), snapshot(&upstream.data()), "{name}");
    }
}

#[tokio::test]
async fn a_dest_turned_into_a_symlink_out_of_the_mirror_root_is_not_written() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 5);
    let m = TestMaster::start().await;
    add(&m.api, &project("victim", upstream.port, json!({}))).await;
    let first = finished_run(&m.api, syncup(&m.api, "victim").await, 30).await;
    assert_eq!(first["status"], json!("success"), "{first}");
    // Someone with access to the mirror root swaps the project's directory for a link elsewhere.
    let outside = tempfile::tempdir().unwrap();
    let dest = m.mirror_root().join("victim");
    std::fs::remove_dir_all(&dest).unwrap();
    std::os::unix::fs::symlink(outside.path(), &dest).unwrap();
    let refused = finished_run(&m.api, syncup(&m.api, "victim").await, 30).await;
    assert_eq!(refused["status"], json!("failed"), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("not run"), "{refused}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "rsync wrote outside the mirror root");
}

#[tokio::test]
async fn run_logs_are_rotated_keeping_the_newest_per_project() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 3);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    settings.log_keep = 2;
    let m = TestMaster::start_with(dir, settings).await;
    add(&m.api, &project("rotated", upstream.port, json!({}))).await;
    add(&m.api, &project("neighbour", upstream.port, json!({}))).await;
    let neighbour = syncup(&m.api, "neighbour").await;
    finished_run(&m.api, neighbour, 30).await;
    let mut runs = Vec::new();
    for _ in 0..4 {
        let run = syncup(&m.api, "rotated").await;
        assert_eq!(finished_run(&m.api, run, 30).await["status"], json!("success"));
        runs.push(run);
    }
    let logs = |project: &str| {
        let mut names: Vec<String> = std::fs::read_dir(m.dir.path().join("logs").join(project))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let mut newest: Vec<String> = runs[2..].iter().map(|r| format!("{r}.log")).collect();
    newest.sort();
    // Logs rotate just after the run's end is recorded: a reader can see the end first.
    wait_for(10, "the older logs rotated away", || async { (logs("rotated") == newest).then_some(()) }).await;
    // Another project's logs are its own business.
    assert_eq!(logs("neighbour"), vec![format!("{neighbour}.log")]);
    // The history keeps every run; only the files rotate.
    let history = m.api.get("/runs/?project=rotated&limit=10", &Auth::root()).await.body;
    assert_eq!(history.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn an_operator_stops_a_run_and_it_ends_stopped_with_its_rsync_gone() {
    let upstream = Upstream::start().await;
    slow_file(&upstream, 30);
    let m = TestMaster::start().await;
    add(&m.api, &project("slow", upstream.port, json!({"rsync_options": {"basic": ["--bwlimit=100"]}}))).await;
    let run = syncup(&m.api, "slow").await;
    // While it runs, the run shows how far it has got: bytes growing as rsync receives them.
    let first = wait_for(20, "progress", || async {
        let v = m.api.get(&format!("/runs/{run}"), &Auth::root()).await.body;
        (v["status"] == json!("running") && v["progress"]["bytes"].as_u64() > Some(0)).then_some(v["progress"].clone())
    })
    .await;
    assert!(first["rate"].as_str().unwrap().ends_with("/s"), "{first}");
    wait_for(20, "more progress", || async {
        let v = m.api.get(&format!("/runs/{run}"), &Auth::root()).await.body;
        (v["progress"]["bytes"].as_u64() > first["bytes"].as_u64()).then_some(())
    })
    .await;
    // Not to the public (it is of the run's output), and not in the log.
    assert!(m.api.get(&format!("/runs/{run}"), &Auth::None).await.body.get("progress").is_none());
    let log = m.api.get(&format!("/runs/{run}/log"), &Auth::root()).await.text;
    assert!(!log.contains("%"), "{log}");
    assert_eq!(
        m.api.post(&format!("/runs/{run}/stop"), &json!({}), &Auth::None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let stop = m.api.post(&format!("/runs/{run}/stop"), &json!({}), &Auth::user()).await;
    assert_eq!(stop.status, StatusCode::ACCEPTED, "{}", stop.text);
    assert_eq!(stop.body["run_id"], json!(run));
    let done = finished_run(&m.api, run, 20).await;
    assert_eq!(
        (done["status"].clone(), done["message"].clone()),
        (json!("stopped"), json!("stopped by an operator")),
        "{done}"
    );
    let dest = m.mirror_root().join("slow");
    let dest = dest.to_str().unwrap();
    assert!(!all_command_lines().iter().any(|c| c.contains("rsync") && c.contains(dest)), "rsync is still running");
    // Nothing new to serve, and stopping it again or a run that never was is refused.
    assert_eq!(m.api.get("/projects/slow/propagation", &Auth::root()).await.body["generation"], json!(0));
    assert_eq!(m.api.post(&format!("/runs/{run}/stop"), &json!({}), &Auth::root()).await.status, StatusCode::CONFLICT);
    assert_eq!(m.api.post("/runs/99999/stop", &json!({}), &Auth::root()).await.status, StatusCode::NOT_FOUND);
    // The project runs again as usual.
    let listed = m.api.get("/list_projects/", &Auth::root()).await.body;
    assert_eq!(listed[0]["status"], json!("stopped"), "{listed}");
}

#[tokio::test]
async fn a_trace_file_in_ftpsyncs_format_follows_each_success_and_no_symlink_sends_it_elsewhere() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 5);
    std::fs::create_dir_all(upstream.data().join("project/trace")).unwrap();
    std::fs::write(
        upstream.data().join("project/trace/master"),
        "Tue Nov 24 08:00:01 UTC 2026\nDate: Tue, 24 Nov 2026 08:00:01 +0000\nArchive serial: 2026112402\n",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    settings.mirror_name = Some(mirror_common::api::Name::parse("m1.example.org").unwrap());
    let m = TestMaster::start_with(dir, settings).await;
    add(&m.api, &project("deb", upstream.port, json!({"trace": true}))).await;
    assert_eq!(m.api.get("/projects/deb", &Auth::root()).await.body["trace"], json!(true));

    let first = finished_run(&m.api, syncup(&m.api, "deb").await, 30).await;
    assert_eq!(first["status"], json!("success"), "{first}");
    let trace_path = m.mirror_root().join("deb/project/trace/m1.example.org");
    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    assert!(lines[0].ends_with(" UTC 2026"), "a `date -u` line first: {trace}");
    for field in [
        "Date: ",
        "Date-Started: ",
        "Archive serial: 2026112402",
        "Creator: mirror-sync ",
        "Running on host: ",
        "Upstream-mirror: 127.0.0.1",
        "Total bytes received in rsync: ",
        "Total time spent in rsync: ",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(field)), "{field} missing from:\n{trace}");
    }
    assert!(trace.contains("Trigger: manual"), "{trace}");

    // The next run, with --delete, keeps it (rsync is told to leave it) and writes it anew.
    std::fs::write(upstream.data().join("project/trace/master"), "Archive serial: 2026112403\n").unwrap();
    let second = finished_run(&m.api, syncup(&m.api, "deb").await, 30).await;
    assert_eq!(second["status"], json!("success"), "{second}");
    assert!(std::fs::read_to_string(&trace_path).unwrap().contains("Archive serial: 2026112403"));

    // An upstream whose project/trace is a symlink out of the tree: a new project's run copies the
    // link, succeeds, and its trace is not written through it.
    let outside = tempfile::tempdir().unwrap();
    std::fs::remove_dir_all(upstream.data().join("project/trace")).unwrap();
    std::os::unix::fs::symlink(outside.path(), upstream.data().join("project/trace")).unwrap();
    add(&m.api, &project("deb2", upstream.port, json!({"trace": true}))).await;
    let third = finished_run(&m.api, syncup(&m.api, "deb2").await, 30).await;
    assert_eq!(third["status"], json!("success"), "{third}");
    assert!(std::fs::symlink_metadata(m.mirror_root().join("deb2/project/trace")).unwrap().is_symlink());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written through the symlink");
}

#[tokio::test]
async fn an_upstream_emptied_or_halved_is_a_failed_run_and_the_generation_does_not_move() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 6);
    std::fs::write(upstream.data().join("big.bin"), vec![7u8; 200 * 1024]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = mirror_master::config::Settings { max_shrink: 50, ..TestMaster::settings_in(dir.path()) };
    let m = TestMaster::start_with(dir, settings).await;
    // The deletion guard off: this test is about the tree a run leaves (max_delete has its own).
    add(&m.api, &project("deb", upstream.port, json!({"max_delete": "off"}))).await;
    let generation = || async { m.api.get("/projects/deb", &Auth::root()).await.body["generation"].clone() };
    let run = |api: &Api| {
        let api = api.clone();
        async move { finished_run(&api, syncup(&api, "deb").await, 30).await }
    };
    assert_eq!(run(&m.api).await["status"], json!("success"));
    assert_eq!(generation().await, json!(1));

    // Halved (the big file gone): more than max_shrink (50 %) smaller.
    std::fs::rename(upstream.data().join("big.bin"), upstream.data().join("../big.bin.away")).unwrap();
    let halved = run(&m.api).await;
    assert_eq!(halved["status"], json!("failed"), "{halved}");
    assert!(halved["message"].as_str().unwrap().contains("max_shrink"), "{halved}");
    assert_eq!(generation().await, json!(1));

    // Emptied: failed, whatever the shrink limit.
    std::fs::rename(upstream.data().join("../big.bin.away"), upstream.data().join("big.bin")).unwrap();
    let away = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(upstream.data()).unwrap() {
        let entry = entry.unwrap();
        std::fs::rename(entry.path(), away.path().join(entry.file_name())).unwrap();
    }
    let empty = run(&m.api).await;
    assert_eq!(empty["status"], json!("failed"), "{empty}");
    assert!(empty["message"].as_str().unwrap().contains("empty tree"), "{empty}");
    assert_eq!(generation().await, json!(1));

    // Back as it was: a success, the next generation.
    for entry in std::fs::read_dir(away.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::rename(entry.path(), upstream.data().join(entry.file_name())).unwrap();
    }
    assert_eq!(run(&m.api).await["status"], json!("success"));
    assert_eq!(generation().await, json!(2));
}

/// `max_delete`: a run that would delete too much stops at the limit and fails, the generation
/// stays, and `POST /syncup/?dry_run=true` says so beforehand. (What it deleted is put back from
/// the frozen copy when there is one: tests/tests/unchanged.rs; here, with no slave, there is none.)
#[tokio::test]
async fn a_run_that_would_delete_more_than_max_delete_changes_nothing_and_a_dry_run_says_so() {
    let upstream = Upstream::start().await;
    for i in 0..10 {
        std::fs::write(upstream.data().join(format!("f{i}")), format!("{i}")).unwrap();
    }
    let m = TestMaster::start().await;
    add(&m.api, &project("guarded", upstream.port, json!({"max_delete": "30%"}))).await;
    let first = finished_run(&m.api, syncup(&m.api, "guarded").await, 30).await;
    assert_eq!(first["status"], json!("success"), "{first}");
    let dest = m.mirror_root().join("guarded");
    let before = snapshot(&dest);

    // Five of ten files gone upstream (and one new): half the tree would go.
    for i in 0..5 {
        std::fs::remove_file(upstream.data().join(format!("f{i}"))).unwrap();
    }
    std::fs::write(upstream.data().join("new"), b"new").unwrap();
    let preview = m.api.post("/syncup/?id=guarded&dry_run=true", &json!({}), &Auth::user()).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
    assert_eq!(preview.body["stats"]["files_deleted"], json!(5), "{}", preview.text);
    assert_eq!(preview.body["stats"]["files_created"], json!(1), "{}", preview.text);
    assert_eq!(preview.body["max_delete"], json!("30%"));
    assert!(preview.body["refused"].as_str().unwrap().contains("would delete 5 of"), "{}", preview.text);
    assert_eq!(snapshot(&dest), before, "a dry run changes nothing");

    let refused = finished_run(&m.api, syncup(&m.api, "guarded").await, 30).await;
    assert_eq!(refused["status"], json!("failed"), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("max_delete 30%"), "{refused}");
    let now = snapshot(&dest);
    assert!(before.keys().filter(|k| !now.contains_key(*k)).count() <= 3, "more than the limit deleted");
    assert_eq!(m.api.get("/projects/guarded", &Auth::root()).await.body["generation"], json!(1));

    // Raised (a count this time): the run goes through.
    let r = m.api.post("/update_project/basic/", &json!({"id": "guarded", "max_delete": 5}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let through = finished_run(&m.api, syncup(&m.api, "guarded").await, 30).await;
    assert_eq!(through["status"], json!("success"), "{through}");
    assert_eq!(snapshot(&dest), snapshot(&upstream.data()));
    let bad =
        m.api.post("/update_project/basic/", &json!({"id": "guarded", "max_delete": "120%"}), &Auth::root()).await;
    assert_eq!((bad.status, &bad.body["field"]), (StatusCode::BAD_REQUEST, &json!("max_delete")), "{}", bad.text);
    let bad = m.api.post("/syncup/?id=guarded&dry_run=maybe", &json!({}), &Auth::user()).await;
    assert_eq!((bad.status, &bad.body["field"]), (StatusCode::BAD_REQUEST, &json!("dry_run")), "{}", bad.text);
}

/// The nice value of a run's processes, from `/proc/PID/stat` (field 19).
fn nice_of(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(16)?.parse().ok()
}

/// The rsync processes whose command line names `marker`.
fn rsyncs_naming(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let (Ok(cmdline), Ok(comm)) =
            (std::fs::read(format!("/proc/{pid}/cmdline")), std::fs::read_to_string(format!("/proc/{pid}/comm")))
        else {
            continue;
        };
        if comm.trim() == "rsync" && String::from_utf8_lossy(&cmdline).contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// `run_nice` and `run_memory_limit_mib`: set by the confinement helper on every run's program
/// (and so on every process it forks); a run that needs more memory than allowed fails.
#[tokio::test]
async fn runs_take_the_configured_nice_value_and_memory_limit() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 10);
    slow_file(&upstream, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    settings.run_nice = Some(13);
    settings.run_ionice = Some("idle".into());
    let m = TestMaster::start_with(dir, settings).await;
    add(&m.api, &project("niced", upstream.port, json!({"rsync_options": {"basic": ["--bwlimit=100"]}}))).await;
    let run = syncup(&m.api, "niced").await;
    let marker = format!("{}/", m.mirror_root().join("niced").display());
    let pids = wait_for(30, "the run's rsync processes", || async {
        let pids = rsyncs_naming(&marker);
        (!pids.is_empty()).then_some(pids)
    })
    .await;
    for pid in &pids {
        assert_eq!(nice_of(*pid), Some(13), "rsync {pid}");
        let io = std::process::Command::new("ionice").args(["-p", &pid.to_string()]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&io.stdout).trim(), "idle", "rsync {pid}");
    }
    let r = m.api.post(&format!("/runs/{run}/stop"), &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    finished_run(&m.api, run, 30).await;
    drop(m);

    // The limit as the kernel holds it for the run's programs.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    settings.run_memory_limit_mib = Some(512);
    let m = TestMaster::start_with(dir, settings).await;
    add(&m.api, &project("capped", upstream.port, json!({"rsync_options": {"basic": ["--bwlimit=100"]}}))).await;
    let run = syncup(&m.api, "capped").await;
    let marker = format!("{}/", m.mirror_root().join("capped").display());
    let pids = wait_for(30, "the run's rsync processes", || async {
        let pids = rsyncs_naming(&marker);
        (!pids.is_empty()).then_some(pids)
    })
    .await;
    for pid in &pids {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
        let line = limits.lines().find(|l| l.starts_with("Max address space")).unwrap_or("");
        assert!(line.split_whitespace().filter(|w| *w == "536870912").count() == 2, "rsync {pid}: {line}");
    }
    let r = m.api.post(&format!("/runs/{run}/stop"), &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    finished_run(&m.api, run, 30).await;

    // A program that needs more than the limit fails (rsync's receiver is frugal: a program that
    // allocates 64 MiB shows it), started by the same helper the runs start through.
    let out = tokio::process::Command::new(mirror_tests::binary("mirror-confine"))
        .args(["--memory", "33554432", "--unconfined", "--", "python3", "-c", "bytearray(64 << 20)"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("MemoryError"), "{out:?}");
    let out = tokio::process::Command::new(mirror_tests::binary("mirror-confine"))
        .args(["--memory", "33554432", "--unconfined", "--", "python3", "-c", "bytearray(8 << 20)"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
