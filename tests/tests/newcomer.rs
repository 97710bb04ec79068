//! What a newcomer and a bad day find (issue 23): a master on a machine without rsync, a daemon
//! port that is taken, a master copied without its helper, and children that must end with
//! whatever started them. Against the real binary and real rsync daemons.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mirror_tests::rsyncd::free_port;
use mirror_tests::{Auth, MasterProcess, ROOT_PASSWORD, TestMaster, binary, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn daemon(api: &mirror_tests::Api) -> Value {
    api.get("/status/", &Auth::root()).await.body["rsync_daemon"].clone()
}

async fn metric(api: &mirror_tests::Api) -> String {
    let text = api.get("/metrics", &Auth::root()).await.text;
    text.lines().find(|l| l.starts_with("mirror_sync_rsyncd_up")).unwrap_or("").to_owned()
}

async fn status_page(api: &mirror_tests::Api) -> String {
    let r = api.client.get(format!("{}/", api.base)).header("accept", "text/html").send().await.unwrap();
    r.text().await.unwrap()
}

/// The README's first command on a machine without rsync: the API is served, one line says why
/// the daemon is down, `/status/`, `/metrics` and the status page show it; once rsync is there,
/// the daemon starts by itself.
#[tokio::test]
async fn a_master_without_rsync_serves_the_api_and_starts_the_daemon_once_rsync_is_there() {
    let work = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let rsync = bin.path().join("rsync");
    let env = [
        ("MIRROR_ROOT_PASSWORD", ROOT_PASSWORD),
        ("MIRROR_MASTER__RSYNCD__MANAGE", "true"),
        ("MIRROR_MASTER__RSYNCD__PORT", port.as_str()),
        ("MIRROR_MASTER__RSYNCD__RESTART_MAX_SECS", "1"),
        // Only this directory, empty for now, is where rsync could be.
        ("PATH", bin.path().to_str().unwrap()),
    ];
    let mut m = MasterProcess::start(work.path(), &env).await;
    assert_eq!(m.api.get("/list_projects/", &Auth::None).await.status, StatusCode::OK);
    let d = daemon(&m.api).await;
    assert_eq!((d["managed"].clone(), d["up"].clone()), (json!(true), json!(false)), "{d}");
    assert!(d["reason"].as_str().unwrap().contains("rsync is not installed"), "{d}");
    let anonymous = m.api.get("/status/", &Auth::None).await.body;
    assert!(anonymous["rsync_daemon"].get("reason").is_none(), "{anonymous}");
    assert_eq!(metric(&m.api).await, "mirror_sync_rsyncd_up 0");
    assert!(status_page(&m.api).await.contains("rsync daemon slaves pull from is not running"));
    // Retried every second, said once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let log = m.drain_log();
    let said: Vec<&String> = log.iter().filter(|l| l.contains("managed rsync daemon is not running")).collect();
    assert_eq!(said.len(), 1, "{log:#?}");

    std::os::unix::fs::symlink(which("rsync"), &rsync).unwrap();
    wait_for(20, "the daemon to start once rsync is there", || async {
        (daemon(&m.api).await["up"] == json!(true)).then_some(())
    })
    .await;
    assert_eq!(metric(&m.api).await, "mirror_sync_rsyncd_up 1");
    assert!(!status_page(&m.api).await.contains("is not running"));
    m.kill().await;
}

fn which(program: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file()).unwrap()
}

/// A daemon port another process holds: the master serves, says so, and the daemon starts once the
/// port is free.
#[tokio::test]
async fn a_taken_daemon_port_is_reported_and_the_daemon_starts_once_it_is_free() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let work = tempfile::tempdir().unwrap();
    let env = [
        ("MIRROR_ROOT_PASSWORD", ROOT_PASSWORD),
        ("MIRROR_MASTER__RSYNCD__MANAGE", "true"),
        ("MIRROR_MASTER__RSYNCD__PORT", port.as_str()),
        ("MIRROR_MASTER__RSYNCD__RESTART_MAX_SECS", "1"),
    ];
    let m = MasterProcess::start(work.path(), &env).await;
    let d = daemon(&m.api).await;
    assert_eq!(d["up"], json!(false), "{d}");
    assert!(d["reason"].as_str().unwrap().contains(&port), "{d}");
    drop(taken);
    wait_for(20, "the daemon to start on the freed port", || async {
        (daemon(&m.api).await["up"] == json!(true)).then_some(())
    })
    .await;
    m.kill().await;
}

