//! Several upstreams: a run uses the first that answers and is not staler than the others, against
//! real rsync daemons (one down, one refusing, one staler) and a real master.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, free_port, generate_tree, snapshot};
use mirror_tests::{Api, Auth, TestMaster, finished_run};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn entry(port: u16, module: &str) -> Value {
    json!({"host": "127.0.0.1", "port": port, "module": module, "user": UPSTREAM_USER, "password": UPSTREAM_PASSWORD})
}

fn project(name: &str, upstreams: Vec<Value>, extra: Value) -> Value {
    let mut p = json!({
        "project": name, "dest": name, "upstreams": upstreams,
        "rsync_options": {"basic": ["--no-motd"], "delete": "--delete"},
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

async fn run(api: &Api, id: &str) -> Value {
    let r = api.post(&format!("/syncup/?id={id}"), &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    finished_run(api, r.body["run_id"].as_i64().unwrap(), 60).await
}

#[tokio::test]
async fn a_run_moves_past_a_dead_a_refusing_and_a_staler_upstream() {
    let (one, two) = (Upstream::start().await, Upstream::start().await);
    generate_tree(&one.data(), 10);
    generate_tree(&two.data(), 12);
    std::fs::write(two.data().join("only-on-two.txt"), b"two").unwrap();
    let dead = free_port();
    let m = TestMaster::start().await;
    let add = |body: Value| {
        let api = &m.api;
        async move { api.post("/add_project/", &body, &Auth::root()).await }
    };

    // Refused: both forms at once, an empty list, an upstream twice.
    let mut both = project("x", vec![entry(one.port, "data")], json!({}));
    both["rsync_host"] = json!("127.0.0.1");
    let r = add(both).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!("upstreams")), "{}", r.text);
    let r = add(project("x", vec![], json!({}))).await;
    assert_eq!(r.body["field"], json!("upstreams"), "{}", r.text);
    let r =
        add(project("x", vec![entry(one.port, "data"), entry(two.port, "data"), entry(two.port, "data")], json!({})))
            .await;
    assert_eq!(r.body["field"], json!("upstreams[2]"), "{}", r.text);

    // The first is down (nothing listens), the second refuses (no such module): the third serves.
    let list = vec![entry(dead, "data"), entry(one.port, "nothing"), entry(two.port, "data")];
    let r = add(project("failover", list, json!({}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let done = run(&m.api, "failover").await;
    assert_eq!(done["status"], json!("success"), "{done}");
    assert_eq!(done["upstream"], json!(format!("rsync://127.0.0.1:{}/data/", two.port)), "{done}");
    assert_eq!(snapshot(&m.mirror_root().join("failover")), snapshot(&two.data()));
    let page = m.api.get("/status/failover", &Auth::None).await.text;
    assert!(page.contains(&format!("rsync://127.0.0.1:{}/data/", two.port)), "the status page names it");

    // Listed with every upstream, passwords as set or not; the 2014 fields are the first.
    let view = m.api.get("/projects/failover", &Auth::root()).await.body;
    assert_eq!(view["upstreams"].as_array().unwrap().len(), 3, "{view}");
    assert!(view["upstreams"].as_array().unwrap().iter().all(|u| u["password_set"] == json!(true)), "{view}");
    assert_eq!((view["rsync_port"].clone(), view["rsync_module"].clone()), (json!(dead), json!("data")));
    assert!(!view.to_string().contains(UPSTREAM_PASSWORD));
    // Exported as a list, each password as "set"; imported back unchanged (the passwords kept).
    let doc = m.api.get("/export", &Auth::root()).await.body;
    let exported = doc["projects"].as_array().unwrap().iter().find(|p| p["id"] == json!("failover")).unwrap().clone();
    assert_eq!(exported["upstreams"][2]["password"], json!("set"), "{exported}");
    assert!(exported.get("rsync_host").is_none(), "{exported}");
    let r = m.api.post("/import", &json!({"projects": [exported]}), &Auth::root()).await;
    assert_eq!((r.status, r.body["changes"].clone()), (StatusCode::OK, json!([])), "{}", r.text);
    let again = run(&m.api, "failover").await;
    assert_eq!(again["status"], json!("success"), "the passwords were kept: {again}");

    // Both answer, but the first serves an older tree than the second (by the probe): the second
    // serves; once the first has caught up, the first again.
    std::fs::write(one.data().join("lastupdate"), b"1790000000\n").unwrap();
    std::fs::write(two.data().join("lastupdate"), b"1790000600\n").unwrap();
    let list = vec![entry(one.port, "data"), entry(two.port, "data")];
    let r = add(project("fresh", list, json!({"probe": "lastupdate"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let done = run(&m.api, "fresh").await;
    assert_eq!(done["upstream"], json!(format!("rsync://127.0.0.1:{}/data/", two.port)), "{done}");
    assert!(m.mirror_root().join("fresh/only-on-two.txt").exists());
    std::fs::write(one.data().join("lastupdate"), b"1790000900\n").unwrap();
    let done = run(&m.api, "fresh").await;
    assert_eq!(done["upstream"], json!(format!("rsync://127.0.0.1:{}/data/", one.port)), "{done}");
    assert!(!m.mirror_root().join("fresh/only-on-two.txt").exists(), "the first's tree, deletions included");

    // Every upstream down: the run fails, naming the last one tried.
    let list = vec![entry(dead, "data"), entry(free_port(), "data")];
    let r = add(project("nowhere", list, json!({}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let done = run(&m.api, "nowhere").await;
    assert_eq!(done["status"], json!("failed"), "{done}");
}
