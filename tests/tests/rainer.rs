//! Rainer's own client, unchanged (issue 27): pyrainer 0.26 from PyPI (`scripts/test.sh` puts it
//! in `target/pyrainer-venv`) lists, shows, logs, commits, edits with a scripted `$EDITOR` and
//! uncommits a real master's projects through `mirrorctl proxy`, which adds the logged-in user's
//! token (pyrainer sends no credentials). Authentication is not weakened: the master itself still
//! answers 401 without a login.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use mirror_tests::{Auth, TestMaster, USER_PASSWORD, binary};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn python() -> PathBuf {
    match std::env::var_os("MIRROR_PYRAINER_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pyrainer-venv/bin/python"),
    }
}

/// pyrainer's command line (`python -m pyrainer.rainer`). `os.getlogin()`, which pyrainer asks for
/// the author, has no login session to read in a test: it is given one; nothing else is changed.
async fn pyrainer(url: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String) {
    let script = "import os, sys; os.getlogin = lambda: 'alice'; sys.argv = ['rainer'] + sys.argv[1:]; \
                  from pyrainer.rainer import main; main()";
    let mut cmd = tokio::process::Command::new(python());
    cmd.arg("-c").arg(script).arg("--url").arg(url).args(args);
    cmd.env_remove("http_proxy").env_remove("HTTP_PROXY").env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// `mirrorctl proxy` for `home`'s logged-in user; returns its base URL and the process.
async fn proxy(home: &Path, master: &str) -> (String, tokio::process::Child) {
    let mut child = tokio::process::Command::new(binary("mirrorctl"))
        .args(["--url", master, "proxy", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first =
        tokio::time::timeout(std::time::Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    let url = first.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
    (url, child)
}

#[tokio::test]
async fn pyrainer_lists_shows_logs_commits_edits_and_uncommits_through_mirrorctl_proxy() {
    let m = TestMaster::start().await;
    let body = json!({
        "project": "debian", "rsync_host": "ftp.example.org", "rsync_module": "debian", "dest": "debian",
        "rsync_password": "upstream-secret", "comment": "first mirror",
    });
    assert_eq!(m.api.post("/add_project/", &body, &Auth::root()).await.status, StatusCode::CREATED);
    let r = m.api.post("/update_project/basic/", &json!({"id": "debian", "rsync_module": "debian-cd", "rsync_password": "upstream-secret", "comment": "cd images"}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The master itself wants a login.
    assert_eq!(m.api.get("/rainer/projects", &Auth::None).await.status, StatusCode::UNAUTHORIZED);

    let home = tempfile::tempdir().unwrap();
    let login = tokio::process::Command::new(binary("mirrorctl"))
        .args(["--url", &m.api.base, "login", "--user", "alice", "--password-stdin"])
        .env_clear()
        .env("HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut login = login;
    login.stdin.take().unwrap().write_all(format!("{USER_PASSWORD}\n").as_bytes()).await.unwrap();
    assert!(login.wait().await.unwrap().success());
    let (base, _proxy) = proxy(home.path(), &m.api.base).await;
    let url = format!("{base}/rainer/projects");

    let (code, out) = pyrainer(&url, &["list"], "", &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2  debian"), "{out}");
    let (code, shown) = pyrainer(&url, &["show", "debian"], "", &[]).await;
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("rsync_module: debian-cd") && !shown.contains("upstream-secret"), "{shown}");
    let (code, log) = pyrainer(&url, &["log", "debian"], "", &[]).await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("Commit 2") && log.contains("Commit 1") && log.contains("cd images"), "{log}");
    assert!(log.contains("Author: alice") && log.contains("Author: root"), "{log}");

    // A prepared commit from stdin: version 3, kept byte for byte.
    let value = format!(
        "{}# kept verbatim, with this comment\ntimeout_secs: 600\n",
        shown.trim_end_matches('\n').to_owned() + "\n"
    );
    let prepared = format!("version: 3\nauthor: alice\ncomment: via pyrainer\n---\n{value}");
    let (code, out) = pyrainer(&url, &["commit", "debian"], &prepared, &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("'version': 3"), "{out}");
    let served = reqwest::get(format!("{url}/debian/3")).await.unwrap().text().await.unwrap();
    assert_eq!(served, value, "served back verbatim");
    let now = m.api.get("/projects/debian", &Auth::root()).await.body;
    assert_eq!((now["timeout_secs"].clone(), now["rsync_password_set"].clone()), (json!(600), json!(true)), "{now}");
    let history = m.api.get("/projects/debian/history", &Auth::root()).await.body;
    assert_eq!(
        (history["versions"][0]["author"].clone(), history["versions"][0]["comment"].clone()),
        (json!("alice"), json!("via pyrainer"))
    );

    // The same version again: Rainer's 409.
    let (code, out) = pyrainer(&url, &["commit", "debian"], &prepared, &[]).await;
    assert_ne!(code, 0);
    assert!(out.contains("409"), "{out}");

    // Edited in $EDITOR (a script), confirmed with "yes": version 4.
    let editor = home.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/^timeout_secs: 600$/timeout_secs: 900/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, out) = pyrainer(&url, &["edit", "debian"], "yes\n", &[("EDITOR", editor.to_str().unwrap())]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(m.api.get("/projects/debian", &Auth::root()).await.body["timeout_secs"], json!(900));

    // Uncommitted (confirmed; pyrainer 0.26's `-y` fails on its own, before any request): removed,
    // and the newest version is empty, as Rainer shows it.
    let (code, out) = pyrainer(&url, &["uncommit", "debian"], "yes\n", &[]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(m.api.get("/projects/debian", &Auth::root()).await.status, StatusCode::NOT_FOUND);
    let meta: Value = reqwest::get(format!("{url}/debian/meta")).await.unwrap().json().await.unwrap();
    assert_eq!((meta["version"].clone(), meta["empty"].clone()), (json!(5), json!(true)), "{meta}");
    let listed: Value = reqwest::get(url.clone()).await.unwrap().json().await.unwrap();
    assert!(listed.get("debian").is_none(), "{listed}");
    let all: Value = reqwest::get(format!("{url}?all=yes")).await.unwrap().json().await.unwrap();
    assert_eq!(all["debian"]["empty"], json!(true), "{all}");
}

fn resource_sync() -> PathBuf {
    python().with_file_name("resource-sync")
}

/// resource-sync (microcosm-resourcesync 2.0 from PyPI, unchanged) captures ten projects with
/// their dependencies from one master, page by page, into a directory of files, and replays them
/// into a second master (in batches: `PATCH` of the collection); after which `mirrorctl diff`
/// between the two finds nothing. Credentials come from `~/.netrc`, as `requests` reads it.
#[tokio::test]
async fn resource_sync_captures_one_master_and_replays_it_into_another() {
    let a = TestMaster::start().await;
    let b = TestMaster::start().await;
    for i in 0..10 {
        let deps: Vec<String> = match i {
            1 => vec!["p0".into()],
            2 => vec!["p1".into()],
            5 => vec!["p3".into(), "p4".into()],
            9 => vec!["p8".into(), "p2".into()],
            _ => vec![],
        };
        let body = json!({
            "project": format!("p{i}"), "rsync_host": "rsync.example.org", "rsync_module": format!("m{i}"),
            "dest": format!("p{i}"), "cron_options": {"minute": format!("{}", i * 5), "hour": "*/6"},
            "depends_on": deps,
        });
        let r = a.api.post("/add_project/", &body, &Auth::root()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let home = tempfile::tempdir().unwrap();
    let netrc = home.path().join(".netrc");
    std::fs::write(&netrc, format!("machine 127.0.0.1\nlogin root\npassword {}\n", mirror_tests::ROOT_PASSWORD))
        .unwrap();
    std::fs::set_permissions(&netrc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let conf = home.path().join("conf");
    let run = |args: Vec<String>| {
        let home = home.path().to_owned();
        async move {
            let out = tokio::process::Command::new(resource_sync())
                .args(&args)
                .env_clear()
                .env("HOME", &home)
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("LC_ALL", "C.UTF-8")
                .output()
                .await
                .unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            (out.status.success(), text)
        }
    };
    let (ok, out) =
        run(vec![format!("{}/api/projects", a.api.base), conf.display().to_string(), "-l".into(), "3".into()]).await;
    assert!(ok, "{out}");
    let mut files: Vec<String> = std::fs::read_dir(conf.join("projects"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 10, "{files:?}\n{out}");
    let captured = std::fs::read_to_string(conf.join("projects").join(&files[9])).unwrap();
    assert!(captured.contains("parent:projects") && !captured.contains("rsync_password"), "{captured}");

    let (ok, out) =
        run(vec![conf.display().to_string(), format!("{}/api/projects", b.api.base), "-b".into(), "4".into()]).await;
    assert!(ok, "{out}");
    let exported = a.api.get("/export?format=yaml", &Auth::root()).await;
    let file = home.path().join("a.yaml");
    std::fs::write(&file, &exported.text).unwrap();
    let diff = tokio::process::Command::new(binary("mirrorctl"))
        .args(["diff", file.to_str().unwrap()])
        .env_clear()
        .env("MIRRORCTL_URL", &b.api.base)
        .env("MIRRORCTL_USER", "root")
        .env("MIRRORCTL_PASSWORD", mirror_tests::ROOT_PASSWORD)
        .output()
        .await
        .unwrap();
    assert!(diff.status.success(), "{}", String::from_utf8_lossy(&diff.stderr));
    assert_eq!(String::from_utf8_lossy(&diff.stdout), "", "{}", String::from_utf8_lossy(&diff.stderr));
    // Dependencies arrived whole.
    assert_eq!(b.api.get("/projects/p9", &Auth::root()).await.body["depends_on"], json!(["p8", "p2"]));
    // Without credentials, the collection is not readable.
    assert_eq!(b.api.get("/api/projects", &Auth::None).await.status, StatusCode::UNAUTHORIZED);
}
