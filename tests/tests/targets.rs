//! Object-store targets (issue 15) against a real S3-compatible server (`s3s-fs`, signatures
//! checked, every request counted), a real master with its SQLite file, and a real rsync daemon.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use mirror_master::config::Settings;
use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream};
use mirror_tests::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use mirror_tests::{Api, Auth, TestMaster, finished_run, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BUCKET: &str = "mirror";

/// A master that can sign for the test server: the key id in its configuration, the secret in
/// a 0600 file.
fn settings(dir: &Path, s3: &S3Server) -> Settings {
    let mut s = TestMaster::settings_in(dir);
    s.s3_credentials = vec![mirror_tests::s3::credentials(dir, ACCESS_KEY, SECRET_KEY, &s3.endpoint())];
    s.targets.retries = 1;
    s.targets.retry_base_ms = 20;
    s.targets.request_timeout_secs = 5;
    s.targets.watch_debounce_ms = 100;
    // These tests' targets have no target_prefix: their pushes may delete in the test bucket.
    s.targets.delete_at_bucket_root = true;
    s
}

async fn master(s3: &S3Server) -> TestMaster {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), s3);
    TestMaster::start_with(dir, s).await
}

fn target(s3: &S3Server, extra: Value) -> Value {
    let mut t = json!({"name": "cdn", "endpoint": s3.endpoint(), "bucket": BUCKET, "credentials": "local"});
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    t
}