/// A master copied or installed without `mirror-confine` beside it, on a kernel with Landlock,
/// refuses to start with `confine = "auto"`, naming the helper and the setting; `confine = "off"`
/// is how to run unconfined on purpose.
#[tokio::test]
async fn a_master_without_its_helper_refuses_to_start_unless_confine_is_off() {
    let alone = tempfile::tempdir().unwrap();
    let copied = alone.path().join("mirror-master");
    std::fs::copy(binary("mirror-master"), &copied).unwrap();
    let child = tokio::process::Command::new(&copied)
        .current_dir(alone.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("MIRROR_MASTER__LISTEN", "127.0.0.1:0")
        .env("MIRROR_MASTER__RSYNCD__MANAGE", "false")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // A master that starts serves until stopped: one still running after 20 s has started.
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the master started without its helper")
        .unwrap();
    let stderr = mirror_tests::strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "it started: {stderr}");
    assert!(stderr.contains("mirror-confine") && stderr.contains("confine = \"off\""), "{stderr}");

    let m = MasterProcess::start_with_args(alone.path(), &[], &[("MIRROR_MASTER__CONFINE", "off")]).await;
    assert_eq!(m.api.get("/list_projects/", &Auth::None).await.status, StatusCode::OK);
    assert_eq!(m.api.get("/status/", &Auth::None).await.body["confined"], json!(false));
    m.kill().await;
}

/// The processes whose command line names `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(marker)
        {
            found.push(pid);
        }
    }
    found
}

/// A master dropped inside a process (its task aborted, as a test or a panic would) takes its
/// managed daemon along: the helper and rsync, its whole process group.
#[tokio::test]
async fn a_dropped_master_leaves_no_daemon_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    settings.rsyncd.manage = true;
    settings.rsyncd.port = free_port();
    settings.rsyncd.dir = dir.path().join("rsyncd-of-a-dropped-master");
    let marker = settings.rsyncd.dir.display().to_string();
    let app = mirror_master::Application::build(settings).await.unwrap();
    let base = format!("http://{}", app.local_addr().unwrap());
    let task = tokio::spawn(app.run_until_stopped(std::future::pending::<()>()));
    let api = mirror_tests::Api::new(base);
    wait_for(20, "the daemon", || async { (daemon(&api).await["up"] == json!(true)).then_some(()) }).await;
    assert!(!processes_with(&marker).is_empty(), "the daemon runs");
    task.abort();
    let _ = task.await;
    wait_for(10, "the daemon's processes to end with the master", || async {
        processes_with(&marker).is_empty().then_some(())
    })
    .await;
}

