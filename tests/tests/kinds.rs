//! Projects that are not rsync: a git project from a real `git daemon` (to the master and a real
//! slave, force-pushes and deleted branches included), and command projects running providers of
//! the master's configuration (Debian's lftp against a real HTTP server; a recorder of its argv and
//! environment), confined like rsync.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use mirror_master::config::ProviderSettings;
use mirror_tests::cluster::{cluster_settings, served_generations, start_slaves, sync_and_wait};
use mirror_tests::servers::{GitUpstream, git, http_upstream, rev};
use mirror_tests::{Api, Auth, TestMaster, finished_run, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn run(api: &Api, id: &str) -> Value {
    let r = api.post(&format!("/syncup/?id={id}"), &json!({}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    finished_run(api, r.body["run_id"].as_i64().unwrap(), 60).await
}

async fn refused(api: &Api, body: Value, auth: Auth) -> (StatusCode, Value) {
    let r = api.post("/add_project/", &body, &auth).await;
    (r.status, r.body["field"].clone())
}

#[tokio::test]
async fn a_git_project_mirrors_every_reference_to_the_master_and_a_slave() {
    let up = GitUpstream::start().await;
    let outside = std::env::temp_dir().join(format!("mirror-git-outside-{}", std::process::id()));
    let _ = std::fs::remove_file(&outside);
    // The upstream holds a symlink out of any tree, and hooks in its history that would write
    // outside it if they were ever installed or run.
    let work = up.work().display().to_string();
    std::os::unix::fs::symlink(&outside, up.work().join("evil")).unwrap();
    let planted = format!("#!/bin/sh\necho planted > {}\n", outside.display());
    let hook_files = [
        ("README", "one\n"),
        ("hooks/reference-transaction", planted.as_str()),
        ("hooks/post-fetch", planted.as_str()),
    ];
    let first = up.commit(&hook_files, "one");
    git(&["-C", &work, "branch", "feature"]);
    git(&["-C", &work, "branch", "old"]);
    git(&["-C", &work, "tag", "v1"]);
    up.push();

    let dir = tempfile::tempdir().unwrap();
    let settings = cluster_settings(dir.path());
    let m = TestMaster::start_with(dir, settings).await;
    let slaves = start_slaves(&m.api, 1).await;
    let body =
        |url: &str| json!({"project": "repo", "kind": "git", "upstream_url": url, "dest": "git/repo", "flip": true});
    for bad in
        ["file:///etc", "ext::sh -c touch% /tmp/x", "-oProxyCommand=x", "https://u:pw@h/r", "ftp://h/r", "git://h/a b"]
    {
        assert_eq!(
            refused(&m.api, body(bad), Auth::user()).await,
            (StatusCode::BAD_REQUEST, json!("upstream_url")),
            "{bad}"
        );
    }
    let mut with_host = body(&up.url());
    with_host["rsync_host"] = json!("127.0.0.1");
    with_host["rsync_module"] = json!("x");
    assert_eq!(refused(&m.api, with_host, Auth::user()).await, (StatusCode::BAD_REQUEST, json!("rsync_host")));
    let r = m
        .api
        .post("/add_project/", &json!({"project": "repo", "kind": "git", "dest": "git/repo"}), &Auth::user())
        .await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!("upstream_url")), "{}", r.text);
    // git is the master's own program: a user may keep a git mirror.
    let r = m.api.post("/add_project/", &body(&up.url()), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let view = m.api.get("/list_projects/?id=repo", &Auth::root()).await.body;
    assert_eq!((view[0]["kind"].clone(), view[0]["upstream_url"].clone()), (json!("git"), json!(up.url())), "{view}");

    assert_eq!(sync_and_wait(&m, "repo").await, 1);
    let page = m.api.get("/status/repo", &Auth::None).await.text;
    assert!(page.contains("<th>Kind</th><td>git</td>") && page.contains(&up.url()), "{page}");
    let tree = m.mirror_root().join("git/repo");
    for r in ["main", "feature", "old", "v1"] {
        assert_eq!(rev(&tree, r).as_deref(), Some(first.as_str()), "{r}");
    }
    let slave_tree = slaves[0].root().join("git/repo");
    let slave_name = format!("127.0.0.1:{}", slaves[0].port);
    wait_for(30, "the slave to serve generation 1", || async {
        (served_generations(&m.api, "repo").await == vec![(slave_name.clone(), 1)]).then_some(())
    })
    .await;
    assert_eq!(rev(&slave_tree, "main").as_deref(), Some(first.as_str()));

    // Nothing new upstream: no new generation.
    let same = run(&m.api, "repo").await;
    assert_eq!((same["status"].clone(), same["changed"].clone()), (json!("success"), json!(false)), "{same}");

    // A new commit, a force-push, a deleted branch.
    let second = up.commit(&[("README", "two\n")], "two");
    git(&["-C", &work, "checkout", "-q", "--orphan", "rewritten"]);
    let forced = up.commit(&[("other", "rewritten history\n")], "rewritten");
    git(&["-C", &work, "branch", "-f", "feature", &forced]);
    git(&["-C", &work, "checkout", "-q", "main"]);
    git(&["-C", &work, "branch", "-D", "old", "rewritten"]);
    up.push();
    let moved = run(&m.api, "repo").await;
    assert_eq!((moved["status"].clone(), moved["changed"].clone()), (json!("success"), json!(true)), "{moved}");
    assert_eq!(moved["stats"]["refs_updated"], json!(3), "main, feature forced, old deleted: {moved}");
    assert_eq!(rev(&tree, "main").as_deref(), Some(second.as_str()));
    assert_eq!(rev(&tree, "feature").as_deref(), Some(forced.as_str()));
    assert_eq!(rev(&tree, "old"), None);
    wait_for(30, "the slave to serve generation 2", || async {
        (served_generations(&m.api, "repo").await == vec![(slave_name.clone(), 2)]).then_some(())
    })
    .await;
    assert_eq!(rev(&slave_tree, "feature").as_deref(), Some(forced.as_str()));
    assert_eq!(rev(&slave_tree, "old"), None);

    // Nothing the upstream held ran or was written outside the tree, and no hook came with it.
    assert!(std::fs::symlink_metadata(&outside).is_err(), "{} was written", outside.display());
    let hooks: Vec<_> = std::fs::read_dir(tree.join("hooks")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(hooks.iter().all(|h| h.to_string_lossy().ends_with(".sample")), "{hooks:?}");
}

fn provider(name: &str, command: &[&str], read: &[&str]) -> ProviderSettings {
    ProviderSettings {
        name: mirror_common::api::Name::parse(name.to_owned()).unwrap(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        read: read.iter().map(Into::into).collect(),
        env: BTreeMap::from([("FROM_CONFIG".to_owned(), "yes".to_owned())]),
    }
}

#[tokio::test]
async fn command_projects_run_the_configurations_providers_confined_with_their_slots_filled() {
    let http = http_upstream().await;
    let files = http.root();
    std::fs::create_dir_all(files.join("sub")).unwrap();
    for (name, text) in [("a.txt", "a\n"), ("sub/b.txt", "b\n"), ("c.txt", "c\n"), ("d.txt", "d\n")] {
        std::fs::write(files.join(name), text).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut settings = cluster_settings(dir.path());
    settings.providers = vec![
        provider(
            "lftp",
            &["/usr/bin/lftp", "-c", "mirror --delete --verbose --no-perms {upstream_url} ."],
            &["/etc/lftp.conf"],
        ),
        // Writes its argv (one item a line) and its environment into the tree; tries to escape.
        provider(
            "recorder",
            &[
                "/bin/sh",
                "-c",
                "printf '%s\\n' \"$@\" > argv.txt; env | sort > env.txt; \
                 if echo x > ../escaped 2>/dev/null; then echo ESCAPED; fi; echo \"$1\" >> \"$TUNASYNC_LOG_FILE\"",
                "recorder",
                "{upstream_url}",
                "{params.label}",
                "x={params.flag}",
                "{mirror_name}",
            ],
            &["/usr/bin"],
        ),
    ];
    let m = TestMaster::start_with(dir, settings).await;
    let _slaves = start_slaves(&m.api, 1).await;
    let url = format!("http://127.0.0.1:{}/", http.port);
    let lftp = json!({"project": "files", "kind": "command", "provider": "lftp", "upstream_url": url, "dest": "files",
                      "max_delete": 2});
    // Only root chooses a provider; a provider is named, never given; it must exist.
    assert_eq!(refused(&m.api, lftp.clone(), Auth::user()).await.0, StatusCode::FORBIDDEN);
    let mut given = lftp.clone();
    given["provider"] = json!({"command": ["/bin/sh", "-c", "id"]});
    assert_eq!(refused(&m.api, given, Auth::root()).await.0, StatusCode::BAD_REQUEST);
    let mut unknown = lftp.clone();
    unknown["provider"] = json!("wget");
    assert_eq!(refused(&m.api, unknown, Auth::root()).await, (StatusCode::BAD_REQUEST, json!("provider")));
    for bad in ["http://h/a b", "http://h/;id", "http://h/'q'", "-c"] {
        let mut b = lftp.clone();
        b["upstream_url"] = json!(bad);
        assert_eq!(refused(&m.api, b, Auth::root()).await, (StatusCode::BAD_REQUEST, json!("upstream_url")), "{bad}");
    }
    let r = m.api.post("/add_project/", &lftp, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    // Files arrive, then go and come as upstream.
    let one = run(&m.api, "files").await;
    assert_eq!(one["status"], json!("success"), "{one}");
    let tree = m.mirror_root().join("files");
    assert_eq!(std::fs::read_to_string(tree.join("sub/b.txt")).unwrap(), "b\n");
    let sizes = (one["stats"]["files_total"].clone(), one["stats"]["total_size"].clone());
    assert_eq!(sizes, (json!(5), json!(8)), "a, sub, sub/b, c, d: {one}");
    std::fs::remove_file(files.join("c.txt")).unwrap();
    std::fs::write(files.join("e.txt"), "e\n").unwrap();
    let two = run(&m.api, "files").await;
    assert_eq!((two["status"].clone(), two["changed"].clone()), (json!("success"), json!(true)), "{two}");
    assert!(!tree.join("c.txt").exists() && tree.join("e.txt").exists());
    assert_eq!(
        (two["stats"]["files_created"].clone(), two["stats"]["files_deleted"].clone()),
        (json!(1), json!(1)),
        "{two}"
    );
    let log = m.api.get(&format!("/runs/{}/log", two["id"]), &Auth::root()).await.text;
    assert!(log.contains("e.txt"), "{log}");
    let same = run(&m.api, "files").await;
    assert_eq!(same["changed"], json!(false), "{same}");

    // The deletion guard compares the tree before and after: deleting 3 files crosses max_delete 2,
    // the run fails and the files come back from the frozen generation.
    for f in ["a.txt", "d.txt", "e.txt"] {
        std::fs::remove_file(files.join(f)).unwrap();
    }
    let guarded = run(&m.api, "files").await;
    assert_eq!(guarded["status"], json!("failed"), "{guarded}");
    assert!(guarded["message"].as_str().unwrap().contains("deleted 3 of"), "{guarded}");
    assert!(tree.join("a.txt").exists() && tree.join("d.txt").exists(), "put back");
    let prop = m.api.get("/projects/files/propagation", &Auth::root()).await.body;
    assert_eq!(prop["generation"], json!(2), "{prop}");

    // The recorder: each slot one argv item, whatever it holds; parameters in the environment.
    let rec = |params: Value| {
        json!({"project": "rec", "kind": "command", "provider": "recorder", "upstream_url": "ftp://mirror.example.org/pub/",
               "dest": "rec", "params": params})
    };
    let label = "two words; 'single' \"double\" $(id) `id`";
    let r = m.api.post("/add_project/", &rec(json!({"label": "-rf", "flag": "-n"})), &Auth::root()).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!("params.label")), "{}", r.text);
    let r = m.api.post("/add_project/", &rec(json!({"flag": "-n"})), &Auth::root()).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!("params.label")), "{}", r.text);
    let r = m.api.post("/add_project/", &rec(json!({"Bad-Name": "x"})), &Auth::root()).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::BAD_REQUEST, json!("params")), "{}", r.text);
    let r = m.api.post("/add_project/", &rec(json!({"label": label, "flag": "-n"})), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let done = run(&m.api, "rec").await;
    assert_eq!(done["status"], json!("success"), "{done}");
    let rec_tree = m.mirror_root().join("rec");
    let argv = std::fs::read_to_string(rec_tree.join("argv.txt")).unwrap();
    assert_eq!(argv, format!("ftp://mirror.example.org/pub/\n{label}\nx=-n\nrec\n"));
    let env = std::fs::read_to_string(rec_tree.join("env.txt")).unwrap();
    let names: Vec<&str> = env.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    assert_eq!(
        names,
        [
            "FROM_CONFIG",
            "LC_ALL",
            "MIRROR_PARAM_FLAG",
            "MIRROR_PARAM_LABEL",
            "PATH",
            "PWD",
            "TUNASYNC_LOG_DIR",
            "TUNASYNC_LOG_FILE",
            "TUNASYNC_MIRROR_NAME",
            "TUNASYNC_UPSTREAM_URL",
            "TUNASYNC_WORKING_DIR"
        ],
        "{env}"
    );
    assert!(env.contains(&format!("MIRROR_PARAM_LABEL={label}\n")), "{env}");
    assert!(env.contains(&format!("TUNASYNC_WORKING_DIR={}\n", rec_tree.display())), "{env}");
    assert!(!m.mirror_root().join("escaped").exists());
    let log = m.api.get(&format!("/runs/{}/log", done["id"]), &Auth::root()).await.text;
    assert!(!log.contains("ESCAPED") && log.contains("ftp://mirror.example.org/pub/"), "{log}");

    // A user can neither change a command project's provider or params nor make one.
    let r = m
        .api
        .post("/update_project/basic/", &json!({"id": "rec", "params": {"label": "x", "flag": "y"}}), &Auth::user())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = m.api.post("/update_project/basic/", &json!({"id": "rec", "timeout_secs": 60}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::OK, "the rest stays a user's to change: {}", r.text);
    let r = m.api.post("/update_project/basic/", &json!({"id": "rec", "provider": "lftp"}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn the_memory_limit_stops_a_command_that_exceeds_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    settings.run_memory_limit_mib = Some(128);
    settings.providers = vec![provider(
        "hungry",
        &["/usr/bin/python3", "-c", "b = bytearray(512 * 1024 * 1024); print('allocated', len(b))"],
        &[],
    )];
    let m = TestMaster::start_with(dir, settings).await;
    let body = json!({"project": "hungry", "kind": "command", "provider": "hungry",
                      "upstream_url": "https://example.org/", "dest": "hungry"});
    let r = m.api.post("/add_project/", &body, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let done = run(&m.api, "hungry").await;
    assert_eq!(done["status"], json!("failed"), "{done}");
    assert!(done["message"].as_str().unwrap().contains("MemoryError"), "{done}");
}

#[tokio::test]
async fn a_git_project_pulls_over_ssh_with_a_key_of_the_configuration_only() {
    use mirror_master::config::GitSshKey;
    let up = GitUpstream::start().await;
    let commit = up.commit(&[("README", "over ssh\n")], "one");
    up.push();
    let sshd = mirror_tests::sshd::Sshd::start(&format!("git-upload-pack '{}'", up.bare().display())).await;
    let keys = sshd.dir.path();
    let host_key = std::fs::read_to_string(keys.join("host_key.pub")).unwrap();
    std::fs::write(keys.join("known_hosts"), format!("[127.0.0.1]:{} {host_key}", sshd.port)).unwrap();
    // Another host's key: the real host is not the one known.
    let other = std::fs::read_to_string(keys.join("client_key.pub")).unwrap();
    std::fs::write(keys.join("other_hosts"), format!("[127.0.0.1]:{} {other}", sshd.port)).unwrap();
    let key = |name: &str, hosts: &str| GitSshKey {
        name: mirror_common::api::Name::parse(name.to_owned()).unwrap(),
        key_file: keys.join("client_key"),
        known_hosts: keys.join(hosts),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    settings.git_ssh_keys = vec![key("upstream", "known_hosts"), key("stranger", "other_hosts")];
    let m = TestMaster::start_with(dir, settings).await;
    let user = std::process::Command::new("id").arg("-un").output().unwrap();
    let url = format!("ssh://{}@127.0.0.1:{}/repo.git", String::from_utf8_lossy(&user.stdout).trim(), sshd.port);
    let body = |name: &str, key: Option<&str>| json!({"project": name, "kind": "git", "upstream_url": url, "dest": name, "ssh_key": key});
    assert_eq!(refused(&m.api, body("s", None), Auth::root()).await, (StatusCode::BAD_REQUEST, json!("ssh_key")));
    assert_eq!(
        refused(&m.api, body("s", Some("nope")), Auth::root()).await,
        (StatusCode::BAD_REQUEST, json!("ssh_key"))
    );
    assert_eq!(refused(&m.api, body("s", Some("upstream")), Auth::user()).await.0, StatusCode::FORBIDDEN);
    for (name, key) in [("s", "upstream"), ("t", "stranger")] {
        let r = m.api.post("/add_project/", &body(name, Some(key)), &Auth::root()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let done = run(&m.api, "s").await;
    assert_eq!(done["status"], json!("success"), "{done}");
    assert_eq!(rev(&m.mirror_root().join("s"), "main").as_deref(), Some(commit.as_str()));
    let view = m.api.get("/list_projects/?id=s", &Auth::root()).await.text;
    assert!(!view.contains("client_key") && view.contains("\"ssh_key\":\"upstream\""), "{view}");
    // An unknown host key ends the run.
    let refused_host = run(&m.api, "t").await;
    assert_eq!(refused_host["status"], json!("failed"), "{refused_host}");
    assert!(refused_host["log_tail"].as_str().unwrap().contains("Host key verification failed"), "{refused_host}");
}
