//! Helpers for the end-to-end tests: a real master (in-process on port 0, or the real binary),
//! an HTTP client with the three ways of logging in, and waiting on readiness, never on a sleep.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is a test failure

pub mod browser;
pub mod cluster;
pub mod console;
pub mod pg;
pub mod rsyncd;
pub mod s3;
pub mod servers;
pub mod sshd;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use mirror_master::Application;
use mirror_master::config::{Secret, Settings};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const ROOT_PASSWORD: &str = "root-password-for-tests";
pub const USER_PASSWORD: &str = "user-password-for-tests";
/// The tests sign their own (expired) tokens with this key.
pub const JWT_SECRET: &str = "test-signing-key-that-is-long-enough-0123456789";

#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Basic(String, String),
    Bearer(String),
}

impl Auth {
    pub fn basic(user: &str, password: &str) -> Auth {
        Auth::Basic(user.into(), password.into())
    }
    pub fn root() -> Auth {
        Auth::basic("root", ROOT_PASSWORD)
    }
    pub fn user() -> Auth {
        Auth::basic("alice", USER_PASSWORD)
    }
}

/// A response read whole: status, content type and JSON body (`Null` when not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
    pub text: String,
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Api {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Api { base, client }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>, auth: &Auth) -> Reply {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        req = match auth {
            Auth::None => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
            Auth::Bearer(t) => req.bearer_auth(t),
        };
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let content_type =
            resp.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_owned()).unwrap_or_default();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, content_type, body, text }
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> Reply {
        self.call(Method::GET, path, None, auth).await
    }

    pub async fn post(&self, path: &str, body: &Value, auth: &Auth) -> Reply {
        self.call(Method::POST, path, Some(body), auth).await
    }

    pub async fn token(&self, auth: &Auth) -> String {
        let r = self.get("/get_token/", auth).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["token"].as_str().unwrap().to_owned()
    }
}

/// A master running inside the test process, on a free port, with its own SQLite file.
pub struct TestMaster {
    pub api: Api,
    pub dir: TempDir,
    pub settings: Settings,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestMaster {
    pub fn settings_in(dir: &Path) -> Settings {
        Settings {
            listen: "127.0.0.1:0".into(),
            database: test_database(dir),
            mirror_root: dir.join("mirror"),
            jwt_secret: Some(Secret::new(JWT_SECRET)),
            initial_root_password: Some(Secret::new(ROOT_PASSWORD)),
            log_dir: dir.join("logs"),
            retries: 2,
            retry_base_ms: 50,
            shutdown_grace_secs: 2,
            rsyncd: mirror_master::config::RsyncdSettings { manage: false, ..Default::default() },
            // The tests expect every run confined: fail at start rather than run unconfined.
            confine: mirror_master::config::ConfineMode::Required,
            ..Settings::default()
        }
    }

    pub async fn start() -> TestMaster {
        let dir = tempfile::tempdir().unwrap();
        let settings = Self::settings_in(dir.path());
        Self::start_with(dir, settings).await
    }

    pub async fn start_with(dir: TempDir, settings: Settings) -> TestMaster {
        let app = Application::build(settings.clone()).await.unwrap();
        let api = Api::new(format!("http://{}", app.local_addr().unwrap()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        let master = TestMaster { api, dir, settings, shutdown: Some(tx), task: Some(task) };
        // A second user with the `user` role, for role checks (already there when a database is reopened).
        let r = master
            .api
            .post(
                "/create_api_user/",
                &serde_json::json!({"username": "alice", "password": USER_PASSWORD}),
                &Auth::root(),
            )
            .await;
        assert!(r.status == StatusCode::CREATED || r.status == StatusCode::CONFLICT, "{}", r.text);
        master
    }

    pub fn mirror_root(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path().join("mirror")).unwrap()
    }

    /// Stops serving and waits until the database is closed; the directory is kept.
    pub async fn stop(mut self) -> TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }
}

/// Where a test master keeps its state: `master.db` in its directory; or, when the suite runs on
/// PostgreSQL (`MIRROR_TEST_DATABASE=postgres`, with `MIRROR_TEST_POSTGRES` naming the server), a
/// fresh database of its own there. A reopened directory keeps its database (the name is kept in
/// the directory).
pub fn test_database(dir: &Path) -> PathBuf {
    if std::env::var("MIRROR_TEST_DATABASE").as_deref() != Ok("postgres") {
        return dir.join("master.db");
    }
    let base = std::env::var("MIRROR_TEST_POSTGRES").expect("MIRROR_TEST_DATABASE=postgres needs MIRROR_TEST_POSTGRES");
    let kept = dir.join("postgres-database");
    if let Ok(url) = std::fs::read_to_string(&kept) {
        return PathBuf::from(url);
    }
    let url = create_postgres_database(&base);
    std::fs::write(&kept, &url).unwrap();
    PathBuf::from(url)
}

/// Creates an empty database on the PostgreSQL server at `base`; its URL. (On a thread of its
/// own: callers may be inside a runtime, or not.)
pub fn create_postgres_database(base: &str) -> String {
    let name = format!("t_{:016x}", rand::random::<u64>());
    let admin = format!("{base}/postgres");
    let create = format!("CREATE DATABASE {name}");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(create)).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        })
    })
    .join()
    .unwrap();
    format!("{base}/{name}")
}