/// A master daemon that accepts a connection and never answers: the slave's pull ends by its I/O
/// timeout (`pull_io_timeout_secs`), so the project's slot is free for the next notification
/// instead of held for `run_timeout_secs` (six hours).
#[tokio::test]
async fn a_pull_from_a_stalled_master_daemon_ends_by_its_timeout() {
    use mirror_tests::cluster::{SlaveProcess, add_slave, cluster_settings};
    use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, generate_tree};
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_port = stalled.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = stalled.accept().await {
            keep.lock().unwrap().push(conn);
        }
    });
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data().join("p"), 3);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cluster_settings(dir.path());
    settings.rsyncd.manage = false;
    settings.rsyncd.port = stalled_port;
    let m = TestMaster::start_with(dir, settings).await;
    let mut slave = SlaveProcess::start_with_env(&m.api.base, &[("MIRROR_SLAVE__PULL_IO_TIMEOUT_SECS", "2")]).await;
    add_slave(&m.api, &mut slave).await;
    let body = json!({
        "project": "p", "rsync_host": "127.0.0.1", "rsync_port": upstream.port, "rsync_module": "data/p",
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": "p",
    });
    assert_eq!(m.api.post("/add_project/", &body, &Auth::root()).await.status, StatusCode::CREATED);
    let r = m.api.get("/syncup/?id=p", &Auth::root()).await;
    let run = mirror_tests::finished_run(&m.api, r.body["run_id"].as_i64().unwrap(), 60).await;
    assert_eq!(run["status"], json!("success"), "{run}");
    wait_for(20, "the slave's pull from the stalled daemon", || async {
        (!held.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    wait_for(20, "the stalled pull to end by its timeout", || async {
        let s = slave.status().await;
        s["running"].get("p").is_none().then_some(())
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    let log = slave.drain_log().join("\n");
    assert!(log.contains("timeout") || log.contains("timed out"), "{log}");
}

/// A slave killed while pulling leaves what rsync was receiving in its temporary directory: gone
/// when the slave starts again, before any pull.
#[tokio::test]
async fn a_restarted_slave_empties_what_killed_pulls_were_receiving() {
    use mirror_tests::cluster::SlaveProcess;
    let mut slave = SlaveProcess::start("http://127.0.0.1:9").await;
    slave.kill().await;
    let temp = slave.root().join(".mirror-sync-tmp/p");
    std::fs::create_dir_all(&temp).unwrap();
    std::fs::write(temp.join(".big.iso.Xy12Ab"), vec![7u8; 4096]).unwrap();
    slave.restart().await;
    assert!(!temp.exists(), "the half-received file is still there");
}

/// A project row that no longer reads as one (a column written by hand that breaks its type)
/// is left out of the listing and named in the log; the others are listed, and the master starts.
#[tokio::test]
async fn a_corrupted_project_row_leaves_the_rest_of_the_listing_intact() {
    let m = TestMaster::start().await;
    for id in ["a", "b", "c"] {
        let r = m.api.post("/add_project/", &json!({"project": id, "source": id}), &Auth::root()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let settings = m.settings.clone();
    let dir = m.stop().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", settings.database.display())).await.unwrap();
    sqlx::query("UPDATE projects SET rsync_user = 'not a user name!' WHERE id = 'b'").execute(&pool).await.unwrap();
    pool.close().await;
    let m = TestMaster::start_with(dir, settings).await;
    let listed = m.api.get("/list_projects/", &Auth::None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let ids: Vec<&str> = listed.body.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "c"]);
    assert_eq!(m.api.get("/status/", &Auth::None).await.status, StatusCode::OK);
}

/// Migration 0006 lost the runs id high-water mark: a master whose newest runs were deleted gave
/// their ids again. Repaired (0019) from what the event log remembers: a new run never takes an
/// id a deleted one had.
#[tokio::test]
async fn a_run_id_is_never_used_twice_across_the_migration() {
    let m = TestMaster::start().await;
    let body =
        json!({"project": "p", "rsync_host": "127.0.0.1", "rsync_port": free_port(), "rsync_module": "m", "dest": "p"});
    assert_eq!(m.api.post("/add_project/", &body, &Auth::root()).await.status, StatusCode::CREATED);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = m.api.get("/syncup/?id=p", &Auth::root()).await;
        let id = r.body["run_id"].as_i64().unwrap();
        mirror_tests::finished_run(&m.api, id, 60).await;
        ids.push(id);
    }
    let settings = m.settings.clone();
    let dir = m.stop().await;
    // What 0006 did to such a database: the newest runs gone, and the mark with them.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", settings.database.display())).await.unwrap();
    sqlx::query("DELETE FROM runs WHERE id > ?").bind(ids[0]).execute(&pool).await.unwrap();
    sqlx::query("UPDATE sqlite_sequence SET seq = ? WHERE name = 'runs'").bind(ids[0]).execute(&pool).await.unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 19").execute(&pool).await.unwrap();
    pool.close().await;
    let m = TestMaster::start_with(dir, settings).await;
    let r = m.api.get("/syncup/?id=p", &Auth::root()).await;
    let next = r.body["run_id"].as_i64().unwrap();
    assert!(next > ids[2], "run id {next} was used before ({ids:?})");
}
