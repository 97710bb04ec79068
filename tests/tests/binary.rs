//! The real `mirror-master` binary: configuration, the `create-user` command, and a restart that
//! keeps every piece of data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;

use mirror_tests::{Auth, MasterProcess, binary};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::AsyncWriteExt;

async fn create_user(dir: &std::path::Path, name: &str, role: &str, stdin: &str) -> std::process::Output {
    let mut child = tokio::process::Command::new(binary("mirror-master"))
        .current_dir(dir)
        .args(["create-user", name, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).await.unwrap();
    child.wait_with_output().await.unwrap()
}

#[tokio::test]
async fn a_restart_keeps_all_data_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    // No user yet: create the first root from stdin, as an operator would.
    let out = create_user(dir.path(), "admin", "root", "admin-secret\n").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = create_user(dir.path(), "admin", "root", "again\n").await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let mut master = MasterProcess::start(dir.path(), &[]).await;
    let admin = Auth::basic("admin", "admin-secret");
    let api = master.api.clone();
    let project = json!({
        "project": "fedora", "rsync_module": "fedora", "rsync_host": "rsync.example.org", "dest": "fedora",
        "rsync_password": "upstream-secret", "cron_options": {"hour": "4", "timezone": "Europe/Berlin"},
    });
    assert_eq!(api.post("/add_project/", &project, &admin).await.status, StatusCode::CREATED);
    assert_eq!(
        api.post("/add_slave/", &json!({"hostname": "s1.example", "port": 7000}), &admin).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        api.post("/create_api_user/", &json!({"username": "ops", "password": "ops-pw"}), &admin).await.status,
        StatusCode::CREATED
    );
    assert_eq!(api.get("/disable_project/?id=fedora", &admin).await.status, StatusCode::OK);
    let token = api.token(&admin).await;
    let before = (
        api.get("/list_projects/", &admin).await.body,
        api.get("/list_slaves/", &admin).await.body,
        api.get("/list_users/", &admin).await.body,
    );
    let log = master.drain_log().join("\n");
    assert!(!log.contains("upstream-secret") && !log.contains("admin-secret") && !log.contains("ops-pw"), "{log}");
    // The start says whether runs are confined (the helper sits beside the binary).
    assert!(log.contains("every rsync run is confined by Landlock"), "{log}");
    master.kill().await;

    // Told to run unconfined, it says so, and refuses the options that would need confinement.
    let mut unconfined = MasterProcess::start(dir.path(), &[("MIRROR_MASTER__CONFINE", "off")]).await;
    let log = unconfined.drain_log().join("\n");
    assert!(log.contains("rsync runs are NOT confined"), "{log}");
    assert_eq!(unconfined.api.get("/status/", &Auth::None).await.body["confined"], json!(false));
    let mut risky = project.clone();
    risky["project"] = json!("risky");
    risky["dest"] = json!("risky");
    risky["rsync_options"] = json!({"basic": ["--backup-dir=old"]});
    let r = unconfined.api.post("/add_project/", &risky, &admin).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.body["message"].as_str().unwrap().contains("Landlock"), "{}", r.text);
    unconfined.kill().await;

    let master = MasterProcess::start(dir.path(), &[]).await;
    let api = master.api.clone();
    let after = (
        api.get("/list_projects/", &admin).await.body,
        api.get("/list_slaves/", &admin).await.body,
        api.get("/list_users/", &admin).await.body,
    );
    assert_eq!(before, after);
    // The generated signing key was kept: a token from before the restart still works.
    assert_eq!(api.get("/list_users/", &Auth::Bearer(token)).await.status, StatusCode::OK);
    assert_eq!(api.get("/get_token/", &Auth::basic("ops", "ops-pw")).await.status, StatusCode::OK);
    let mode = std::fs::metadata(dir.path().join("mirror-master.db")).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    master.kill().await;
}

