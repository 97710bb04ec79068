//! The real `mirrorctl` binary against a real master and a real rsync upstream: logging in, adding,
//! listing, a `sync --wait` that follows a real run to its exit code, and the documented exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, generate_tree};
use mirror_tests::{ROOT_PASSWORD, TestMaster, binary};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `mirrorctl` with `home` as its home (its token file lives there) and nothing else of ours
/// in the environment.
async fn ctl(home: &Path, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Out {
    let mut cmd = tokio::process::Command::new(binary("mirrorctl"));
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn project(name: &str, upstream: &Upstream, module: &str) -> Value {
    json!({
        "project": name, "rsync_host": "127.0.0.1", "rsync_port": upstream.port, "rsync_module": module,
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": name,
    })
}

#[tokio::test]
async fn an_operator_logs_in_adds_syncs_and_reads_with_mirrorctl() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 10);
    let m = TestMaster::start().await;
    let url = m.api.base.clone();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    // Not logged in: the public listing works, users need a login (exit 3).
    let anon = ctl(h, &["--url", &url, "users"], None, &[]).await;
    assert_eq!(anon.code, 3, "{}", anon.stderr);
    assert!(anon.stderr.contains("mirrorctl login"), "{}", anon.stderr);

    let login = ctl(
        h,
        &["--url", &url, "login", "--user", "root", "--password-stdin"],
        Some(&format!("{ROOT_PASSWORD}\n")),
        &[],
    )
    .await;
    assert_eq!(login.code, 0, "{}", login.stderr);
    let token_file = h.join(".config/mirror-sync/mirrorctl-token.json");
    assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!std::fs::read_to_string(&token_file).unwrap().contains(ROOT_PASSWORD), "the password is not kept");
    let wrong = ctl(h, &["--url", &url, "login", "--password-stdin"], Some("wrong\n"), &[]).await;
    assert_eq!(wrong.code, 3, "{}", wrong.stderr);

    // The URL from the environment, the token from the file.
    let env = [("MIRRORCTL_URL", url.as_str())];
    let file = h.join("fedora.json");
    std::fs::write(&file, project("fedora", &upstream, "data").to_string()).unwrap();
    let added = ctl(h, &["add", "--file", file.to_str().unwrap()], None, &env).await;
    assert_eq!((added.code, added.stdout.trim()), (0, "added fedora"), "{}", added.stderr);
    let again = ctl(h, &["add", "--file", file.to_str().unwrap()], None, &env).await;
    assert_eq!(again.code, 5, "a duplicate is a conflict: {}", again.stderr);
    let broken = ctl(
        h,
        &[
            "add",
            "--name",
            "broken",
            "--host",
            "127.0.0.1",
            "--module",
            "nosuch",
            "--dest",
            "broken",
            "--schedule",
            "hour=*/6,minute=5",
        ],
        None,
        &env,
    )
    .await;
    assert_eq!(broken.code, 0, "{}", broken.stderr);
    let args = ["add", "--name", "every6h", "--host", "127.0.0.1", "--module", "m", "--dest", "every6h", "--interval"];
    let every = ctl(h, &[&args[..], &["hours=6,jitter=600"]].concat(), None, &env).await;
    assert_eq!(every.code, 0, "{}", every.stderr);
    let shown = ctl(h, &["show", "every6h", "--json"], None, &env).await;
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    let every = &shown["project"]["interval_options"];
    assert_eq!((every["hours"].clone(), every["jitter"].clone()), (json!(6), json!(600)), "{shown}");
    let bad = ctl(h, &[&args[..], &["hourz=6"]].concat(), None, &env).await;
    assert!(bad.code == 2 && bad.stderr.contains("names no interval field"), "{}", bad.stderr);
    assert_eq!(ctl(h, &["rm", "every6h"], None, &env).await.code, 0);
    // More upstreams after the flags' own, in order.
    let args = ["add", "--name", "multi", "--host", "127.0.0.1", "--module", "m", "--dest", "multi", "--upstream"];
    let multi = ctl(h, &[&args[..], &["rsync://mirror@[::1]:8873/m2/sub"]].concat(), None, &env).await;
    assert_eq!(multi.code, 0, "{}", multi.stderr);
    let shown = ctl(h, &["show", "multi", "--json"], None, &env).await;
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    let second = &shown["project"]["upstreams"][1];
    assert_eq!((second["host"].clone(), second["port"].clone()), (json!("::1"), json!(8873)), "{shown}");
    assert_eq!((second["user"].clone(), second["module"].clone()), (json!("mirror"), json!("m2/sub")), "{shown}");
    let bad = ctl(h, &[&args[..], &["ftp://127.0.0.1/m"]].concat(), None, &env).await;
    assert!(bad.code == 2 && bad.stderr.contains("rsync://"), "{}", bad.stderr);
    assert_eq!(ctl(h, &["rm", "multi"], None, &env).await.code, 0);
    // The kinds: a git mirror by its URL; a bad URL or a parameter is refused before it is sent.
    let args = ["add", "--name", "kernel", "--dest", "kernel", "--kind", "git", "--upstream-url"];
    let git = ctl(h, &[&args[..], &["https://git.example.org/linux.git"]].concat(), None, &env).await;
    assert_eq!(git.code, 0, "{}", git.stderr);
    let shown = ctl(h, &["show", "kernel"], None, &env).await;
    assert!(shown.stdout.contains("kind          git") && shown.stdout.contains("https://git.example.org/linux.git"));
    let bad = ctl(h, &[&args[..], &["https://h/a;b"]].concat(), None, &env).await;
    assert!(bad.code != 0 && bad.stderr.contains("upstream_url"), "{}", bad.stderr);
    let bad = ctl(h, &[&args[..], &["https://h/r", "--param", "Bad=1"]].concat(), None, &env).await;
    assert!(bad.code != 0 && bad.stderr.contains("params"), "{}", bad.stderr);
    assert_eq!(ctl(h, &["rm", "kernel"], None, &env).await.code, 0);
    let invalid = ctl(h, &["add", "--name", "x", "--host=-e", "--module", "m", "--dest", "x"], None, &env).await;
    assert_eq!(invalid.code, 8, "{}", invalid.stderr);
    assert!(invalid.stderr.contains("rsync_host"), "names the field: {}", invalid.stderr);

    // A real run, followed to its end.
    let sync = ctl(h, &["sync", "fedora", "--wait"], None, &env).await;
    assert_eq!(sync.code, 0, "{}\n{}", sync.stdout, sync.stderr);
    assert!(sync.stdout.contains("success") && sync.stdout.contains("files"), "{}", sync.stdout);
    assert!(upstream.data().join("dir1").exists() && m.mirror_root().join("fedora/dir1").exists());
    let idle = ctl(h, &["stop", "fedora"], None, &env).await;
    assert_eq!(idle.code, 5, "nothing to stop: {}", idle.stderr);
    let failed = ctl(h, &["sync", "broken", "--wait"], None, &env).await;
    assert_eq!(failed.code, 7, "a failed run: {}\n{}", failed.stdout, failed.stderr);

    let listed = ctl(h, &["--json", "list"], None, &env).await;
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let only_failed = ctl(h, &["list", "--status", "failed", "--format", "{id}:{status}"], None, &env).await;
    assert_eq!(only_failed.stdout.trim(), "broken:failed");
    let table = ctl(h, &["list"], None, &env).await;
    assert!(table.stdout.contains("PROJECT") && table.stdout.contains("fedora") && table.stdout.contains("success"));
    assert!(!table.stdout.contains('\x1b'), "no colour when not on a terminal");
    let history = ctl(h, &["history", "fedora"], None, &env).await;
    assert!(history.stdout.contains("manual") && history.stdout.contains("success"), "{}", history.stdout);
    let show = ctl(h, &["show", "fedora"], None, &env).await;
    assert!(show.stdout.contains("generation    1") && show.stdout.contains("recent runs"), "{}", show.stdout);
    assert_eq!(ctl(h, &["show", "nosuch"], None, &env).await.code, 4);

    // Users, switching, removing.
    let add_user = ctl(h, &["users", "add", "ops", "--password-stdin"], Some("ops-password\n"), &env).await;
    assert_eq!(add_user.code, 0, "{}", add_user.stderr);
    assert!(ctl(h, &["users"], None, &env).await.stdout.contains("ops"));
    assert_eq!(ctl(h, &["disable", "broken"], None, &env).await.code, 0);
    let disabled = ctl(h, &["list", "--status", "disabled", "--format", "{id}"], None, &env).await;
    assert_eq!(disabled.stdout.trim(), "broken");
    assert_eq!(ctl(h, &["rm", "broken"], None, &env).await.code, 0);
    assert_eq!(ctl(h, &["rm", "broken"], None, &env).await.code, 4);
    // tunasync's flush: every disabled project goes (a dependent before what it depends on).
    for (name, extra) in [("old-a", json!({})), ("old-b", json!({"depends_on": ["old-a"]}))] {
        let mut body = project(name, &upstream, "data");
        body["enabled"] = json!(false);
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let added = m.api.post("/add_project/", &body, &mirror_tests::Auth::root()).await;
        assert_eq!(added.status, reqwest::StatusCode::CREATED, "{}", added.text);
    }
    let flushed = ctl(h, &["rm", "--disabled"], None, &env).await;
    assert_eq!(flushed.code, 0, "{}{}", flushed.stdout, flushed.stderr);
    assert_eq!(flushed.stdout.trim(), "removed 2 disabled project(s): old-b, old-a");
    let left = ctl(h, &["list", "--format", "{id}"], None, &env).await;
    assert_eq!(left.stdout.trim(), "fedora");

    // Slaves: added (the token printed once), listed, rotated (a new token), removed (tunasync's rm-worker).
    let added = ctl(h, &["slaves", "add", "127.0.0.1", "--port", "7311"], None, &env).await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    let first_token = added.stdout.trim().to_owned();
    assert!(first_token.len() >= 32, "{}", added.stdout);
    let slaves = ctl(h, &["slaves"], None, &env).await;
    assert!(slaves.stdout.contains("127.0.0.1:7311"), "{}", slaves.stdout);
    let rotated = ctl(h, &["slaves", "rotate", "127.0.0.1:7311"], None, &env).await;
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    assert!(rotated.stdout.trim().len() >= 32 && rotated.stdout.trim() != first_token, "{}", rotated.stdout);
    assert_eq!(ctl(h, &["slaves", "rm", "127.0.0.1:7311"], None, &env).await.code, 0);
    assert!(!ctl(h, &["slaves"], None, &env).await.stdout.contains("7311"));
    assert_eq!(ctl(h, &["slaves", "rm", "127.0.0.1:7311"], None, &env).await.code, 4);
    assert_eq!(ctl(h, &["slaves", "rm", "no-port"], None, &env).await.code, 2);

    // The token works for curl too, and MIRRORCTL_TOKEN replaces the file.
    let token = ctl(h, &["token"], None, &env).await.stdout.trim().to_owned();
    let other_home = tempfile::tempdir().unwrap();
    let with_token =
        ctl(other_home.path(), &["users"], None, &[("MIRRORCTL_URL", &url), ("MIRRORCTL_TOKEN", &token)]).await;
    assert_eq!(with_token.code, 0, "{}", with_token.stderr);

    let completion = ctl(h, &["completion", "bash"], None, &[]).await;
    assert!(completion.code == 0 && completion.stdout.contains("mirrorctl"));
    let man = ctl(h, &["man"], None, &[]).await;
    assert!(man.code == 0 && man.stdout.contains(".TH mirrorctl 1"), "{}", man.stdout);
    assert_eq!(ctl(h, &["no-such-command"], None, &[]).await.code, 2);
    // A master that is not there.
    let down = ctl(h, &["--url", "http://127.0.0.1:9", "list"], None, &[]).await;
    assert_eq!(down.code, 6, "{}", down.stderr);
}

