//! Every change to a project is a version (Rainer): authors and comments, optimistic
//! concurrency, history across a restart, revert, and a removed project brought back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mirror_tests::{Auth, TestMaster};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn project(name: &str) -> Value {
    json!({
        "project": name, "rsync_host": "rsync.example.org", "rsync_module": "debian", "dest": name,
        "rsync_password": "upstream-secret", "cron_options": {"minute": "*/30"},
        "rsync_options": {"basic": ["--no-motd"]}, "comment": "first mirror",
    })
}

async fn version_of(m: &TestMaster, id: &str) -> i64 {
    m.api.get(&format!("/projects/{id}"), &Auth::root()).await.body["version"].as_i64().unwrap()
}

#[tokio::test]
async fn changes_are_versions_with_authors_concurrency_revert_and_tombstones() {
    let m = TestMaster::start().await;
    let r = m.api.post("/add_project/", &project("deb"), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(version_of(&m, "deb").await, 1);

    // Based on the current version: taken. Based on an old one: 409 in Rainer's shape.
    let update = |version: i64, host: &str| json!({"id": "deb", "rsync_host": host, "version": version, "comment": format!("to {host}")});
    let r = m.api.post("/update_project/basic/", &update(1, "a.example.org"), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = m.api.post("/update_project/basic/", &update(1, "b.example.org"), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["conflict"], json!({"key": "deb", "expected_version": 2, "provided_version": 1}), "{}", r.text);

    // Two clients from the same version at once: exactly one wins.
    let (to_c, to_d, root, user) = (update(2, "c.example.org"), update(2, "d.example.org"), Auth::root(), Auth::user());
    let (a, b) = tokio::join!(
        m.api.post("/update_project/basic/", &to_c, &root),
        m.api.post("/update_project/basic/", &to_d, &user),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "{} / {}", a.text, b.text);
    // Without a version, as in 2014: still taken. A write that changes nothing is no version.
    let r = m.api.post("/disable_project/?id=deb", &json!({}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = m.api.post("/disable_project/?id=deb", &json!({}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(version_of(&m, "deb").await, 4);
    // If-Match and X-Comment do the same as the body's fields.
    let stale = reqwest::Client::new()
        .post(format!("{}/enable_project/?id=deb", m.api.base))
        .basic_auth("root", Some(mirror_tests::ROOT_PASSWORD))
        .header("If-Match", "\"3\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    let fresh = reqwest::Client::new()
        .post(format!("{}/enable_project/?id=deb", m.api.base))
        .basic_auth("root", Some(mirror_tests::ROOT_PASSWORD))
        .header("If-Match", "4")
        .header("X-Comment", "back on")
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);

    let history = m.api.get("/projects/deb/history", &Auth::root()).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.text);
    let versions = history.body["versions"].as_array().unwrap().clone();
    let summary: Vec<(i64, String, String)> = versions
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["author"].as_str().unwrap().to_owned(),
                v["comment"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(summary[0], (5, "root".into(), "back on".into()));
    assert_eq!(summary[4], (1, "root".into(), "first mirror".into()));
    assert_eq!(summary[3], (2, "alice".into(), "to a.example.org".into()));
    // The password stays with its upstream: a new host drops it.
    assert_eq!(versions[3]["changed"], json!(["rsync_host", "rsync_password_set"]));
    assert_eq!(versions[0]["changed"], json!(["enabled"]));
    assert!(!history.text.contains("upstream-secret"), "{}", history.text);

    // Revert to version 1: a new version with exactly its configuration. Its upstream is not the
    // current one, so its password must be given again (the project has none since the move).
    let r = m.api.post("/projects/deb/revert", &json!({"version": 1, "comment": "undo"}), &Auth::root()).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!("rsync_password")), "{}", r.text);
    let body = json!({"version": 1, "comment": "undo", "rsync_password": "upstream-secret"});
    let r = m.api.post("/projects/deb/revert", &body, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v1 = m.api.get("/projects/deb/versions/1", &Auth::root()).await.body;
    let v6 = m.api.get("/projects/deb/versions/6", &Auth::root()).await.body;
    assert_eq!(v1["config"], v6["config"]);
    assert_eq!(v6["comment"], "undo");
    assert_eq!(v6["config"]["rsync_password_set"], json!(true));
    assert!(v6["config"].get("rsync_password").is_none());
    let now = m.api.get("/projects/deb", &Auth::root()).await.body;
    assert_eq!((now["rsync_host"].clone(), now["enabled"].clone()), (json!("rsync.example.org"), json!(true)));

    // Removed: a tombstone; the history survives a restart; the project comes back from it.
    let r = m.api.post("/remove_project/", &json!({"id": "deb", "comment": "retired"}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let settings = m.settings.clone();
    let dir = m.stop().await;
    let m = TestMaster::start_with(dir, settings).await;
    let history = m.api.get("/projects/deb/history", &Auth::root()).await.body;
    assert_eq!(history["versions"][0]["removed"], json!(true));
    assert_eq!(history["versions"][0]["comment"], json!("retired"));
    assert_eq!(m.api.get("/projects/deb", &Auth::root()).await.status, StatusCode::NOT_FOUND);
    let r = m.api.post("/projects/deb/revert", &json!({"version": 7}), &Auth::root()).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!("version")), "{}", r.text);
    // Version 6 had a password, which no version keeps: it must be given to bring the project back.
    let r = m.api.post("/projects/deb/revert", &json!({"version": 6}), &Auth::root()).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!("rsync_password")), "{}", r.text);
    let body = json!({"version": 6, "rsync_password": "upstream-secret-2"});
    let r = m.api.post("/projects/deb/revert", &body, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(version_of(&m, "deb").await, 8);
    let v8 = m.api.get("/projects/deb/versions/8", &Auth::root()).await.body;
    assert_eq!(v8["config"], v1["config"]);
    // A password replaced by another is a version, said in its comment; no version holds either.
    let r = m
        .api
        .post("/update_project/basic/", &json!({"id": "deb", "rsync_password": "third-secret"}), &Auth::root())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let newest = &m.api.get("/projects/deb/history", &Auth::root()).await.body["versions"][0];
    assert_eq!((newest["version"].clone(), newest["comment"].clone()), (json!(9), json!("rsync_password changed")));
    let settings = m.settings.clone();
    let dir = m.stop().await;
    let db = mirror_master::db::open(&settings.database_location().await.unwrap()).await.unwrap();
    let contents = mirror_master::db::commits::all_contents(&db).await.unwrap();
    assert_eq!(contents.len(), 2 + 9, "two users, nine versions of deb: {contents:?}");
    for c in contents.iter().flatten() {
        assert!(!c.contains("secret"), "a version holds a password: {c}");
    }
    drop(db);
    let m = TestMaster::start_with(dir, settings).await;
    // Not for the public.
    assert_eq!(m.api.get("/projects/deb/history", &Auth::None).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn users_and_slaves_have_versions_too_without_their_secrets() {
    let m = TestMaster::start().await;
    let root = Auth::root();
    let r = m.api.post("/create_api_user/", &json!({"username": "bob", "password": "bob-password-1"}), &root).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r =
        m.api.post("/update_api_user/", &json!({"username": "bob", "role": "root", "comment": "on call"}), &root).await;
    assert!(r.status.is_success(), "{}", r.text);
    // Based on an old version: refused, nothing changed.
    let stale = json!({"username": "bob", "role": "user", "version": 1});
    let r = m.api.post("/update_api_user/", &stale, &root).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["conflict"], json!({"key": "bob", "expected_version": 2, "provided_version": 1}));
    let r = m
        .api
        .post("/update_api_user/", &json!({"username": "bob", "password": "bob-password-2", "version": 2}), &root)
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = m.api.post("/remove_api_user/", &json!({"username": "bob"}), &root).await;
    assert!(r.status.is_success(), "{}", r.text);
    let h = m.api.get("/users/bob/history", &root).await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.text);
    let seen: Vec<(i64, Value, Value, bool)> = h.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (v["version"].as_i64().unwrap(), v["comment"].clone(), v["changed"].clone(), v["removed"] == json!(true))
        })
        .collect();
    assert_eq!(
        seen,
        [
            (4, Value::Null, json!(["role", "username"]), true),
            (3, json!("password changed"), json!([]), false),
            (2, json!("on call"), json!(["role"]), false),
            (1, Value::Null, json!(["role", "username"]), false),
        ]
    );
    assert!(!h.text.contains("bob-password"), "{}", h.text);

    let r = m.api.post("/add_slave/", &json!({"hostname": "127.0.0.1", "port": 7199}), &root).await;
    assert!(r.status.is_success(), "{}", r.text);
    let token = r.body["token"].as_str().unwrap().to_owned();
    let r = m.api.post("/rotate_slave_token/", &json!({"hostname": "127.0.0.1", "port": 7199}), &root).await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = m.api.post("/remove_slave/", &json!({"hostname": "127.0.0.1", "port": 7199}), &root).await;
    assert!(r.status.is_success(), "{}", r.text);
    let h = m.api.get("/slaves/127.0.0.1:7199/history", &root).await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.text);
    let comments: Vec<Value> = h.body["versions"].as_array().unwrap().iter().map(|v| v["comment"].clone()).collect();
    assert_eq!(comments, [Value::Null, json!("token rotated"), Value::Null]);
    assert!(!h.text.contains(&token), "{}", h.text);
    assert_eq!(m.api.get("/slaves/127.0.0.1:7199/history", &Auth::user()).await.status, StatusCode::FORBIDDEN);
}