#[tokio::test]
async fn configuration_file_environment_and_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("master.toml");
    std::fs::write(&config, "database = \"from-file.db\"\nmirror_root = \"file-root\"\npublic_read = true\n").unwrap();
    let config_arg = config.to_str().unwrap();
    // The environment overrides the file; MIRROR_ROOT_PASSWORD creates the first root.
    let mut cmd_env = vec![("MIRROR_MASTER__PUBLIC_READ", "false"), ("MIRROR_ROOT_PASSWORD", "boot-pw")];
    cmd_env.push(("MIRROR_MASTER__MIRROR_ROOT", "env-root"));
    let master = start_with_args(dir.path(), &["--config", config_arg], &cmd_env).await;
    assert_eq!(master.api.get("/list_projects/", &Auth::None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(master.api.get("/list_projects/", &Auth::basic("root", "boot-pw")).await.status, StatusCode::OK);
    assert!(dir.path().join("from-file.db").exists());
    assert!(dir.path().join("env-root").is_dir());
    assert!(!dir.path().join("file-root").exists());
    master.kill().await;

    // Bad values stop the start with a message naming them.
    for (env, key) in [
        (("MIRROR_MASTER__LISTEN", "not-an-address"), "listen"),
        (("MIRROR_MASTER__TOKEN_TTL_SECS", "0"), "token_ttl_secs"),
        (("MIRROR_MASTER__PUBLIC_READ", "perhaps"), "public_read"),
        (("MIRROR_MASTER__NO_SUCH_SETTING", "1"), "no_such_setting"),
        (("MIRROR_MASTER__JWT_SECRET", "short"), "jwt_secret"),
    ] {
        let (ok, stderr) = run_to_exit("mirror-master", dir.path(), &[], &[env]).await;
        assert!(!ok, "{env:?} was accepted");
        assert!(stderr.contains(key), "{env:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    // A secret in a file others can read stops the start, for the master and for a slave.
    use std::os::unix::fs::PermissionsExt;
    for (program, file, text, key) in [
        (
            "mirror-master",
            "secret-master.toml",
            "database = \"secret.db\"\n[rsyncd]\npassword = \"in-a-shared-file\"\n",
            "rsyncd.password",
        ),
        ("mirror-slave", "secret-slave.toml", "cluster_token = \"in-a-shared-file-0123456789\"\n", "cluster_token"),
    ] {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (ok, stderr) = run_to_exit(program, dir.path(), &["--config", path.to_str().unwrap()], &[]).await;
        assert!(!ok, "{program} started with a secret in a 0644 file");
        assert!(stderr.contains(key) && stderr.contains("chmod 600"), "{program}: {stderr}");
        assert!(!stderr.contains("in-a-shared-file"), "{program} printed the secret: {stderr}");
    }
    // Readable by its owner only, the same file is taken.
    let path = dir.path().join("secret-master.toml");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let master = start_with_args(dir.path(), &["--config", path.to_str().unwrap()], &[]).await;
    assert_eq!(master.api.get("/list_projects/", &Auth::None).await.status, StatusCode::OK);
}

/// Runs a binary that is expected to stop at once: whether it succeeded, and what it printed on stderr.
async fn run_to_exit(program: &str, dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = tokio::process::Command::new(binary(program))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn start_with_args(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> MasterProcess {
    MasterProcess::start_with_args(dir, args, env).await
}

#[tokio::test]
async fn json_logs_carry_the_request_id_the_client_sees() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("MIRROR_MASTER__LOG_FORMAT", "json"), ("MIRROR_ROOT_PASSWORD", "root-pw")];
    let mut master = MasterProcess::start(dir.path(), &env).await;
    let body =
        json!({"project": "debian", "rsync_host": "rsync.example.org", "rsync_module": "debian", "dest": "debian"});
    let sent = master
        .api
        .client
        .post(format!("{}/add_project/", master.api.base))
        .basic_auth("root", Some("root-pw"))
        .header("x-request-id", "client-chosen-42")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::CREATED);
    assert_eq!(sent.headers()["x-request-id"], "client-chosen-42");
    // Without one, or with one that is not plain, the master makes its own.
    let own = master
        .api
        .client
        .get(format!("{}/status/", master.api.base))
        .header("x-request-id", "a b")
        .send()
        .await
        .unwrap();
    let made = own.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(made.len() == 16 && made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");

    let lines = mirror_tests::wait_for(10, "the log line of the request", || {
        let lines = master.drain_log();
        async move { lines.iter().any(|l| l.contains("project added")).then_some(lines) }
    })
    .await;
    for line in &lines {
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(parsed["timestamp"].is_string() && parsed["level"].is_string(), "{line}");
    }
    let added = lines.iter().find(|l| l.contains("project added")).unwrap();
    let added: serde_json::Value = serde_json::from_str(added).unwrap();
    assert_eq!(added["span"]["request_id"], json!("client-chosen-42"), "{added}");
}

/// The systemd units in `config/systemd` pass `systemd-analyze verify` without a warning (with
/// the binaries of this build in place of /usr/local/bin).
#[tokio::test]
async fn the_systemd_units_verify() {
    let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/systemd");
    let bin_dir = binary("mirror-master").parent().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for name in ["mirror-master.service", "mirror-slave.service"] {
        let text = std::fs::read_to_string(units.join(name)).unwrap();
        assert!(text.contains("EnvironmentFile=/etc/mirror-sync/") && text.contains("StateDirectory="), "{name}");
        assert!(text.contains("User=mirror-sync"), "{name} runs as its own user");
        let path = dir.path().join(name);
        std::fs::write(&path, text.replace("/usr/local/bin/", &format!("{}/", bin_dir.display()))).unwrap();
        paths.push(path);
    }
    let out = tokio::process::Command::new("systemd-analyze").arg("verify").args(&paths).output().await.unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}