#[tokio::test]
async fn logs_follow_a_running_run_live_and_end_with_it() {
    let upstream = Upstream::start().await;
    // About 30 s of pulling at --bwlimit=100 (KiB/s): the run goes on while we watch.
    std::fs::write(upstream.data().join("slow.bin"), vec![7u8; 30 * 100 * 1024]).unwrap();
    let m = TestMaster::start().await;
    let mut body = project("slow", &upstream, "data");
    body["rsync_options"] = json!({"basic": ["--bwlimit=100"]});
    assert_eq!(
        m.api.post("/add_project/", &body, &mirror_tests::Auth::root()).await.status,
        reqwest::StatusCode::CREATED
    );
    let run = m.api.get("/syncup/?id=slow", &mirror_tests::Auth::root()).await.body["run_id"].as_i64().unwrap();

    let home = tempfile::tempdir().unwrap();
    let mut follower = tokio::process::Command::new(binary("mirrorctl"))
        .args(["--url", &m.api.base, "logs", "slow", "-f"])
        .env_clear()
        .env("HOME", home.path())
        .env("MIRRORCTL_USER", "root")
        .env("MIRRORCTL_PASSWORD", ROOT_PASSWORD)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(follower.stdout.take().unwrap());
    let mut first = String::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        use tokio::io::AsyncBufReadExt;
        lines.read_line(&mut first).await
    })
    .await;
    assert!(matches!(read, Ok(Ok(n)) if n > 0), "no output while the run goes: {read:?}");
    // Seen while the run is still going: the output is live.
    let status = m.api.get(&format!("/runs/{run}"), &mirror_tests::Auth::root()).await.body["status"].clone();
    assert_eq!(status, json!("running"), "first line {first:?}");

    // The run ends (stopped here): the follower ends with it.
    let stop = m.api.post(&format!("/runs/{run}/stop"), &json!({}), &mirror_tests::Auth::root()).await;
    assert_eq!(stop.status, reqwest::StatusCode::ACCEPTED, "{}", stop.text);
    let exit =
        tokio::time::timeout(std::time::Duration::from_secs(20), follower.wait()).await.expect("the follower ends");
    assert!(exit.unwrap().success());

    // Without -f: the whole output at once; a run never made is "not found".
    let whole = ctl(
        home.path(),
        &["--url", &m.api.base, "logs", "slow"],
        None,
        &[("MIRRORCTL_USER", "root"), ("MIRRORCTL_PASSWORD", ROOT_PASSWORD)],
    )
    .await;
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    assert!(whole.stdout.starts_with(first.trim_end()), "{}", whole.stdout);
    let none = ctl(
        home.path(),
        &["--url", &m.api.base, "logs", "slow", "999"],
        None,
        &[("MIRRORCTL_USER", "root"), ("MIRRORCTL_PASSWORD", ROOT_PASSWORD)],
    )
    .await;
    assert_eq!(none.code, 4, "{}", none.stderr);
}

