//! `depends_on`: a project runs after each successful run of the projects it names, and those
//! references are kept whole by every write and by imports (dependency order, no reference to
//! nothing, no cycle), against a real rsync daemon and real masters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, generate_tree, snapshot};
use mirror_tests::{Api, Auth, TestMaster, finished_run, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn project(name: &str, port: u16, module: &str, extra: Value) -> Value {
    let mut p = json!({
        "project": name, "rsync_host": "127.0.0.1", "rsync_port": port, "rsync_module": module,
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": name,
        "rsync_options": {"basic": ["--no-motd"]},
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

async fn runs_of(api: &Api, id: &str) -> Vec<Value> {
    api.get(&format!("/runs/?project={id}"), &Auth::root()).await.body.as_array().cloned().unwrap_or_default()
}

fn refused(r: &mirror_tests::Reply, status: StatusCode, field: &str, words: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    if status == StatusCode::BAD_REQUEST {
        assert_eq!(r.body["field"], json!(field), "{}", r.text);
    }
    assert!(r.text.contains(words), "{words:?} not in {}", r.text);
}

#[tokio::test]
async fn a_success_runs_what_depends_on_it_and_references_stay_whole() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 20);
    let m = TestMaster::start().await;
    let root = Auth::root();
    let add = |body: Value| {
        let api = &m.api;
        async move { api.post("/add_project/", &body, &Auth::root()).await }
    };
    assert_eq!(add(project("base", upstream.port, "data", json!({}))).await.status, StatusCode::CREATED);
    let r = add(project("derived", upstream.port, "data/dir0", json!({"depends_on": ["base"]}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = add(project("off", upstream.port, "data/dir1", json!({"depends_on": ["base"], "enabled": false}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // Named nothing, itself, twice, a local tree: refused, naming the entry.
    let r = add(project("x", upstream.port, "data", json!({"depends_on": ["base", "nothing"]}))).await;
    refused(&r, StatusCode::BAD_REQUEST, "depends_on[1]", "no project with id 'nothing'");
    let r = add(project("x", upstream.port, "data", json!({"depends_on": ["x"]}))).await;
    refused(&r, StatusCode::BAD_REQUEST, "depends_on[0]", "itself");
    let r = add(project("x", upstream.port, "data", json!({"depends_on": ["base", "base"]}))).await;
    refused(&r, StatusCode::BAD_REQUEST, "depends_on[1]", "twice");
    let local = json!({"project": "tree", "dest": "tree"});
    assert_eq!(add(local).await.status, StatusCode::CREATED);
    let r = add(project("x", upstream.port, "data", json!({"depends_on": ["tree"]}))).await;
    refused(&r, StatusCode::BAD_REQUEST, "depends_on[0]", "local source");
    // A cycle through an update: refused with its path; nothing changed.
    let r = m.api.post("/update_project/basic/", &json!({"id": "base", "depends_on": ["derived"]}), &root).await;
    refused(&r, StatusCode::BAD_REQUEST, "depends_on", "base -> derived -> base");
    assert!(m.api.get("/projects/base", &root).await.body.get("depends_on").is_none());
    // What others depend on keeps its id.
    let r = m.api.post("/remove_project/", &json!({"id": "base"}), &root).await;
    refused(&r, StatusCode::CONFLICT, "id", "'derived', 'off' depend on 'base'");
    let r = m.api.post("/update_project/basic/", &json!({"id": "base", "project": "base2"}), &root).await;
    refused(&r, StatusCode::CONFLICT, "id", "renaming");
    assert_eq!(m.api.get("/projects/base", &root).await.status, StatusCode::OK);

    // A run of base that succeeds is followed by one of derived (not of the disabled one).
    let r = m.api.post("/syncup/?id=base", &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let base_run = finished_run(&m.api, r.body["run_id"].as_i64().unwrap(), 60).await;
    assert_eq!(base_run["status"], json!("success"), "{base_run}");
    let followed = wait_for(60, "a run of derived after base's success", || async {
        runs_of(&m.api, "derived").await.into_iter().find(|r| r["status"] == json!("success"))
    })
    .await;
    assert_eq!(followed["trigger"], json!("dependency"), "{followed}");
    assert_eq!(snapshot(&m.mirror_root().join("derived")), snapshot(&upstream.data().join("dir0")));
    assert!(runs_of(&m.api, "off").await.is_empty());
    let detail = m.api.get("/projects/derived", &root).await.body;
    assert_eq!(detail["depends_on"], json!(["base"]));

    // A failed run of base starts nothing; the next success starts one more.
    let set_module = |module: &'static str| {
        let api = &m.api;
        async move {
            // A new module needs its password again (a password stays with its upstream).
            let body = json!({"id": "base", "rsync_module": module, "rsync_password": UPSTREAM_PASSWORD});
            let r = api.post("/update_project/basic/", &body, &Auth::root()).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
    };
    let base_once = || {
        let api = &m.api;
        async move {
            let r = api.post("/syncup/?id=base", &json!({}), &Auth::user()).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
            finished_run(api, r.body["run_id"].as_i64().unwrap(), 60).await["status"].clone()
        }
    };
    set_module("nope").await;
    assert_eq!(base_once().await, json!("failed"));
    set_module("data").await;
    // A change, so that base's success makes a new generation (an unchanged one starts nothing).
    std::fs::write(upstream.data().join("second.txt"), "two\n").unwrap();
    assert_eq!(base_once().await, json!("success"));
    wait_for(60, "a second run of derived", || async {
        let runs = runs_of(&m.api, "derived").await;
        (runs.len() >= 2 && runs.iter().all(|r| r["status"] == json!("success"))).then_some(())
    })
    .await;
    let runs = runs_of(&m.api, "derived").await;
    assert_eq!(runs.len(), 2, "one run per success of base, none for its failure: {runs:?}");

    // Removing the dependent first, then what it depended on: allowed.
    for id in ["derived", "off", "base"] {
        let r = m.api.post("/remove_project/", &json!({"id": id}), &root).await;
        assert_eq!(r.status, StatusCode::OK, "{id}: {}", r.text);
    }
}

#[tokio::test]
async fn imports_apply_in_dependency_order_and_refuse_cycles_and_references_to_nothing() {
    let m = TestMaster::start().await;
    let root = Auth::root();
    let p = |id: &str, deps: &[&str]| {
        json!({"id": id, "project": id, "rsync_host": "rsync.example.org", "rsync_module": id, "dest": id,
               "depends_on": deps})
    };
    let import = |doc: Value, query: &'static str| {
        let api = &m.api;
        async move { api.post(&format!("/import?{query}"), &doc, &Auth::root()).await }
    };

    // Named before what it depends on, in the document: applied after it.
    let doc = json!({"projects": [p("app", &["lib"]), p("lib", &["core"]), p("core", &[])]});
    let r = import(doc.clone(), "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let order: Vec<&str> = r.body["changes"].as_array().unwrap().iter().map(|c| c["key"].as_str().unwrap()).collect();
    assert_eq!(order, ["core", "lib", "app"]);
    // The export carries the references, and importing it again changes nothing.
    let exported = m.api.get("/export", &root).await.body;
    let app = exported["projects"].as_array().unwrap().iter().find(|p| p["id"] == json!("app")).unwrap().clone();
    assert_eq!(app["depends_on"], json!(["lib"]));
    let r = import(exported, "").await;
    assert_eq!(r.body["changes"], json!([]), "{}", r.text);

    // A cycle, a reference to nothing: refused whole, naming the project; nothing written.
    let cycle = json!({"projects": [p("core", &["app"]), p("lib", &["core"]), p("app", &["lib"])]});
    let r = import(cycle, "").await;
    refused(&r, StatusCode::BAD_REQUEST, "projects[2].depends_on", "a cycle: app -> lib -> core -> app");
    assert!(m.api.get("/projects/core", &root).await.body.get("depends_on").is_none());
    let dangling = json!({"projects": [p("new", &[]), p("other", &["new", "ghost"])]});
    let r = import(dangling, "").await;
    refused(&r, StatusCode::BAD_REQUEST, "projects[1].depends_on[1]", "no project 'ghost'");
    assert_eq!(m.api.get("/projects/new", &root).await.status, StatusCode::NOT_FOUND);
    // Pruning what a kept project depends on: refused, naming it.
    let r = import(json!({"projects": [p("app", &["lib"]), p("lib", &["core"])]}), "prune=true").await;
    refused(&r, StatusCode::BAD_REQUEST, "projects[1].depends_on[0]", "'core' is removed by this import");
    // Pruning all of them: the dependents go first.
    let r = import(json!({"projects": []}), "prune=true").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let order: Vec<&str> = r.body["changes"].as_array().unwrap().iter().map(|c| c["key"].as_str().unwrap()).collect();
    assert_eq!(order, ["app", "lib", "core"]);
}
