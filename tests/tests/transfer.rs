//! Configuration between two real masters (resourcesync): export, import, diff, prune, copy, and
//! an import that fails as a whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use mirror_tests::{Auth, ROOT_PASSWORD, TestMaster, binary};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn ctl(url: &str, args: &[&str]) -> Out {
    ctl_in(url, None, args, None).await
}

/// `mirrorctl` with `HOME` (its saved tokens) and stdin.
async fn ctl_in(url: &str, home: Option<&std::path::Path>, args: &[&str], stdin: Option<&str>) -> Out {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(binary("mirrorctl"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MIRRORCTL_URL", url)
        .env("MIRRORCTL_USER", "root")
        .env("MIRRORCTL_PASSWORD", ROOT_PASSWORD)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(h) = home {
        cmd.env("HOME", h);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn add(m: &TestMaster, body: Value) {
    let r = m.api.post("/add_project/", &body, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

fn project(id: &str, extra: Value) -> Value {
    let mut p = json!({"project": id, "rsync_host": "rsync.example.org", "rsync_module": id, "dest": id});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

async fn listed(m: &TestMaster) -> Vec<String> {
    let all = m.api.get("/list_projects/", &Auth::root()).await.body;
    all.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect()
}

fn yaml_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn export_import_diff_prune_and_copy_between_two_masters() {
    let a = TestMaster::start().await;
    let b = TestMaster::start().await;
    add(
        &a,
        project(
            "debian",
            json!({"rsync_password": "upstream-s3cret", "cron_options": {"minute": "*/30"},
                                        "rsync_options": {"basic": ["--no-motd"], "delete": "--delete-after"}}),
        ),
    )
    .await;
    add(&a, project("fedora", json!({"enabled": false, "max_age_secs": 7200}))).await;
    add(&a, project("ubuntu", json!({"rsync_port": 8873, "timeout_secs": 600}))).await;
    for port in [7101, 7102] {
        let r = a.api.post("/add_slave/", &json!({"hostname": "127.0.0.1", "port": port}), &Auth::root()).await;
        assert!(r.status.is_success(), "{}", r.text);
    }

    // A directory of one file per resource; no password or token in it.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("config");
    let dir_arg = format!("{}/", dir.display());
    let out = ctl(&a.api.base, &["export", &dir_arg]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(yaml_files(&dir.join("projects")), ["debian.yaml", "fedora.yaml", "ubuntu.yaml"]);
    assert_eq!(yaml_files(&dir.join("slaves")), ["127.0.0.1_7101.yaml", "127.0.0.1_7102.yaml"]);
    let debian = std::fs::read_to_string(dir.join("projects/debian.yaml")).unwrap();
    assert!(debian.contains("rsync_password: set") && !debian.contains("upstream-s3cret"), "{debian}");
    assert!(debian.contains("dest: debian"), "relative to the mirror root: {debian}");

    // Into the second master: everything created; then nothing differs.
    let out = ctl(&b.api.base, &["import", dir.to_str().unwrap(), "-m", "from a"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().filter(|l| l.starts_with("+ ")).count(), 5, "{}", out.stdout);
    assert_eq!(out.stdout.lines().filter(|l| l.starts_with("token of slave")).count(), 2, "{}", out.stdout);
    assert_eq!(listed(&b).await, ["debian", "fedora", "ubuntu"]);
    let diff = ctl(&b.api.base, &["diff", dir.to_str().unwrap()]).await;
    assert_eq!((diff.code, diff.stdout.as_str()), (0, ""), "{}", diff.stderr);
    assert!(diff.stderr.contains("no differences"), "{}", diff.stderr);
    let fedora = b.api.get("/projects/fedora", &Auth::root()).await.body;
    assert_eq!((fedora["enabled"].clone(), fedora["max_age_secs"].clone()), (json!(false), json!(7200)));
    let history = b.api.get("/projects/fedora/history", &Auth::root()).await.body;
    assert_eq!(
        (history["versions"][0]["author"].clone(), history["versions"][0]["comment"].clone()),
        (json!("root"), json!("from a"))
    );

    // A file gone, one edited: prune removes exactly the gone one; the dry run changes nothing.
    std::fs::remove_file(dir.join("projects/ubuntu.yaml")).unwrap();
    let edited = std::fs::read_to_string(dir.join("projects/fedora.yaml"))
        .unwrap()
        .replace("rsync.example.org", "mirror.example.net");
    std::fs::write(dir.join("projects/fedora.yaml"), edited).unwrap();
    let dry = ctl(&b.api.base, &["import", dir.to_str().unwrap(), "--prune", "--dry-run"]).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let mut lines: Vec<&str> = dry.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["- project ubuntu", "~ project fedora (rsync_host)"], "{}", dry.stdout);
    assert_eq!(listed(&b).await, ["debian", "fedora", "ubuntu"], "a dry run changes nothing");
    let real = ctl(&b.api.base, &["import", dir.to_str().unwrap(), "--prune"]).await;
    assert_eq!(real.code, 0, "{}", real.stderr);
    assert_eq!(listed(&b).await, ["debian", "fedora"]);
    assert_eq!(b.api.get("/projects/fedora", &Auth::root()).await.body["rsync_host"], json!("mirror.example.net"));
    assert_eq!(b.api.get("/projects/ubuntu/history", &Auth::root()).await.body["versions"][0]["removed"], json!(true));

    // A document that gives another password: a version saying so, without the password.
    let mut debian = a.api.get("/export", &Auth::root()).await.body["projects"][0].clone();
    assert_eq!((debian["id"].clone(), debian["rsync_password"].clone()), (json!("debian"), json!("set")));
    debian["rsync_password"] = json!("rotated-s3cret");
    let r = a.api.post("/import?comment=rotated", &json!({"projects": [debian]}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["changes"],
        json!([{"kind": "project", "key": "debian", "action": "update", "fields": ["rsync_password"]}])
    );
    let newest = &a.api.get("/projects/debian/history", &Auth::root()).await.body["versions"][0];
    assert_eq!(newest["comment"], json!("rsync_password changed: rotated"), "{newest}");

    // One bad resource: the whole import is refused, naming it; nothing applied.
    let doc = json!({"projects": [
        {"id": "new1", "project": "new1", "rsync_host": "h.example.org", "rsync_module": "m", "dest": "new1"},
        {"id": "bad", "project": "bad", "rsync_host": "h.example.org", "rsync_module": "m", "dest": "../../etc"},
    ]});
    let r = b.api.post("/import", &doc, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.body["field"], json!("projects[1].dest"), "{}", r.text);
    assert_eq!(listed(&b).await, ["debian", "fedora"]);
    assert_eq!(b.api.post("/import", &doc, &Auth::user()).await.status, StatusCode::FORBIDDEN);
    // A tree inside another project's: refused, naming both.
    let inner = json!({"projects": [{"id": "inner", "project": "inner", "rsync_host": "h.example.org",
                                     "rsync_module": "m", "dest": "debian/inner"}]});
    let r = b.api.post("/import", &inner, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.body["message"].as_str().unwrap().contains("'debian'"), "{}", r.text);

    // Users: exported without their passwords; a new one needs a password; an import never removes
    // the user doing it.
    assert_eq!(yaml_files(&dir.join("users")), ["alice.yaml", "root.yaml"]);
    assert!(std::fs::read_to_string(dir.join("users/alice.yaml")).unwrap().contains("password: set"));
    let r = b
        .api
        .post("/import", &json!({"users": [{"username": "carol", "role": "user", "password": "set"}]}), &Auth::root())
        .await;
    assert_eq!(
        (r.status, r.body["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("users[0].password")),
        "{}",
        r.text
    );
    let r = b
        .api
        .post(
            "/import",
            &json!({"users": [{"username": "carol", "role": "user", "password": "carol-pw-1"}]}),
            &Auth::root(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(b.api.get("/runs/", &Auth::basic("carol", "carol-pw-1")).await.status, StatusCode::OK);
    let r = b
        .api
        .post("/import?prune=true", &json!({"users": [{"username": "carol", "role": "root"}]}), &Auth::root())
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.body["message"].as_str().unwrap().contains("its own user 'root'"), "{}", r.text);

    // Copy brings the second master back to what the first has: then nothing differs. The
    // environment's credentials are the first master's only: the second is logged in to first.
    let home = tempfile::tempdir().unwrap();
    let copy = ["copy", "--from", &a.api.base, "--to", &b.api.base, "--prune"];
    let out = ctl_in(&a.api.base, Some(home.path()), &copy, None).await;
    assert_eq!(out.code, 3, "the first master's credentials are not sent to the second: {}", out.stderr);
    let login = ["--url", &b.api.base, "login", "--user", "root", "--password-stdin"];
    let out = ctl_in(&a.api.base, Some(home.path()), &login, Some(&format!("{ROOT_PASSWORD}\n"))).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = ctl_in(&a.api.base, Some(home.path()), &copy, None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let exported = a.api.get("/export?format=yaml", &Auth::root()).await;
    assert_eq!(exported.content_type, "application/yaml");
    let file = work.path().join("a.yaml");
    std::fs::write(&file, &exported.text).unwrap();
    let diff = ctl(&b.api.base, &["diff", file.to_str().unwrap()]).await;
    assert_eq!((diff.code, diff.stdout.as_str()), (0, ""), "{}", diff.stderr);
    assert_eq!(listed(&b).await, ["debian", "fedora", "ubuntu"]);
}
