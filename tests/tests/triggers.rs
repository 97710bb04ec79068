//! Pushes from upstreams: `POST /trigger/{project}` with the project's own trigger token, against a
//! real rsync daemon and a real master.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, generate_tree, snapshot};
use mirror_tests::{Api, Auth, TestMaster, finished_run};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn project(name: &str, port: u16, extra: Value) -> Value {
    let mut p = json!({
        "project": name, "rsync_host": "127.0.0.1", "rsync_port": port, "rsync_module": "data",
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": name,
        "rsync_options": {"basic": ["--no-motd"], "delete": "--delete"},
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

async fn issue(api: &Api, id: &str, auth: &Auth) -> mirror_tests::Reply {
    api.post(&format!("/projects/{id}/trigger_token"), &json!({}), auth).await
}

fn refused(r: &mirror_tests::Reply, status: StatusCode, words: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert!(r.text.contains(words), "{words:?} not in {}", r.text);
}

#[tokio::test]
async fn a_push_with_the_projects_token_starts_a_run_and_nothing_else_does() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 20);
    let m = TestMaster::start().await;
    let r = m.api.post("/add_project/", &project("pushed", upstream.port, json!({})), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = m.api.post("/add_project/", &project("other", upstream.port, json!({})), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // No token issued yet: nothing starts a run, whatever is sent; an unknown project answers the same.
    refused(&m.api.post("/trigger/pushed", &json!({}), &Auth::None).await, StatusCode::UNAUTHORIZED, "trigger token");
    let guess = Auth::Bearer("x".repeat(43));
    refused(&m.api.post("/trigger/pushed", &json!({}), &guess).await, StatusCode::UNAUTHORIZED, "no valid trigger");
    refused(&m.api.post("/trigger/nothing", &json!({}), &guess).await, StatusCode::UNAUTHORIZED, "no valid trigger");
    // A user's own login is no trigger token, and issuing one needs a login.
    refused(&m.api.post("/trigger/pushed", &json!({}), &Auth::user()).await, StatusCode::UNAUTHORIZED, "trigger");
    refused(&issue(&m.api, "pushed", &Auth::None).await, StatusCode::UNAUTHORIZED, "");
    refused(&issue(&m.api, "nothing", &Auth::user()).await, StatusCode::NOT_FOUND, "no project with id 'nothing'");

    let r = issue(&m.api, "pushed", &Auth::user()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!((r.body["method"].clone(), r.body["id"].clone()), (json!("trigger_token"), json!("pushed")));
    let token = r.body["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 43, "{token}");

    // The right token as a Bearer token: a run of that project, with the trigger `push`.
    let bearer = Auth::Bearer(token.clone());
    let r = m.api.post("/trigger/pushed", &json!({"ref": "refs/heads/main"}), &bearer).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!((r.body["method"].clone(), r.body["id"].clone()), (json!("trigger"), json!("pushed")));
    let run = finished_run(&m.api, r.body["run_id"].as_i64().unwrap(), 60).await;
    assert_eq!((run["status"].clone(), run["trigger"].clone()), (json!("success"), json!("push")), "{run}");
    assert_eq!(snapshot(&m.mirror_root().join("pushed")), snapshot(&upstream.data()));
    // It grants nothing else: not another project's run, not a read of a login-only resource.
    refused(&m.api.post("/trigger/other", &json!({}), &bearer).await, StatusCode::UNAUTHORIZED, "no valid trigger");
    refused(&m.api.post("/syncup/?id=pushed", &json!({}), &bearer).await, StatusCode::UNAUTHORIZED, "");
    refused(&m.api.get("/list_users/", &bearer).await, StatusCode::UNAUTHORIZED, "");

    // As `?token=`, for a service that can only call a URL.
    let r = m.api.post(&format!("/trigger/pushed?token={token}"), &json!({}), &Auth::None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    finished_run(&m.api, r.body["run_id"].as_i64().unwrap(), 60).await;

    // Rotated: the old token stops at once, the new one works.
    let fresh = issue(&m.api, "pushed", &Auth::root()).await.body["token"].as_str().unwrap().to_owned();
    assert_ne!(fresh, token);
    refused(&m.api.post("/trigger/pushed", &json!({}), &bearer).await, StatusCode::UNAUTHORIZED, "no valid trigger");
    let r = m.api.post("/trigger/pushed", &json!({}), &Auth::Bearer(fresh.clone())).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    finished_run(&m.api, r.body["run_id"].as_i64().unwrap(), 60).await;

    // The token is kept hashed: no answer of the API shows it again.
    for path in ["/projects/pushed", "/export", "/list_projects/", "/projects/pushed/history"] {
        let r = m.api.get(path, &Auth::root()).await;
        assert!(!r.text.contains(&fresh) && !r.text.contains(&token), "{path}: {}", r.text);
    }

    // A disabled project takes no push; a local tree has nothing to trigger.
    let r = m.api.post("/disable_project/?id=pushed", &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    refused(&m.api.post("/trigger/pushed", &json!({}), &Auth::Bearer(fresh)).await, StatusCode::CONFLICT, "disabled");
    let r = m.api.post("/add_project/", &json!({"project": "tree", "dest": "tree"}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    refused(&issue(&m.api, "tree", &Auth::user()).await, StatusCode::CONFLICT, "local source");
}

/// ftpsync's push over ssh: a real sshd whose `authorized_keys` forces `mirrorctl ssh-trigger`,
/// and a real `ssh` client sending what Debian's `runmirrors` sends.
#[tokio::test]
async fn ftpsyncs_ssh_push_runs_the_stages_it_names_through_a_real_sshd() {
    use std::os::unix::fs::PermissionsExt;
    let upstream = Upstream::start().await;
    // A Debian-shaped tree whose index takes about 3 s at --bwlimit=200 (KiB/s): stage 1 (no
    // indexes) is quick, stage 2 slow.
    let data = upstream.data();
    std::fs::create_dir_all(data.join("pool/main")).unwrap();
    std::fs::create_dir_all(data.join("dists/stable/main")).unwrap();
    std::fs::write(data.join("pool/main/hello.deb"), b"a package").unwrap();
    let index: Vec<u8> = (0..600 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(data.join("dists/stable/main/Packages"), index).unwrap();
    let m = TestMaster::start().await;
    let body = project(
        "debian",
        upstream.port,
        json!({"stages": {"profile": "debian"}, "rsync_options": {"basic": ["--no-motd", "--bwlimit=200"], "delete": "--delete"}}),
    );
    let r = m.api.post("/add_project/", &body, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let token = issue(&m.api, "debian", &Auth::root()).await.body["token"].as_str().unwrap().to_owned();

    let tokens = tempfile::tempdir().unwrap();
    let token_file = tokens.path().join("debian.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let command = format!(
        "{} --url {} ssh-trigger debian --archive main=debian --token-dir {}",
        mirror_tests::binary("mirrorctl").display(),
        m.api.base,
        tokens.path().display()
    );
    let sshd = mirror_tests::sshd::Sshd::start(&command).await;

    // Stage 1: the answer comes once stage 1 is done, while stage 2 still goes.
    let out = sshd.ssh("sync:archive:main sync:stage1 sync:callback").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("stage 1 done") && out.stdout.contains("sync:callback ignored"), "{out:?}");
    let runs = m.api.get("/runs/?project=debian", &Auth::root()).await.body;
    assert_eq!((runs[0]["status"].clone(), runs[0]["trigger"].clone()), (json!("running"), json!("push")), "{runs}");
    assert!(m.mirror_root().join("debian/pool/main/hello.deb").exists(), "stage 1 brought the package");
    // Stage 2: joins the run going (no second pass), and answers when it has ended.
    let out = sshd.ssh("sync:stage2").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("success"), "{out:?}");
    let runs = m.api.get("/runs/?project=debian", &Auth::root()).await.body;
    assert_eq!(runs.as_array().unwrap().len(), 1, "one run for both stages: {runs}");
    assert_eq!(snapshot(&m.mirror_root().join("debian/dists")), snapshot(&data.join("dists")));

    // sync:all: a whole run, answered at its end; an archive this mirror does not have is refused.
    let out = sshd.ssh("sync:all").await;
    assert!(out.code == 0 && out.stdout.contains("success"), "{out:?}");
    assert_eq!(m.api.get("/runs/?project=debian", &Auth::root()).await.body.as_array().unwrap().len(), 2);
    let out = sshd.ssh("sync:archive:ports sync:all").await;
    assert!(out.code != 0 && out.stderr.contains("not mirrored here"), "{out:?}");
    // A token others may read is not used; nor is a rotated one.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = sshd.ssh("sync:all").await;
    assert!(out.code != 0 && out.stderr.contains("chmod 600"), "{out:?}");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    issue(&m.api, "debian", &Auth::root()).await;
    let out = sshd.ssh("sync:all").await;
    assert!(out.code != 0 && out.stderr.contains("trigger token"), "{out:?}");
    assert_eq!(m.api.get("/runs/?project=debian", &Auth::root()).await.body.as_array().unwrap().len(), 2);
}
