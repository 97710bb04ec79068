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
    let out = tokio::process::Command::new(&copied)
        .current_dir(alone.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("MIRROR_MASTER__LISTEN", "127.0.0.1:0")
        .env("MIRROR_MASTER__RSYNCD__MANAGE", "false")
        .output()
        .await
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
