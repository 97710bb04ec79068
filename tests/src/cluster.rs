//! A cluster for the tests: a master with its managed rsync daemon, and real `mirror-slave`
//! processes on loopback ports.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use mirror_master::config::{RsyncdSettings, Secret, Settings};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::rsyncd::free_port;
use crate::{Api, Auth, TestMaster, binary, strip_ansi};

/// The token of a slave that no master issued (tests that talk to a slave directly).
pub const STANDALONE_TOKEN: &str = "standalone-slave-token-for-the-tests-0123456789";
pub const RSYNCD_PASSWORD: &str = "master-rsyncd-Pa55";

/// Master settings with a managed rsync daemon on a free port and a fast reconciler.
pub fn cluster_settings(dir: &Path) -> Settings {
    let mut s = TestMaster::settings_in(dir);
    s.rsyncd = RsyncdSettings {
        manage: true,
        host: mirror_common::api::Host::from_static("127.0.0.1"),
        port: free_port(),
        password: Some(Secret::new(RSYNCD_PASSWORD)),
        dir: dir.join("rsyncd"),
        ..RsyncdSettings::default()
    };
    s.reconcile_interval_secs = 1;
    s.notify_timeout_secs = 2;
    s.notify_retries = 1;
    s
}

pub async fn start_cluster_master() -> TestMaster {
    let dir = tempfile::tempdir().unwrap();
    let settings = cluster_settings(dir.path());
    TestMaster::start_with(dir, settings).await
}

/// A real `mirror-slave` process. Its port is fixed at creation, so a restart is the same slave.
pub struct SlaveProcess {
    pub dir: TempDir,
    pub port: u16,
    pub master_url: String,
    /// Its own token: [`STANDALONE_TOKEN`] until a master issues one ([`add_slave`]).
    pub token: String,
    extra_env: Vec<(String, String)>,
    child: Option<Child>,
    log: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
    pub api: Api,
}

impl SlaveProcess {
    pub async fn start(master_url: &str) -> SlaveProcess {
        Self::start_with_env(master_url, &[]).await
    }

    /// Starts a slave with extra `MIRROR_SLAVE__*` settings.
    pub async fn start_with_env(master_url: &str, env: &[(&str, &str)]) -> SlaveProcess {
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("rsync.password");
        std::fs::write(&password_file, format!("{RSYNCD_PASSWORD}\n")).unwrap();
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let port = free_port();
        let mut slave = SlaveProcess {
            dir,
            port,
            master_url: master_url.to_owned(),
            token: STANDALONE_TOKEN.into(),
            extra_env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            child: None,
            log: None,
            api: Api::new(format!("http://127.0.0.1:{port}")),
        };
        slave.restart().await;
        slave
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Starts (again) the process, on the same port, root and state file; waits until it answers.
    pub async fn restart(&mut self) {
        let mut child = Command::new(binary("mirror-slave"))
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MIRROR_SLAVE__LISTEN", format!("127.0.0.1:{}", self.port))
            .env("MIRROR_SLAVE__ROOT", self.root())
            .env("MIRROR_SLAVE__MASTER_URL", &self.master_url)
            .env("MIRROR_SLAVE__TOKEN", &self.token)
            .env("MIRROR_SLAVE__CONFINE", "required")
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("MIRROR_SLAVE__RSYNC_PASSWORD_FILE", self.dir.path().join("rsync.password"))
            .env("MIRROR_SLAVE__STATE_FILE", self.dir.path().join("state.json"))
            .env("MIRROR_SLAVE__LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(strip_ansi(&line)).is_err() {
                    break;
                }
            }
        });
        self.child = Some(child);
        self.log = Some(rx);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.api.client.get(format!("{}/status", self.api.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "slave on port {} never answered", self.port);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, as a crash or a power cut.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    /// `/status` as the master sees it (with this slave's token).
    pub async fn status(&self) -> Value {
        self.api.get("/status", &self.auth()).await.body
    }

    /// This slave's token, as the master sends it.
    pub fn auth(&self) -> Auth {
        Auth::Bearer(self.token.clone())
    }

    pub fn drain_log(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(rx) = self.log.as_mut() {
            while let Ok(l) = rx.try_recv() {
                out.push(l);
            }
        }
        out
    }
}

/// The generation each slave serves of `project`, from the master's propagation view.
pub async fn served_generations(api: &Api, project: &str) -> Vec<(String, i64)> {
    let r = api.get(&format!("/projects/{project}/propagation"), &Auth::root()).await;
    r.body["slaves"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| (s["slave"].as_str().unwrap_or("").to_owned(), s["generation"].as_i64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Registers a slave with the master, and restarts it with the token the master issued.
pub async fn add_slave(api: &Api, slave: &mut SlaveProcess) {
    let body = serde_json::json!({"hostname": "127.0.0.1", "port": slave.port});
    let r = api.post("/add_slave/", &body, &Auth::root()).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.text);
    slave.token = r.body["token"].as_str().expect("add_slave issues a token").to_owned();
    slave.kill().await;
    slave.restart().await;
}

/// Starts `n` slaves and registers each with the master.
pub async fn start_slaves(api: &Api, n: usize) -> Vec<SlaveProcess> {
    let mut slaves = Vec::new();
    for _ in 0..n {
        let mut s = SlaveProcess::start(&api.base).await;
        add_slave(api, &mut s).await;
        slaves.push(s);
    }
    slaves
}

/// A `/syncup/` that must succeed; returns the generation it made.
pub async fn sync_and_wait(m: &TestMaster, id: &str) -> i64 {
    let r = m.api.get(&format!("/syncup/?id={id}"), &Auth::root()).await;
    assert_eq!(r.status, reqwest::StatusCode::ACCEPTED, "{}", r.text);
    let run = crate::finished_run(&m.api, r.body["run_id"].as_i64().expect("a run id"), 60).await;
    assert_eq!(run["status"], serde_json::json!("success"), "{run}");
    m.api.get(&format!("/projects/{id}/propagation"), &Auth::root()).await.body["generation"]
        .as_i64()
        .expect("a generation")
}