/// The workspace's `target/<profile>` directory, where `cargo build` put the binaries.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test binary>
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` before the tests", path.display());
    path
}

/// A real `mirror-master` process. Its address is read from its own start-up log line.
pub struct MasterProcess {
    pub child: Child,
    pub api: Api,
    pub log: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// The lines read while waiting for the address, given back by [`MasterProcess::drain_log`].
    early: Vec<String>,
}

impl MasterProcess {
    /// Starts the binary in `cwd` with `env`, on a free port unless `env` sets the listen address,
    /// and waits until it answers.
    pub async fn start(cwd: &Path, env: &[(&str, &str)]) -> MasterProcess {
        Self::start_with_args(cwd, &[], env).await
    }

    pub async fn start_with_args(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> MasterProcess {
        let mut cmd = Command::new(binary("mirror-master"));
        cmd.current_dir(cwd)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MIRROR_MASTER__LISTEN", "127.0.0.1:0")
            // Tests run many masters at once: none manages a daemon on the fixed default port unless asked.
            .env("MIRROR_MASTER__RSYNCD__MANAGE", "false")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, mut log) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut early = Vec::new();
        let addr = loop {
            let line = tokio::time::timeout_at(deadline.into(), log.recv())
                .await
                .expect("master did not report its address in time")
                .expect("master exited before serving");
            let line = strip_ansi(&line);
            if let Some(rest) = line.split("listen=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            // log_format = "json"
            if let Some(rest) = line.split("\"listen\":\"").nth(1) {
                break rest.split('"').next().unwrap().to_owned();
            }
            early.push(line);
        };
        let api = Api::new(format!("http://{addr}"));
        wait_until_serving(&api).await;
        MasterProcess { child, api, log, early }
    }

    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// Every log line printed so far.
    pub fn drain_log(&mut self) -> Vec<String> {
        let mut out = std::mem::take(&mut self.early);
        while let Ok(l) = self.log.try_recv() {
            out.push(strip_ansi(&l));
        }
        out
    }
}

pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Polls until the API answers (it is already bound, so this is short).
pub async fn wait_until_serving(api: &Api) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = api.client.get(format!("{}/list_projects/", api.base)).send().await
            && r.status().as_u16() != 503
        {
            return;
        }
        assert!(Instant::now() < deadline, "master at {} never answered", api.base);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A token signed with the tests' key, `seconds` from now (negative: already expired).
pub fn token_expiring_in(username: &str, seconds: i64) -> String {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        iat: i64,
        exp: i64,
    }
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims { sub: username, iat: now - 7200, exp: now + seconds },
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn basic_header(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Polls `check` until it returns `Some`, failing the test after `secs` seconds.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until run `id` has ended and returns it (with its log tail).
pub async fn finished_run(api: &Api, id: i64, secs: u64) -> Value {
    wait_for(secs, &format!("run {id} to end"), || async {
        let r = api.get(&format!("/runs/{id}"), &Auth::root()).await;
        let status = r.body["status"].as_str().unwrap_or("").to_owned();
        (!status.is_empty() && status != "queued" && status != "running").then_some(r.body)
    })
    .await
}

/// A TCP proxy on a free loopback port to `target` whose traffic can be held (`freeze`): the
/// connections stay open but no byte goes through, as when a network path silently drops packets.
pub struct FreezableProxy {
    pub port: u16,
    frozen: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezableProxy {
    pub async fn start(target: std::net::SocketAddr) -> FreezableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(target).await else { continue };
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::spawn(Self::pipe(ri, wo, rx.clone()));
                tokio::spawn(Self::pipe(ro, wi, rx.clone()));
            }
        });
        FreezableProxy { port, frozen, task }
    }

    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut frozen: tokio::sync::watch::Receiver<bool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let Ok(n) = from.read(&mut buf).await else { return };
            if n == 0 {
                return;
            }
            if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }

    pub fn freeze(&self, on: bool) {
        self.frozen.send_replace(on);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits (up to 10 s) until a daemon the tests started accepts connections on `port` of the
/// loopback; `false` if it ended first or never did (a port taken meanwhile: try another).
pub async fn wait_listening(child: &mut mirror_runtime::rsync::GroupChild, port: u16) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}