/// An `$EDITOR` for the tests: a script that runs `before` (a command line, may be empty), then
/// replaces the `rsync_host:` line of the file it is given.
fn fake_editor(dir: &Path, name: &str, before: &str, host: &str) -> String {
    let path = dir.join(name);
    let script = format!("#!/bin/sh\nset -e\n{before}\nsed -i 's/^rsync_host: .*/rsync_host: {host}/' \"$1\"\n");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn edit_goes_through_the_editor_with_a_diff_and_a_change_made_meanwhile_is_not_overwritten() {
    let m = TestMaster::start().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let login =
        [("MIRRORCTL_URL", m.api.base.as_str()), ("MIRRORCTL_USER", "root"), ("MIRRORCTL_PASSWORD", ROOT_PASSWORD)];
    // Added from YAML.
    let yaml = h.join("deb.yaml");
    std::fs::write(
        &yaml,
        "project: deb\nrsync_host: rsync.example.org\nrsync_module: debian\ndest: deb\nrsync_password: s3cret\n\
         cron_options:\n  minute: '*/30'\n",
    )
    .unwrap();
    let added = ctl(h, &["add", "--file", yaml.to_str().unwrap()], None, &login).await;
    assert_eq!(added.code, 0, "{}", added.stderr);

    // Edited: the diff is shown, the answer taken, the change saved as version 2 with its comment.
    let editor = fake_editor(h, "edit.sh", "", "mirror2.example.org");
    let mut env = login.to_vec();
    env.push(("EDITOR", editor.as_str()));
    let edited = ctl(h, &["edit", "deb", "-m", "move upstream"], Some("y\n"), &env).await;
    assert_eq!(edited.code, 0, "{}\n{}", edited.stdout, edited.stderr);
    assert!(edited.stdout.contains("- rsync_host: rsync.example.org"), "{}", edited.stdout);
    assert!(edited.stdout.contains("+ rsync_host: mirror2.example.org"), "{}", edited.stdout);
    let now = m.api.get("/projects/deb", &mirror_tests::Auth::root()).await.body;
    assert_eq!((now["rsync_host"].clone(), now["version"].clone()), (json!("mirror2.example.org"), json!(2)));
    // A new upstream does not get the old password (it would get its challenge response).
    assert_eq!(now["rsync_password_set"], json!(false), "the password does not follow the project");
    // Answering no changes nothing.
    let declined = ctl(
        h,
        &["edit", "deb"],
        Some("n\n"),
        &[&env[..], &[("EDITOR", fake_editor(h, "e2.sh", "", "x.example.org").as_str())]].concat(),
    )
    .await;
    assert_eq!(declined.code, 0, "{}", declined.stderr);
    assert_eq!(m.api.get("/projects/deb", &mirror_tests::Auth::root()).await.body["version"], json!(2));

    // Someone else disables it while the editor is open: the save is refused, nothing overwritten.
    let ctl_bin = binary("mirrorctl");
    let meanwhile = format!("{} disable deb", ctl_bin.display());
    let racing = fake_editor(h, "race.sh", &meanwhile, "mirror3.example.org");
    let mut env = login.to_vec();
    env.push(("EDITOR", racing.as_str()));
    let refused = ctl(h, &["edit", "deb", "--yes"], None, &env).await;
    assert_eq!(refused.code, 5, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("changed by someone else") && refused.stderr.contains("kept in"),
        "{}",
        refused.stderr
    );
    let now = m.api.get("/projects/deb", &mirror_tests::Auth::root()).await.body;
    assert_eq!((now["rsync_host"].clone(), now["enabled"].clone()), (json!("mirror2.example.org"), json!(false)));

    // The versions with their diffs, and a revert.
    let versions = ctl(h, &["versions", "deb", "-p"], None, &login).await;
    assert_eq!(versions.code, 0, "{}", versions.stderr);
    assert!(versions.stdout.contains("v2") && versions.stdout.contains("\"move upstream\""), "{}", versions.stdout);
    assert!(versions.stdout.contains("+ enabled: false"), "{}", versions.stdout);
    let history = ctl(h, &["history", "deb", "--config", "-p"], None, &login).await;
    assert_eq!((history.code, &history.stdout), (0, &versions.stdout), "{}", history.stderr);
    // Back to the first upstream: its password is given again (the move dropped it).
    let reverted =
        ctl(h, &["revert", "deb", "1", "-m", "back to the first", "--password-stdin"], Some("s3cret\n"), &login).await;
    assert_eq!(reverted.code, 0, "{}", reverted.stderr);
    let now = m.api.get("/projects/deb", &mirror_tests::Auth::root()).await.body;
    assert_eq!(
        (now["rsync_host"].clone(), now["enabled"].clone(), now["version"].clone()),
        (json!("rsync.example.org"), json!(true), json!(4))
    );
    // Removed, then brought back: version 4 had a password, which versions do not keep.
    assert_eq!(ctl(h, &["rm", "deb"], None, &login).await.code, 0);
    let refused = ctl(h, &["revert", "deb", "4"], None, &login).await;
    assert!(refused.code == 8 && refused.stderr.contains("rsync_password"), "{}: {}", refused.code, refused.stderr);
    let back = ctl(h, &["revert", "deb", "4", "--password-stdin"], Some("s3cret\n"), &login).await;
    assert_eq!(back.code, 0, "{}", back.stderr);
    let now = m.api.get("/projects/deb", &mirror_tests::Auth::root()).await.body;
    assert_eq!((now["rsync_password_set"].clone(), now["version"].clone()), (json!(true), json!(6)));
}

#[tokio::test]
async fn an_expired_token_is_renewed_with_the_refresh_token_until_the_password_changes() {
    let m = TestMaster::start().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let url = m.api.base.clone();
    let login = ctl(
        h,
        &["--url", &url, "login", "--user", "alice", "--password-stdin"],
        Some(&format!("{}\n", mirror_tests::USER_PASSWORD)),
        &[],
    )
    .await;
    assert_eq!(login.code, 0, "{}", login.stderr);
    let file = h.join(".config/mirror-sync/mirrorctl-token.json");
    // One saved token per master.
    let saved_file: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let saved = saved_file["masters"][0].clone();
    assert_eq!(saved["url"], json!(url), "{saved_file}");
    assert!(saved["refresh_token"].is_string(), "{saved}");
    assert_eq!(std::fs::metadata(file.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    // The access token has expired (and is no longer even valid): the next command renews it.
    let mut expired = saved.clone();
    expired["token"] = json!("expired.not.valid");
    expired["expires_at"] = json!("2020-01-01T00:00:00.000Z");
    // Written in the older shape of one token: still read.
    std::fs::write(&file, expired.to_string()).unwrap();
    let env = [("MIRRORCTL_URL", url.as_str())];
    // A write needs the login: renewed, it gets as far as "no such project" (exit 4), not 3.
    let listed = ctl(h, &["sync", "nosuch"], None, &env).await;
    assert_eq!(listed.code, 4, "renewed and answered: {}", listed.stderr);
    let renewed: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let renewed = renewed["masters"][0].clone();
    assert_ne!(renewed["token"], json!("expired.not.valid"));
    assert_eq!(renewed["refresh_expires_at"], saved["refresh_expires_at"], "renewal does not extend the refresh token");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    // A refresh token is no login by itself.
    let as_bearer =
        m.api.get("/runs/", &mirror_tests::Auth::Bearer(saved["refresh_token"].as_str().unwrap().into())).await;
    assert_eq!(as_bearer.status, reqwest::StatusCode::UNAUTHORIZED, "{}", as_bearer.text);

    // The password changes: the refresh token is revoked with the tokens.
    let r = m
        .api
        .post(
            "/update_api_user/",
            &json!({"username": "alice", "password": "a-new-password-1"}),
            &mirror_tests::Auth::root(),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    std::fs::write(&file, expired.to_string()).unwrap();
    let refused = ctl(h, &["sync", "nosuch"], None, &env).await;
    assert_eq!(refused.code, 3, "{}", refused.stderr);
}

/// `mirrorctl add` takes every field an operator sets by hand (the password from a 0600 file or
/// stdin, never argv), and `mirrorctl show` says why the last run failed.
#[tokio::test]
async fn add_takes_every_field_by_flag_and_show_says_why_the_last_run_failed() {
    let m = TestMaster::start().await;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let login =
        [("MIRRORCTL_URL", m.api.base.as_str()), ("MIRRORCTL_USER", "root"), ("MIRRORCTL_PASSWORD", ROOT_PASSWORD)];
    let secret = h.join("upstream.password");
    std::fs::write(&secret, "flag-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = mirror_tests::rsyncd::free_port().to_string();
    let args = [
        "add",
        "--name",
        "deb",
        "--host",
        "127.0.0.1",
        "--module",
        "debian",
        "--dest",
        "deb",
        "--port",
        &port,
        "--user",
        "mirror",
        "--password-file",
        secret.to_str().unwrap(),
        "--option=--no-motd",
        "--option=-4",
        "--delete",
        "--delete-after",
        "--timeout",
        "600",
        "--schedule",
        "minute=*/30",
        "--disabled",
    ];
    let refused = ctl(h, &args, None, &login).await;
    assert!(refused.code == 2 && refused.stderr.contains("chmod 600"), "{}: {}", refused.code, refused.stderr);
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let added = ctl(h, &args, None, &login).await;
    assert_eq!(added.code, 0, "{}", added.stderr);
    // The nodes that run a project (several master nodes on PostgreSQL).
    let placed =
        ["add", "--name", "placed", "--host", "127.0.0.1", "--module", "m", "--dest", "placed", "--node", "m1,m2"];
    let r = ctl(h, &placed, None, &login).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let p = m.api.get("/projects/placed", &mirror_tests::Auth::root()).await.body;
    assert_eq!(p["node"], json!(["m1", "m2"]), "{p}");
    let p = m.api.get("/projects/deb", &mirror_tests::Auth::root()).await.body;
    assert_eq!(p["rsync_port"], json!(port.parse::<u16>().unwrap()), "{p}");
    assert_eq!((p["rsync_user"].clone(), p["rsync_password_set"].clone()), (json!("mirror"), json!(true)), "{p}");
    assert_eq!((p["timeout_secs"].clone(), p["enabled"].clone()), (json!(600), json!(false)), "{p}");
    let options = p["rsync_options"].to_string();
    assert!(options.contains("--no-motd") && options.contains("-4") && options.contains("--delete-after"), "{p}");
    assert!(!std::fs::read_to_string(h.join("upstream.password")).unwrap().is_empty());

    // Nothing listens on the port: the run fails, and show says how.
    let synced = ctl(h, &["sync", "deb", "--wait"], None, &login).await;
    assert_eq!(synced.code, 7, "{}", synced.stderr);
    let shown = ctl(h, &["show", "deb"], None, &login).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let line = shown.stdout.lines().find(|l| l.trim_start().starts_with("last run")).unwrap_or_default().to_owned();
    assert!(line.contains("failed") && line.contains("rsync"), "{}", shown.stdout);
}