/// A project whose upstream is never asked (manual runs only): its tree is written by the test.
async fn add_project(api: &Api, id: &str, targets: Value, extra: Value) {
    let mut body = json!({
        "project": id, "rsync_host": "127.0.0.1", "rsync_module": "none", "dest": id, "targets": targets,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = api.post("/add_project/", &body, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Asks for a push and waits for it to end; returns the push.
async fn push(api: &Api, id: &str) -> Value {
    let before = last_push_id(api, id).await;
    let r = api.post(&format!("/targets/sync?id={id}"), &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    wait_for(30, "the push to end", || async {
        let pushes = api.get(&format!("/targets/pushes?id={id}&limit=1"), &Auth::user()).await.body;
        let p = pushes.as_array()?.first()?.clone();
        (p["id"].as_i64() > before && p["status"] != json!("running")).then_some(p)
    })
    .await
}

async fn last_push_id(api: &Api, id: &str) -> Option<i64> {
    let pushes = api.get(&format!("/targets/pushes?id={id}&limit=1"), &Auth::user()).await.body;
    pushes.as_array().and_then(|a| a.first()).and_then(|p| p["id"].as_i64())
}

fn counts(p: &Value) -> (u64, u64, u64) {
    (p["uploaded"].as_u64().unwrap(), p["deleted"].as_u64().unwrap(), p["unchanged"].as_u64().unwrap())
}

/// Every key of the bucket holds the content of its file.
fn assert_same(s3: &S3Server, tree: &Path, expected_keys: &[(&str, &str)]) {
    let mut want: Vec<String> = expected_keys.iter().map(|(k, _)| k.to_string()).collect();
    want.sort();
    assert_eq!(s3.keys(BUCKET), want);
    for (key, rel) in expected_keys {
        assert_eq!(std::fs::read(s3.object(BUCKET, key)).unwrap(), std::fs::read(tree.join(rel)).unwrap(), "{key}");
    }
}

#[tokio::test]
async fn a_tree_goes_up_and_an_unchanged_one_is_pushed_again_without_a_write() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let m = master(&s3).await;
    add_project(&m.api, "p", json!([target(&s3, json!({}))]), json!({})).await;
    let tree = m.mirror_root().join("p");
    let names = ["a.txt", "with space/ü-ñ 名.txt", "deep/a/b/c/d/e/f/g.txt", "pool/x_1.0~rc1.deb", "empty"];
    for (i, n) in names.iter().enumerate() {
        write(
            &tree,
            n,
            if *n == "empty" { Vec::new() } else { format!("file {i}").repeat(i + 1).into_bytes() }.as_slice(),
        );
    }
    std::os::unix::fs::symlink("/etc/passwd", tree.join("leak")).unwrap();

    let first = push(&m.api, "p").await;
    assert_eq!(first["status"], json!("success"), "{first}");
    assert_eq!(counts(&first), (5, 0, 0));
    assert_eq!(first["skipped"], json!(1), "the symlink is not published: {first}");
    assert!(first["message"].as_str().unwrap().contains("leak"), "{first}");
    assert_same(&s3, &tree, &names.map(|n| (n, n)));
    assert!(!s3.object(BUCKET, "leak").exists());

    // Unchanged: no write. s3s-fs lists no ETag, so the first re-push reads each object's hash
    // once (HEAD) and learns its modification time; from then on, one listing and nothing else.
    s3.take_requests();
    let again = push(&m.api, "p").await;
    assert_eq!(counts(&again), (0, 0, 5), "{again}");
    let requests = s3.take_requests();
    assert!(!requests.contains_key("PUT") && !requests.contains_key("DELETE"), "{requests:?}");
    let third = push(&m.api, "p").await;
    assert_eq!(counts(&third), (0, 0, 5), "{third}");
    let requests = s3.take_requests();
    assert_eq!(requests, [("GET".to_owned(), 1)].into(), "one listing, nothing else");

    // A same-size change, a removal, a new file.
    let before = std::fs::read(tree.join("a.txt")).unwrap();
    let same_size: Vec<u8> = before.iter().map(|b| b.wrapping_add(1)).collect();
    std::fs::write(tree.join("a.txt"), &same_size).unwrap();
    std::fs::remove_file(tree.join("deep/a/b/c/d/e/f/g.txt")).unwrap();
    write(&tree, "new.txt", b"new");
    let changed = push(&m.api, "p").await;
    assert_eq!(counts(&changed), (2, 1, 3), "{changed}");
    assert_same(
        &s3,
        &tree,
        &[
            ("a.txt", "a.txt"),
            ("with space/ü-ñ 名.txt", "with space/ü-ñ 名.txt"),
            ("pool/x_1.0~rc1.deb", "pool/x_1.0~rc1.deb"),
            ("empty", "empty"),
            ("new.txt", "new.txt"),
        ],
    );

    // What the API and the metrics show.
    let targets = m.api.get("/targets?id=p", &Auth::user()).await;
    assert_eq!(targets.status, StatusCode::OK);
    assert_eq!(targets.body[0]["last_push"]["id"], changed["id"]);
    assert!(targets.body[0]["last_success"].is_string());
    assert!(!targets.text.contains(SECRET_KEY) && !targets.text.contains(ACCESS_KEY), "{}", targets.text);
    let metrics = m.api.get("/metrics", &Auth::root()).await.text;
    assert!(
        metrics.contains(r#"mirror_sync_target_pushes_total{project="p",target="cdn",result="success"} 4"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"mirror_sync_target_objects_total{project="p",target="cdn",operation="upload"} 7"#));
    let last_success = chrono::DateTime::parse_from_rfc3339(targets.body[0]["last_success"].as_str().unwrap()).unwrap();
    let gauge = format!(
        r#"mirror_sync_target_last_success_timestamp_seconds{{project="p",target="cdn"}} {}"#,
        last_success.timestamp()
    );
    assert!(metrics.contains(&gauge), "{gauge} not in {metrics}");
}

#[tokio::test]
async fn prefixes_and_filters_choose_the_keys_and_a_prefixed_target_is_not_pushed_twice() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let m = master(&s3).await;
    let t = target(
        &s3,
        json!({"source_prefix": "pool", "target_prefix": "debian", "source_filter": "\\.deb$", "source_exclude": "/old/"}),
    );
    add_project(&m.api, "f", json!([t]), json!({})).await;
    let tree = m.mirror_root().join("f");
    for rel in ["pool/main/a.deb", "pool/main/a.dsc", "pool/old/b.deb", "dists/c.deb", "pool/d.deb"] {
        write(&tree, rel, rel.as_bytes());
    }
    // An object under the prefix that the tree does not have is removed; one outside is not touched.
    write(s3.dir.path(), &format!("{BUCKET}/debian/stale.deb"), b"stale");
    write(s3.dir.path(), &format!("{BUCKET}/elsewhere.txt"), b"not ours");
    let first = push(&m.api, "f").await;
    assert_eq!(first["status"], json!("success"), "{first}");
    assert_eq!(counts(&first), (2, 1, 0));
    assert_eq!(s3.keys(BUCKET), ["debian/d.deb", "debian/main/a.deb", "elsewhere.txt"]);
    s3.take_requests();
    let again = push(&m.api, "f").await;
    assert_eq!(counts(&again), (0, 0, 2), "{again}");
    assert_eq!(s3.writes(), 0);
}

/// A master that knows nothing of the bucket (a new database) compares by the hash each object
/// carries in its metadata, multipart uploads included (their ETag is not an MD5): nothing is
/// uploaded again.
#[tokio::test]
async fn a_master_without_memory_compares_by_the_stored_hash_also_for_multipart_objects() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let upstream_tree = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    write(upstream_tree.path(), "big.iso", &big);
    write(upstream_tree.path(), "small.txt", b"small");
    for round in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), &s3);
        s.targets.part_size_bytes = 5 << 20;
        s.targets.multipart_threshold_bytes = 5 << 20;
        let m = TestMaster::start_with(dir, s).await;
        add_project(&m.api, "iso", json!([target(&s3, json!({}))]), json!({})).await;
        let tree = m.mirror_root().join("iso");
        for f in ["big.iso", "small.txt"] {
            write(&tree, f, &std::fs::read(upstream_tree.path().join(f)).unwrap());
        }
        s3.take_requests();
        let p = push(&m.api, "iso").await;
        let requests = s3.take_requests();
        assert_eq!(p["status"], json!("success"), "{p}");
        if round == 0 {
            assert_eq!(counts(&p), (2, 0, 0));
            assert!(
                requests.get("POST").copied().unwrap_or(0) >= 2,
                "a multipart upload (create, complete): {requests:?}"
            );
            assert_eq!(std::fs::read(s3.object(BUCKET, "big.iso")).unwrap(), big);
        } else {
            assert_eq!(counts(&p), (0, 0, 2), "{p}");
            assert_eq!(requests.get("HEAD").copied(), Some(2), "{requests:?}");
            assert!(!requests.contains_key("PUT") && !requests.contains_key("POST"), "{requests:?}");
        }
        m.stop().await;
    }
}

#[tokio::test]
async fn a_push_while_the_store_is_down_fails_and_the_next_one_completes() {
    let mut s3 = S3Server::start(&[BUCKET]).await;
    let m = master(&s3).await;
    add_project(&m.api, "down", json!([target(&s3, json!({}))]), json!({})).await;
    let tree = m.mirror_root().join("down");
    for i in 0..20 {
        write(&tree, &format!("d/{i}.txt"), format!("{i}").as_bytes());
    }
    s3.stop().await;
    let failed = push(&m.api, "down").await;
    assert_eq!(failed["status"], json!("failed"), "{failed}");
    assert!(!failed["message"].as_str().unwrap().is_empty());
    s3.restart().await;
    let done = push(&m.api, "down").await;
    assert_eq!(done["status"], json!("success"), "{done}");
    assert_eq!(counts(&done), (20, 0, 0));
    assert_eq!(s3.keys(BUCKET).len(), 20);
}

#[tokio::test]
async fn a_successful_run_pushes_its_tree() {
    let upstream = Upstream::start().await;
    write(&upstream.data(), "pub/file.txt", b"from upstream");
    let s3 = S3Server::start(&[BUCKET]).await;
    let m = master(&s3).await;
    let body = json!({
        "project": "run", "rsync_host": "127.0.0.1", "rsync_port": upstream.port, "rsync_module": "data",
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": "run",
        "rsync_options": {"basic": ["--no-motd"]}, "targets": [target(&s3, json!({"target_prefix": "run/"}))],
    });
    assert_eq!(m.api.post("/add_project/", &body, &Auth::root()).await.status, StatusCode::CREATED);
    let r = m.api.post("/syncup/?id=run", &json!({}), &Auth::user()).await;
    let run = finished_run(&m.api, r.body["run_id"].as_i64().unwrap(), 30).await;
    assert_eq!(run["status"], json!("success"), "{run}");
    let p = wait_for(30, "the push after the run", || async {
        let pushes = m.api.get("/targets/pushes?id=run", &Auth::user()).await.body;
        pushes.as_array()?.iter().find(|p| p["status"] == json!("success")).cloned()
    })
    .await;
    assert_eq!(p["trigger"], json!("run"));
    assert_eq!(std::fs::read(s3.object(BUCKET, "run/pub/file.txt")).unwrap(), b"from upstream");

    // A push sends the generation, as the slaves get it: its snapshot, not the master's tree half
    // way to the next one (as during a run: a file added, one gone).
    let live = m.mirror_root().join("run");
    write(&live, "half-written", b"not a generation");
    std::fs::remove_file(live.join("pub/file.txt")).unwrap();
    let p = push(&m.api, "run").await;
    assert_eq!(p["status"], json!("success"), "{p}");
    assert_eq!(counts(&p), (0, 0, 1), "{p}");
    assert_eq!(s3.keys(BUCKET), vec!["run/pub/file.txt".to_owned()]);
}

/// A project with a local source (no upstream: its tree is written by something else), watched.
#[tokio::test]
async fn a_watched_local_source_pushes_each_file_closed_or_removed_within_two_seconds() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let m = master(&s3).await;
    let tree = m.mirror_root().join("w");
    write(&tree, "before.txt", b"there before the master watched");
    let body = json!({"project": "w", "source": "w", "watch": true, "targets": [target(&s3, json!({}))]});
    let r = m.api.post("/add_project/", &body, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let listed = m.api.get("/list_projects/", &Auth::root()).await.body;
    assert_eq!((&listed[0]["rsync_host"], &listed[0]["watch"]), (&json!(null), &json!(true)), "{listed}");
    let r = m.api.post("/syncup/?id=w", &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "no upstream to run: {}", r.text);
    // Watching begins with a full merge: what was there before is pushed.
    wait_for(10, "the merge when watching begins", || async {
        let pushes = m.api.get("/targets/pushes?id=w", &Auth::user()).await.body;
        pushes.as_array()?.iter().find(|p| p["status"] == json!("success") && p["trigger"] == json!("start")).cloned()
    })
    .await;
    assert!(s3.object(BUCKET, "before.txt").exists());

    let started = Instant::now();
    write(&tree, "sub/new.txt", b"written while watched");
    wait_for(5, "the new file in the bucket", || async {
        std::fs::read(s3.object(BUCKET, "sub/new.txt")).ok().filter(|c| c == b"written while watched")
    })
    .await;
    let upload = started.elapsed();
    let started = Instant::now();
    std::fs::remove_file(tree.join("before.txt")).unwrap();
    wait_for(5, "the removed file gone from the bucket", || async {
        (!s3.object(BUCKET, "before.txt").exists()).then_some(())
    })
    .await;
    let removal = started.elapsed();
    println!("watched tree: written -> object {upload:?}, removed -> gone {removal:?}");
    // A directory moved in whole (no file is closed in the tree): its files are listed and pushed.
    let outside = tempfile::tempdir_in(m.mirror_root()).unwrap();
    write(outside.path(), "moved/deep/x.txt", b"moved in");
    std::fs::rename(outside.path().join("moved"), tree.join("moved")).unwrap();
    wait_for(5, "the moved-in directory's file in the bucket", || async {
        std::fs::read(s3.object(BUCKET, "moved/deep/x.txt")).ok().filter(|c| c == b"moved in")
    })
    .await;
    assert!(upload < Duration::from_secs(2) && removal < Duration::from_secs(2), "{upload:?} {removal:?}");
    let pushes = m.api.get("/targets/pushes?id=w", &Auth::user()).await.body;
    assert!(pushes.as_array().unwrap().iter().any(|p| p["trigger"] == json!("watch")), "{pushes}");
}

#[tokio::test]
async fn bad_targets_are_refused_naming_the_field_and_exports_carry_them() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let m = master(&s3).await;
    let bad =
        |t: Value| json!({"project": "bad", "rsync_host": "h", "rsync_module": "m", "dest": "bad", "targets": [t]});
    for (t, field) in [
        (target(&s3, json!({"bucket": "Not_A_Bucket"})), "targets[0].bucket"),
        (target(&s3, json!({"credentials": "nobody"})), "targets[0].credentials"),
        (target(&s3, json!({"endpoint": "file:///etc"})), "targets[0].endpoint"),
        (target(&s3, json!({"source_filter": "("})), "targets[0].source_filter"),
        (target(&s3, json!({"target_prefix": "../x"})), "targets[0].target_prefix"),
        (target(&s3, json!({"secret_access_key": "inline"})), "targets[0].secret_access_key"),
    ] {
        let r = m.api.post("/add_project/", &bad(t), &Auth::root()).await;
        println!("{field}: {}", r.text);
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert!(r.text.contains(field), "{field}: {}", r.text);
    }
    assert_eq!(m.api.get("/list_projects/", &Auth::root()).await.body, json!([]), "nothing half-written");
    add_project(&m.api, "ok", json!([target(&s3, json!({"prefix": "ok/"}))]), json!({})).await;
    let exported = m.api.get("/export", &Auth::root()).await.body;
    assert_eq!(exported["projects"][0]["targets"][0]["target_prefix"], json!("ok/"), "{exported}");
    let r = m.api.post("/targets/sync?id=ok&target=other", &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = m.api.post("/targets/sync?id=nothing", &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = m.api.post("/targets/sync?id=ok", &json!({}), &Auth::None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);

    // A local source has no upstream, and nothing that only an upstream needs.
    let local = |extra: Value| {
        let mut b = json!({"project": "loc", "source": "loc"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (extra, field) in [
        (json!({"cron_options": {"minute": "*/5"}}), "cron_options"),
        (json!({"rsync_password": "pw"}), "rsync_password"),
        (json!({"rsync_host": "h"}), "rsync_module"),
        (json!({"rsync_module": "m"}), "rsync_host"),
    ] {
        let r = m.api.post("/add_project/", &local(extra), &Auth::root()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        assert_eq!(r.body["field"], json!(field), "{}", r.text);
    }
    let r = m.api.post("/add_project/", &local(json!({})), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = m.api.post("/update_project/basic/", &json!({"id": "loc", "rsync_host": "h"}), &Auth::root()).await;
    assert_eq!((r.status, &r.body["field"]), (StatusCode::BAD_REQUEST, &json!("rsync_module")), "{}", r.text);
    let r = m
        .api
        .post("/update_project/basic/", &json!({"id": "loc", "rsync_host": "h", "rsync_module": "m"}), &Auth::root())
        .await;
    assert_eq!(r.status, StatusCode::OK, "a local source can get an upstream: {}", r.text);
}

/// `mirrorctl push --wait` and `mirrorctl targets`, the real binary.
#[tokio::test]
async fn mirrorctl_pushes_and_lists_targets() {
    let mut s3 = S3Server::start(&[BUCKET]).await;
    let m = master(&s3).await;
    add_project(&m.api, "c", json!([target(&s3, json!({}))]), json!({})).await;
    write(&m.mirror_root().join("c"), "f.txt", b"pushed by mirrorctl");
    let token = m.api.token(&Auth::user()).await;
    let home = tempfile::tempdir().unwrap();
    let ctl = |args: &'static [&'static str]| {
        let (url, token, home) = (m.api.base.clone(), token.clone(), home.path().to_owned());
        async move {
            tokio::process::Command::new(mirror_tests::binary("mirrorctl"))
                .args(args)
                .env_clear()
                .env("HOME", home)
                .env("MIRRORCTL_URL", url)
                .env("MIRRORCTL_TOKEN", token)
                .output()
                .await
                .unwrap()
        }
    };
    let out = ctl(&["push", "c", "--wait"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("cdn success: 1 uploaded"), "{text}");
    assert_eq!(std::fs::read(s3.object(BUCKET, "f.txt")).unwrap(), b"pushed by mirrorctl");
    let out = ctl(&["targets", "c"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cdn") && text.contains("success") && text.contains(BUCKET), "{text}");
    // A push that fails exits with the run-failed code.
    s3.stop().await;
    write(&m.mirror_root().join("c"), "g.txt", b"second");
    let out = ctl(&["push", "c", "--wait"]).await;
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
}
