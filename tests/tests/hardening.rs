//! The holes the 2026-12-02 attack set found in what the last round added (issue 32), each
//! against real parts: a real S3-compatible server behind a gate that stalls a push, a local
//! server that answers with a body it must not see copied, a fake rsync daemon that records the
//! challenge response a run sends it, real masters, `mirrorctl` against a server that redirects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mirror_master::config::Settings;
use mirror_tests::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use mirror_tests::{Api, Auth, MasterProcess, ROOT_PASSWORD, TestMaster, binary, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const BUCKET: &str = "mirror";

/// A TCP gate in front of a server: connections are counted and held until the gate opens.
struct Gate {
    port: u16,
    open: tokio::sync::watch::Sender<bool>,
    connections: Arc<Mutex<usize>>,
}

impl Gate {
    async fn start(to: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (open, watch) = tokio::sync::watch::channel(false);
        let connections = Arc::new(Mutex::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                *counted.lock().unwrap() += 1;
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let _ = watch.wait_for(|open| *open).await;
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Gate { port, open, connections }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

/// A local HTTP server that records each request (head and body) and answers every one with
/// `response`.
struct Recorder {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    async fn start(response: String) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, response) = (seen.clone(), response.clone());
                tokio::spawn(async move {
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut head = String::new();
                        let mut length = 0usize;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                            head.push_str(&line);
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0u8; length];
                        if reader.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        head.push_str(&String::from_utf8_lossy(&body));
                        seen.lock().unwrap().push(head);
                        if reader.get_mut().write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Recorder { port, requests }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn http_response(status: &str, headers: &[(&str, String)], body: &str) -> String {
    let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

/// A master whose `local` credentials may be used with `endpoint` only.
async fn master_for(endpoint: &str, tune: impl FnOnce(&mut Settings)) -> TestMaster {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestMaster::settings_in(dir.path());
    s.s3_credentials = vec![mirror_tests::s3::credentials(dir.path(), ACCESS_KEY, SECRET_KEY, endpoint)];
    s.targets.retries = 0;
    s.targets.request_timeout_secs = 10;
    tune(&mut s);
    TestMaster::start_with(dir, s).await
}

/// A local-source project (its tree is written by the test) with one target.
async fn add_pushed(api: &Api, id: &str, target: Value) {
    let body = json!({"project": id, "source": id, "targets": [target]});
    let r = api.post("/add_project/", &body, &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

fn target(endpoint: &str, extra: Value) -> Value {
    let mut t = json!({"name": "cdn", "endpoint": endpoint, "bucket": BUCKET, "credentials": "local"});
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    t
}

/// Starts a push of `id` and returns it once ended.
async fn push(api: &Api, id: &str) -> Value {
    let r = api.post(&format!("/targets/sync?id={id}"), &json!({}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    ended_push(api, id).await
}

async fn ended_push(api: &Api, id: &str) -> Value {
    wait_for(30, "the push to end", || async {
        let pushes = api.get(&format!("/targets/pushes?id={id}&limit=1"), &Auth::root()).await.body;
        let last = pushes.as_array().and_then(|p| p.first()).cloned()?;
        (last["status"] != json!("running")).then_some(last)
    })
    .await
}

fn files_containing(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

/// An upstream (here, whatever writes the tree) swaps a file for a symlink to a root-only file
/// while the push waits on a slow endpoint: the push reads the file beneath its tree without
/// following symlinks, so the secret never reaches the bucket.
#[tokio::test]
async fn a_symlink_swapped_in_during_a_stalled_push_is_not_read() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let gate = Gate::start(s3.port).await;
    let m = master_for(&gate.endpoint(), |_| {}).await;
    add_pushed(&m.api, "p", target(&gate.endpoint(), json!({"target_prefix": "p/"}))).await;
    let tree = m.mirror_root().join("p");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("f.txt"), b"public file\n").unwrap();
    std::fs::write(tree.join("sub/g.txt"), b"public too\n").unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("shadow");
    std::fs::write(&secret, b"TOP-SECRET-4711\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let r = m.api.post("/targets/sync?id=p", &json!({}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    // The push has walked the tree and waits on its listing: swap a file, and a directory.
    wait_for(10, "the push's first request", || async { (gate.connections() > 0).then_some(()) }).await;
    std::fs::remove_file(tree.join("f.txt")).unwrap();
    std::os::unix::fs::symlink(&secret, tree.join("f.txt")).unwrap();
    std::fs::remove_dir_all(tree.join("sub")).unwrap();
    std::fs::create_dir_all(outside.path().join("sub")).unwrap();
    std::fs::write(outside.path().join("sub/g.txt"), b"TOP-SECRET-4711 via a directory\n").unwrap();
    std::os::unix::fs::symlink(outside.path().join("sub"), tree.join("sub")).unwrap();
    gate.open.send(true).unwrap();

    let ended = ended_push(&m.api, "p").await;
    assert_eq!(ended["status"], json!("failed"), "{ended}");
    assert!(ended["message"].as_str().unwrap().contains("f.txt"), "{ended}");
    assert_eq!(files_containing(s3.dir.path(), b"TOP-SECRET"), Vec::<String>::new(), "the secret reached the bucket");
}

/// Only the endpoints a credentials entry lists may be paired with it: every other address form
/// is refused by name, and no request leaves the master. Only root sets targets.
#[tokio::test]
async fn targets_pair_credentials_only_with_the_endpoints_the_configuration_lists() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let m = master_for(&s3.endpoint(), |s| s.s3_credentials[0].buckets = vec![BUCKET.into()]).await;
    let port = s3.port;
    let refused = [
        format!("http://localhost:{port}"),
        format!("http://127.0.0.2:{port}"),
        "http://169.254.169.254".to_owned(),
        "http://10.0.0.1:9000".to_owned(),
        "http://192.168.1.1".to_owned(),
        format!("http://0.0.0.0:{port}"),
        "http://2130706433".to_owned(),
        "http://0x7f.0.0.1".to_owned(),
        "http://017700000001".to_owned(),
        format!("http://[::1]:{port}"),
        format!("https://127.0.0.1:{port}"),
    ];
    for (i, endpoint) in refused.iter().enumerate() {
        let body =
            json!({"project": format!("t{i}"), "source": format!("t{i}"), "targets": [target(endpoint, json!({}))]});
        let r = m.api.post("/add_project/", &body, &Auth::root()).await;
        assert_eq!(
            (r.status, r.body["field"].clone()),
            (StatusCode::BAD_REQUEST, json!("targets[0].endpoint")),
            "{endpoint}: {}",
            r.text
        );
    }
    let other_bucket =
        json!({"project": "b", "source": "b", "targets": [target(&s3.endpoint(), json!({"bucket": "other"}))]});
    let r = m.api.post("/add_project/", &other_bucket, &Auth::root()).await;
    assert_eq!(
        (r.status, r.body["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("targets[0].bucket")),
        "{}",
        r.text
    );
    // A user can set no target at all, even a listed one, nor change one.
    let listed = json!({"project": "u", "source": "u", "targets": [target(&s3.endpoint(), json!({}))]});
    assert_eq!(m.api.post("/add_project/", &listed, &Auth::user()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(m.api.post("/add_project/", &listed, &Auth::root()).await.status, StatusCode::CREATED);
    let moved = json!({"id": "u", "targets": [target(&s3.endpoint(), json!({"target_prefix": "x/"}))]});
    assert_eq!(m.api.post("/update_project/basic/", &moved, &Auth::user()).await.status, StatusCode::FORBIDDEN);
    // The rest of a project with targets stays a user's to change.
    let r = m.api.post("/update_project/basic/", &json!({"id": "u", "timeout_secs": 60}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(s3.take_requests().is_empty(), "a request reached the store");
}

/// A remote's error body (an internal service's answer may hold anything) never reaches a push
/// record a `user` reads: the status and a short reason only.
#[tokio::test]
async fn a_push_record_keeps_the_status_not_the_remote_body() {
    let body = "<Error><Code>AccessDenied</Code><Message>db password is hunter2-internal</Message></Error>";
    let remote =
        Recorder::start(http_response("403 Forbidden", &[("content-type", "application/xml".into())], body)).await;
    let m = master_for(&remote.endpoint(), |_| {}).await;
    add_pushed(&m.api, "p", target(&remote.endpoint(), json!({"target_prefix": "p/"}))).await;
    std::fs::create_dir_all(m.mirror_root().join("p")).unwrap();
    std::fs::write(m.mirror_root().join("p/f.txt"), b"x").unwrap();
    let ended = push(&m.api, "p").await;
    assert_eq!(ended["status"], json!("failed"), "{ended}");
    assert!(!remote.requests().is_empty(), "the push reached the remote");
    let as_user = m.api.get("/targets/pushes?id=p", &Auth::user()).await.text;
    assert!(as_user.contains("403"), "{as_user}");
    assert!(!as_user.contains("hunter2"), "the remote's body was copied: {as_user}");
}

/// A target without a prefix lists the whole bucket: its push deletes nothing there unless the
/// configuration says so.
#[tokio::test]
async fn a_target_without_prefix_deletes_nothing_in_the_bucket_by_default() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let theirs = s3.object(BUCKET, "other/keep.txt");
    std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
    std::fs::write(&theirs, b"someone else's").unwrap();
    let m = master_for(&s3.endpoint(), |_| {}).await;
    add_pushed(&m.api, "p", target(&s3.endpoint(), json!({}))).await;
    std::fs::create_dir_all(m.mirror_root().join("p")).unwrap();
    std::fs::write(m.mirror_root().join("p/a.txt"), b"ours").unwrap();
    let ended = push(&m.api, "p").await;
    assert_eq!((ended["status"].clone(), ended["deleted"].clone()), (json!("success"), json!(0)), "{ended}");
    assert!(ended["message"].as_str().unwrap().contains("1 objects without a file were kept"), "{ended}");
    assert!(theirs.exists());
    assert_eq!(s3.keys(BUCKET), ["a.txt", "other/keep.txt"]);
}

/// A fake rsync daemon: greets, asks for authentication with a fixed challenge, and records the
/// line the client answers with (user and challenge response).
async fn fake_rsyncd() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut s = BufReader::new(stream);
                let _ = s.get_mut().write_all(b"@RSYNCD: 30.0\n").await;
                let mut line = String::new();
                let read = async {
                    s.read_line(&mut line).await.ok()?; // the client's version
                    line.clear();
                    s.read_line(&mut line).await.ok()?; // the module
                    s.get_mut().write_all(b"@RSYNCD: AUTHREQD c2VjcmV0Y2hhbGxlbmdlMTIz\n").await.ok()?;
                    line.clear();
                    s.read_line(&mut line).await.ok()?;
                    Some(())
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
                seen.lock().unwrap().push(line.trim().to_owned());
                let _ = s.get_mut().write_all(b"@ERROR: auth failed on module data\n").await;
            });
        }
    });
    (port, lines)
}

async fn run_to_end(api: &Api, id: &str) -> Value {
    let r = api.get(&format!("/syncup/?id={id}"), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    mirror_tests::finished_run(api, r.body["run_id"].as_i64().unwrap(), 60).await
}

/// A `user` points a project at a daemon of their own (a new port here; a host, a user or a
/// module alike) without giving the password: the stored password stays behind, so its
/// challenge response never arrives there. Given again, it does (the same daemon, the same
/// challenge: the line a run with the password sends).
#[tokio::test]
async fn a_new_upstream_never_gets_the_old_password() {
    let m = TestMaster::start().await;
    let (first, _) = fake_rsyncd().await;
    let body = json!({
        "project": "p", "rsync_host": "127.0.0.1", "rsync_port": first, "rsync_module": "data",
        "rsync_user": "mirror", "rsync_password": "the-upstream-password", "dest": "p",
    });
    assert_eq!(m.api.post("/add_project/", &body, &Auth::root()).await.status, StatusCode::CREATED);
    let (theirs, stolen) = fake_rsyncd().await;
    for write in [
        json!({"id": "p", "rsync_port": theirs}),
        json!({"id": "p", "rsync_port": first}),
        json!({"id": "p", "rsync_port": theirs}),
    ] {
        let r = m.api.post("/update_project/basic/", &write, &Auth::user()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let view = m.api.get("/projects/p", &Auth::user()).await.body;
    assert_eq!(view["rsync_password_set"], json!(false), "{view}");
    assert_eq!(run_to_end(&m.api, "p").await["status"], json!("failed"));
    let without: Vec<String> = stolen.lock().unwrap().drain(..).collect();

    let (honest, answered) = fake_rsyncd().await;
    let r = m
        .api
        .post(
            "/update_project/basic/",
            &json!({"id": "p", "rsync_port": honest, "rsync_password": "the-upstream-password"}),
            &Auth::root(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(run_to_end(&m.api, "p").await["status"], json!("failed"));
    let with = answered.lock().unwrap().clone();
    assert!(with.iter().any(|l| l.starts_with("mirror ")), "the run with the password answered: {with:?}");
    for line in &without {
        assert!(!with.contains(line), "the password's response reached the other daemon: {line}");
    }
}

/// Streams (`/events`, a followed log) do not take the request rooms: 70 of them from one user
/// leave every listing answering; past the per-user cap a stream gets 429.
#[tokio::test]
async fn seventy_streams_of_one_user_do_not_starve_the_readers() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestMaster::settings_in(dir.path());
    s.max_reads_in_flight = 8;
    s.max_streams_per_user = 16;
    let m = TestMaster::start_with(dir, s).await;
    let token = m.api.token(&Auth::user()).await;
    let opened = futures_open(&m.api, &token, 70).await;
    let ok = opened.iter().filter(|r| r.status() == StatusCode::OK).count();
    let refused: Vec<&reqwest::Response> =
        opened.iter().filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS).collect();
    assert_eq!((ok, refused.len()), (16, 54));
    assert!(refused.iter().all(|r| r.headers().contains_key("retry-after")));
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(m.api.get("/list_projects/", &Auth::None).await.status, StatusCode::OK);
    }
    assert_eq!(m.api.get("/list_users/", &Auth::root()).await.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // Closed streams give their slots back.
    drop(opened);
    wait_for(10, "a stream slot", || async {
        let r = m.api.client.get(format!("{}/events", m.api.base)).bearer_auth(&token).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
}

async fn futures_open(api: &Api, token: &str, n: usize) -> Vec<reqwest::Response> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(api.client.get(format!("{}/events", api.base)).bearer_auth(token).send().await.unwrap());
    }
    out
}

/// Reads a stream until `until` is in what it sent, or 10 s pass; returns what it sent.
async fn read_stream(resp: &mut reqwest::Response, until: &str) -> String {
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains(until) {
        match tokio::time::timeout_at(deadline.into(), resp.chunk()).await {
            Ok(Ok(Some(c))) => text.push_str(&String::from_utf8_lossy(&c)),
            _ => panic!("the stream never sent {until}: {text}"),
        }
    }
    text
}

/// A `user` watching `/events` sees the commits of projects and run states, never those of users
/// or slaves (names, comments, slave addresses), which only root may read.
#[tokio::test]
async fn events_show_a_user_no_user_or_slave_commits() {
    let m = TestMaster::start().await;
    let open = |auth: Auth| {
        let req = m.api.client.get(format!("{}/events", m.api.base)).header("last-event-id", "0");
        match auth {
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            _ => req,
        }
        .send()
    };
    let mut as_user = open(Auth::user()).await.unwrap();
    let mut as_root = open(Auth::root()).await.unwrap();
    let r = m
        .api
        .post(
            "/create_api_user/",
            &json!({"username": "bob", "password": "bob-pw-1", "comment": "hired bob"}),
            &Auth::root(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = m.api.post("/add_slave/", &json!({"hostname": "slave-a.internal", "port": 7001}), &Auth::root()).await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = m.api.post("/add_project/", &json!({"project": "last", "source": "last"}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let seen = read_stream(&mut as_user, "\"key\":\"last\"").await;
    for hidden in ["bob", "hired", "slave-a", "alice"] {
        assert!(!seen.contains(hidden), "a user saw {hidden}: {seen}");
    }
    let root_saw = read_stream(&mut as_root, "\"key\":\"last\"").await;
    assert!(root_saw.contains("hired bob") && root_saw.contains("slave-a.internal"), "{root_saw}");
}

async fn mirrorctl(home: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(binary("mirrorctl"));
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A master (or something posing as one) that redirects to another origin gets nothing sent
/// there: no password, no token, no body.
#[tokio::test]
async fn mirrorctl_follows_no_redirect_to_another_origin() {
    let elsewhere = Recorder::start(http_response("200 OK", &[], "{}")).await;
    for status in ["307 Temporary Redirect", "308 Permanent Redirect", "302 Found"] {
        let location = format!("{}/get_token/", elsewhere.endpoint());
        let redirector = Recorder::start(http_response(status, &[("location", location)], "")).await;
        let home = tempfile::tempdir().unwrap();
        let url = redirector.endpoint();
        let (code, stderr) = mirrorctl(
            home.path(),
            &["--url", &url, "login", "--user", "root", "--password-stdin"],
            "hunter2-pw\n",
            &[],
        )
        .await;
        assert_ne!(code, 0, "{stderr}");
        assert!(stderr.contains("not followed"), "{stderr}");
        let env = [("MIRRORCTL_USER", "root"), ("MIRRORCTL_PASSWORD", "hunter2-pw")];
        let (code, _) = mirrorctl(
            home.path(),
            &["--url", &url, "users", "passwd", "alice", "--password-stdin"],
            "new-pw-1\n",
            &env,
        )
        .await;
        assert_ne!(code, 0);
        assert_eq!(redirector.requests().len(), 2, "{status}");
    }
    assert_eq!(elsewhere.requests(), Vec::<String>::new(), "a request followed the redirect");
}

fn project_file(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A file of `projects_dir` that claims a dest an API project holds (or that is not a document
/// the master reads) is named in the log and skipped at start; the master starts with the rest.
/// `POST /reload` refuses it by name, changing nothing.
#[tokio::test]
async fn a_squatted_dest_or_a_bad_file_leaves_the_master_starting_and_names_the_file() {
    let work = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let env = [("MIRROR_ROOT_PASSWORD", ROOT_PASSWORD), ("MIRROR_MASTER__CONFINE", "off")];
    let m = MasterProcess::start(work.path(), &env).await;
    let r = m.api.post("/add_project/", &json!({"project": "mine", "source": "squat"}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    m.kill().await;
    project_file(
        files.path(),
        "a-squat.yaml",
        "id: theirs\nproject: theirs\nrsync_host: h.example\nrsync_module: m\ndest: squat\n",
    );
    project_file(
        files.path(),
        "b-good.yaml",
        "id: good\nproject: good\nrsync_host: h.example\nrsync_module: m\ndest: good\n",
    );
    project_file(files.path(), "c-bomb.yaml", "a: &a [x, x]\nb: [*a, *a]\n");
    project_file(files.path(), "d-twice.yaml", "id: twice\nproject: twice\nproject: again\ndest: twice\n");
    let dir = files.path().to_str().unwrap().to_owned();
    let mut env = env.to_vec();
    env.push(("MIRROR_MASTER__PROJECTS_DIR", dir.as_str()));
    let mut m = MasterProcess::start(work.path(), &env).await;
    let listed = m.api.get("/list_projects/", &Auth::root()).await.body;
    let mut ids: Vec<&str> = listed.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["good", "mine"]);
    let log = m.drain_log().join("\n");
    for file in ["a-squat.yaml", "c-bomb.yaml", "d-twice.yaml"] {
        assert!(log.contains(file), "{file} is not named in the log:\n{log}");
    }
    let r = m.api.post("/reload", &json!({}), &Auth::root()).await;
    assert!(r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::CONFLICT, "{}", r.text);
    assert!(r.text.contains("a-squat.yaml") || r.text.contains("c-bomb.yaml"), "{}", r.text);
    m.kill().await;
}

/// Every page and answer carries the headers that keep a browser from sniffing a run log into
/// HTML, framing a page, or leaking our URLs as a referrer; no page of ours may run a script but
/// Swagger UI's own.
#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let m = TestMaster::start().await;
    for path in ["/", "/status/", "/docs/", "/openapi.json", "/list_projects/", "/runs/1/log", "/metrics", "/nowhere"] {
        let r = m
            .api
            .client
            .get(format!("{}{path}", m.api.base))
            .basic_auth("root", Some(ROOT_PASSWORD))
            .send()
            .await
            .unwrap();
        let h = r.headers();
        assert_eq!(h.get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{path}");
        assert_eq!(h.get("x-frame-options").map(|v| v.to_str().unwrap()), Some("DENY"), "{path}");
        assert_eq!(h.get("referrer-policy").map(|v| v.to_str().unwrap()), Some("no-referrer"), "{path}");
        let csp = h.get("content-security-policy").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        if path != "/docs/" {
            assert!(!csp.contains("script-src"), "{path}: {csp}");
        }
    }
}
