//! Hooks after a run: programs of the master's configuration, named by projects, run confined with
//! the run's result in tunasync's variables, their output in the run's log; against a real rsync
//! daemon and a real master.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;

use mirror_master::config::HookSettings;
use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, generate_tree};
use mirror_tests::{Api, Auth, TestMaster, finished_run};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn project(name: &str, port: u16, module: &str, hooks: Value) -> Value {
    json!({
        "project": name, "rsync_host": "127.0.0.1", "rsync_port": port, "rsync_module": module,
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": name,
        "rsync_options": {"basic": ["--no-motd"]}, "hooks": hooks,
    })
}

fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

async fn run(api: &Api, id: &str) -> Value {
    let r = api.post(&format!("/syncup/?id={id}"), &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    finished_run(api, r.body["run_id"].as_i64().unwrap(), 60).await
}

async fn log_of(api: &Api, run: &Value) -> String {
    api.get(&format!("/runs/{}/log", run["id"]), &Auth::root()).await.text
}

#[tokio::test]
async fn hooks_see_the_runs_result_stay_confined_and_never_fail_the_run() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 5);
    let scripts = tempfile::tempdir().unwrap();
    let notify = script(
        scripts.path(),
        "notify",
        "echo \"hook saw $TUNASYNC_MIRROR_NAME exit=$TUNASYNC_JOB_EXIT_STATUS status=$MIRROR_SYNC_RUN_STATUS in $PWD\"\n\
         if echo x > \"$TUNASYNC_WORKING_DIR/../escaped\" 2>/dev/null; then echo ESCAPED; else echo confined; fi\n\
         echo inside > \"$TUNASYNC_WORKING_DIR/.hook-was-here\" && echo wrote-inside",
    );
    let failing = script(scripts.path(), "failing", "echo about to fail; exit 3");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    let hook = |name: &str, program: &str| HookSettings {
        name: mirror_common::api::Name::parse(name.to_owned()).unwrap(),
        command: vec![program.to_owned()],
        timeout_secs: 30,
    };
    settings.hooks = vec![hook("notify", &notify), hook("failing", &failing)];
    let m = TestMaster::start_with(dir, settings).await;
    let add = |body: Value, auth: Auth| {
        let api = &m.api;
        async move { api.post("/add_project/", &body, &auth).await }
    };

    // Only root names hooks, and only hooks the configuration declares.
    let r = add(project("x", upstream.port, "data", json!({"on_success": ["notify"]})), Auth::user()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = add(project("x", upstream.port, "data", json!({"on_success": ["rm-rf"]})), Auth::root()).await;
    assert_eq!(r.body["field"], json!("hooks.on_success[0]"), "{}", r.text);
    let r =
        add(project("x", upstream.port, "data", json!({"on_success": [{"command": ["/bin/sh"]}]})), Auth::root()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "a program cannot be given through the API: {}", r.text);

    let both = json!({"on_success": ["notify"], "on_failure": ["notify"]});
    assert_eq!(add(project("ok", upstream.port, "data", both.clone()), Auth::root()).await.status, StatusCode::CREATED);
    assert_eq!(add(project("bad", upstream.port, "nothing", both), Auth::root()).await.status, StatusCode::CREATED);
    let r = add(project("loud", upstream.port, "data", json!({"on_success": ["failing"]})), Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let done = run(&m.api, "ok").await;
    assert_eq!(done["status"], json!("success"), "{done}");
    let log = log_of(&m.api, &done).await;
    let dest = m.mirror_root().join("ok");
    assert!(log.contains(&format!("hook saw ok exit=0 status=success in {}", dest.display())), "{log}");
    assert!(log.contains("confined") && !log.contains("ESCAPED") && log.contains("wrote-inside"), "{log}");
    assert!(!m.mirror_root().join("escaped").exists());

    let failed = run(&m.api, "bad").await;
    assert_eq!(failed["status"], json!("failed"), "{failed}");
    let log = log_of(&m.api, &failed).await;
    assert!(log.contains(&format!("hook saw bad exit={} status=failed", failed["exit_code"])), "{log}");

    // A failing hook is noted; the run and its generation stand.
    let loud = run(&m.api, "loud").await;
    assert_eq!(loud["status"], json!("success"), "{loud}");
    let again = m.api.get(&format!("/runs/{}", loud["id"]), &Auth::root()).await.body;
    assert!(again["message"].as_str().unwrap().contains("hook failing failed: exit 3"), "{again}");
    assert!(log_of(&m.api, &loud).await.contains("about to fail"));
    let prop = m.api.get("/projects/loud/propagation", &Auth::root()).await.body;
    assert_eq!(prop["generation"], json!(1), "{prop}");

    // A user may change the rest of a project with hooks, leaving them as they are.
    let r = m.api.post("/update_project/basic/", &json!({"id": "ok", "timeout_secs": 600}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = m.api.post("/update_project/basic/", &json!({"id": "ok", "hooks": {}}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}
