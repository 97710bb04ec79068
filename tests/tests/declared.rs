//! Declarative projects: `projects_dir` applied at start, on `POST /reload`, `mirrorctl reload`
//! and SIGHUP; file-managed projects refuse API writes; API-made projects are left alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use mirror_tests::{Auth, MasterProcess, ROOT_PASSWORD, TestMaster, binary, wait_for};
use reqwest::StatusCode;
use serde_json::json;

fn write(dir: &Path, name: &str, host: &str) {
    let id = name.trim_end_matches(".yaml");
    let text = format!(
        "id: {id}\nproject: {id}\nrsync_host: {host}\nrsync_module: {id}\ndest: {id}\ncron_options:\n  minute: '*/30'\n"
    );
    std::fs::write(dir.join(name), text).unwrap();
}

async fn ids(api: &mirror_tests::Api) -> Vec<String> {
    let all = api.get("/list_projects/", &Auth::root()).await.body;
    all.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn files_declare_projects_and_a_reload_applies_exactly_them() {
    let files = tempfile::tempdir().unwrap();
    write(files.path(), "alpha.yaml", "a.example.org");
    write(files.path(), "beta.yaml", "b.example.org");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    settings.projects_dir = Some(files.path().to_owned());
    let m = TestMaster::start_with(dir, settings).await;
    assert_eq!(ids(&m.api).await, ["alpha", "beta"]);
    let alpha = m.api.get("/projects/alpha", &Auth::root()).await.body;
    assert_eq!(alpha["managed_file"], json!("alpha.yaml"));

    // Changed in its file only.
    let r = m
        .api
        .post("/update_project/basic/", &json!({"id": "alpha", "rsync_host": "x.example.org"}), &Auth::root())
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.body["message"].as_str().unwrap().contains("alpha.yaml"), "{}", r.text);
    assert_eq!(
        m.api.post("/remove_project/", &json!({"id": "beta"}), &Auth::root()).await.status,
        StatusCode::CONFLICT
    );
    // A project made through the API is the API's.
    let r = m
        .api
        .post(
            "/add_project/",
            &json!({"project": "gamma", "rsync_host": "g.example.org",
                                                "rsync_module": "g", "dest": "gamma"}),
            &Auth::root(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // Edited, removed, added: a reload applies exactly that, and leaves gamma alone.
    write(files.path(), "beta.yaml", "b2.example.org");
    std::fs::remove_file(files.path().join("alpha.yaml")).unwrap();
    write(files.path(), "delta.yaml", "d.example.org");
    let r = m.api.post("/reload", &json!({}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let mut changes: Vec<String> = r.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["action"].as_str().unwrap(), c["key"].as_str().unwrap()))
        .collect();
    changes.sort();
    assert_eq!(changes, ["create delta", "remove alpha", "update beta"]);
    assert_eq!(ids(&m.api).await, ["beta", "delta", "gamma"]);
    assert_eq!(m.api.get("/projects/beta", &Auth::root()).await.body["rsync_host"], json!("b2.example.org"));
    let history = m.api.get("/projects/beta/history", &Auth::root()).await.body;
    assert_eq!(history["versions"][0]["comment"], json!("projects_dir reload"));

    // A broken file: refused, named, nothing changed.
    std::fs::write(files.path().join("broken.yaml"), "id: broken\nproject: broken\nrsync_host: -e\n").unwrap();
    let r = m.api.post("/reload", &json!({}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.body["field"].as_str().unwrap().contains("broken.yaml"), "{}", r.text);
    assert_eq!(ids(&m.api).await, ["beta", "delta", "gamma"]);
    std::fs::remove_file(files.path().join("broken.yaml")).unwrap();

    // mirrorctl reload: nothing left to change.
    let out = tokio::process::Command::new(binary("mirrorctl"))
        .arg("reload")
        .env("MIRRORCTL_URL", &m.api.base)
        .env("MIRRORCTL_USER", "root")
        .env("MIRRORCTL_PASSWORD", ROOT_PASSWORD)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no differences"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn sighup_reloads_the_files() {
    let files = tempfile::tempdir().unwrap();
    write(files.path(), "alpha.yaml", "a.example.org");
    let work = tempfile::tempdir().unwrap();
    let dir = files.path().to_str().unwrap().to_owned();
    let m = MasterProcess::start(
        work.path(),
        &[
            ("MIRROR_MASTER__PROJECTS_DIR", dir.as_str()),
            ("MIRROR_ROOT_PASSWORD", ROOT_PASSWORD),
            ("MIRROR_MASTER__CONFINE", "off"),
        ],
    )
    .await;
    assert_eq!(ids(&m.api).await, ["alpha"]);
    write(files.path(), "alpha.yaml", "a2.example.org");
    let pid = m.child.id().unwrap();
    let killed = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    wait_for(10, "the edited file applied", || async {
        let p = m.api.get("/projects/alpha", &Auth::root()).await.body;
        (p["rsync_host"] == json!("a2.example.org")).then_some(())
    })
    .await;
    m.kill().await;
}
