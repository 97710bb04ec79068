//! mirror-slave: accepts sync requests from the master only (Bearer: this slave's token), pulls each
//! project from the master's rsync daemon (one rsync per project at a time, one follow-up queued
//! for a newer generation), and reports to the master once rsync has really ended.

pub mod config;
pub mod error;
mod flip;
mod http;
mod pull;
mod report;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::{get, post};
use mirror_common::Secret;
use mirror_common::api::{ProjectId, ServedProject};
use mirror_common::time::Timestamp;
use mirror_runtime::fs::TEMP_DIR;
use mirror_runtime::rsync::{ConfineStatus, RunAs};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Settings;
use crate::error::SlaveError;

/// Where the generations of projects with `flip` live: `<root>/.mirror-sync-gen/<project>/<n>`;
/// the project's path is a symlink to the one served.
pub const GEN_DIR: &str = ".mirror-sync-gen";

pub struct Inner {
    settings: Settings,
    root: PathBuf,
    token: Option<Secret>,
    rsync_password: Option<Secret>,
    /// `rsync_path` looked up in our PATH once, at start (pulls get a short fixed PATH).
    rsync_path: PathBuf,
    confine: ConfineStatus,
    run_as: Option<RunAs>,
    http: reqwest::Client,
    slots: Mutex<HashMap<ProjectId, pull::Slot>>,
    served: Mutex<BTreeMap<ProjectId, ServedProject>>,
    /// Turned true at shutdown: running rsyncs are stopped.
    stop: watch::Sender<bool>,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now() -> Timestamp {
    Timestamp::now()
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/sync_from_master/", post(http::sync_from_master))
        .route("/sync_from_master", post(http::sync_from_master))
        .route("/publish/", post(http::publish))
        .route("/publish", post(http::publish))
        .route("/status", get(http::status))
        .route("/status/", get(http::status))
        .fallback(|| async { SlaveError::NotFound })
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(mirror_runtime::logging::request_id))
        .with_state(state)
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        settings.validate()?;
        let addr: SocketAddr = settings.listen.parse().context("listen")?;
        tokio::fs::create_dir_all(&settings.root)
            .await
            .with_context(|| format!("root: cannot create {}", settings.root.display()))?;
        let root = tokio::fs::canonicalize(&settings.root).await.context("root")?;
        let rsync_password = settings.load_rsync_password().await?;
        if settings.token.is_none() {
            tracing::warn!(
                "no token configured (the master's /add_slave/ issues it): every sync request will be refused"
            );
        }
        let confine = ConfineStatus::start(settings.confine, settings.confine_helper.clone(), "pull")
            .await
            .map_err(|e| anyhow::anyhow!("confine: {e}"))?;
        let run_as = RunAs::configured(settings.run_as.as_deref()).map_err(|e| anyhow::anyhow!("run_as: {e}"))?;
        let served = state::load(&settings.state_file).await?;
        // A pull a previous run of ours left (killed before its children could be taken along)
        // would go on writing into the tree.
        let rsync_path = mirror_runtime::rsync::program_path(&settings.rsync_path);
        let (program, marker) = (rsync_path.clone(), format!("{}/", root.display()));
        let left =
            tokio::task::spawn_blocking(move || mirror_runtime::rsync::kill_leftovers(&program, &marker)).await?;
        if left > 0 {
            tracing::warn!(processes = left, "stopped the rsync a previous run of this slave left pulling");
        }
        // What pulls killed with this slave were receiving (each pull empties its own again).
        mirror_runtime::fs::empty_dir(&root.join(TEMP_DIR))
            .await
            .with_context(|| format!("cannot empty {}", root.join(TEMP_DIR).display()))?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let listener = TcpListener::bind(addr).await.with_context(|| format!("listen: cannot bind {addr}"))?;
        let (stop, _) = watch::channel(false);
        let state = AppState(Arc::new(Inner {
            token: settings.token.clone(),
            settings,
            root,
            rsync_password,
            rsync_path,
            confine,
            run_as,
            http,
            slots: Mutex::new(HashMap::new()),
            served: Mutex::new(served),
            stop,
        }));
        Ok(Application { listener, state })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(listen = %self.listener.local_addr()?, root = %self.state.root.display(), "mirror-slave serving");
        let announcer = self.state.clone();
        tokio::spawn(async move { announcer.announce().await });
        let state = self.state.clone();
        let limits = self.state.settings.limits()?;
        mirror_runtime::server::serve(self.listener, router(self.state.clone()), limits, async move {
            shutdown.await;
            let _ = state.stop.send(true);
        })
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SlaveError;
    use crate::http::MAX_REQUEST_BYTES;
    use crate::pull::validate;
    use axum::body::Body;
    use axum::http::StatusCode;
    use mirror_common::api::RsyncSource;
    use mirror_common::api::SyncRequest;
    use mirror_runtime::rsync::ConfineMode;
    use std::path::Path;
    use tower::ServiceExt;

    fn request() -> SyncRequest {
        SyncRequest {
            slave: "127.0.0.1:7000".into(),
            project: ProjectId::from_static("fedora"),
            path: mirror_common::api::MirrorPath::from_static("pub/fedora"),
            options: vec!["-avH".into(), "--backup-dir=old".into()],
            generation: 3,
            source: RsyncSource {
                host: mirror_common::api::Host::from_static("master.example"),
                port: 8730,
                module: mirror_common::api::Name::from_static("mirror"),
                user: None,
            },
            source_path: Some(mirror_common::api::MirrorPath::from_static(".mirror-sync-snap/fedora/3")),
            flip: false,
        }
    }

    fn field_of(confined: bool, req: SyncRequest) -> String {
        match validate(confined, req) {
            Err(SlaveError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn requests_are_checked_once_and_keep_their_path() {
        let ok = validate(true, request()).unwrap();
        assert_eq!(ok.rel, PathBuf::from("pub/fedora"));
        let with = |f: &dyn Fn(&mut SyncRequest)| {
            let mut r = request();
            f(&mut r);
            r
        };
        assert_eq!(field_of(true, with(&|r| r.generation = 0)), "generation");
        assert_eq!(field_of(true, with(&|r| r.options.push("-e".into()))), "options[2]");
        // Unconfined, an option that names a path is refused: a symlink could lead it anywhere.
        assert_eq!(field_of(false, request()), "options[1]");
    }

    /// A body whose project, path or source breaks its rule is refused while parsed, naming it.
    #[test]
    fn names_and_paths_are_refused_while_parsed() {
        let mut body = serde_json::to_value(request()).unwrap();
        for (pointer, bad, field) in [
            ("/project", "-e", "project"),
            ("/path", "../etc", "path"),
            ("/path", "/etc", "path"),
            ("/source/user", "-e", "source.user"),
            ("/source/host", "-oProxy", "source.host"),
            ("/source/module", "a/b", "source.module"),
            ("/source_path", "../../etc", "source_path"),
        ] {
            let good = body.pointer(pointer).unwrap().clone();
            *body.pointer_mut(pointer).unwrap() = bad.into();
            match SlaveError::from(
                mirror_common::parse_json::<SyncRequest>(&serde_json::to_vec(&body).unwrap()).unwrap_err(),
            ) {
                SlaveError::Invalid { field: f, .. } => assert_eq!(f, field, "{pointer}"),
                other => panic!("{pointer}: {other:?}"),
            }
            *body.pointer_mut(pointer).unwrap() = good;
        }
    }

    async fn app(dir: &Path) -> AppState {
        let settings = Settings {
            listen: "127.0.0.1:0".into(),
            root: dir.join("root"),
            state_file: dir.join("state.json"),
            token: Some(Secret::new("slave-token-for-unit-tests")),
            confine: ConfineMode::Off,
            ..Settings::default()
        };
        Application::build(settings).await.unwrap().state
    }

    async fn call(state: &AppState, uri: &str, token: Option<&str>, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
        let mut req = axum::http::Request::post(uri).header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = router(state.clone()).oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn errors_have_one_shape() {
        let dir = tempfile::tempdir().unwrap();
        let state = app(dir.path()).await;
        let body = serde_json::to_vec(&request()).unwrap();
        let (status, err) = call(&state, "/sync_from_master/", Some("wrong-token-wrong-token"), body.clone()).await;
        assert_eq!(
            (status, err["error"].as_str(), err["method"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthorized"), Some("sync_from_master"))
        );
        let token = Some("slave-token-for-unit-tests");
        let (status, err) = call(&state, "/sync_from_master/", token, b"{".to_vec()).await;
        assert_eq!((status, err["error"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_json")));
        let (status, err) = call(&state, "/sync_from_master/", token, vec![b' '; MAX_REQUEST_BYTES + 1]).await;
        assert_eq!((status, err["error"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large")));
        // Not confined here: the path option is refused, naming the item.
        let (status, err) = call(&state, "/sync_from_master/", token, body).await;
        assert_eq!((status, err["field"].as_str()), (StatusCode::BAD_REQUEST, Some("options[1]")));
        let (status, err) = call(&state, "/nowhere", token, vec![]).await;
        assert_eq!(
            (status, err["error"].as_str(), err["method"].clone()),
            (StatusCode::NOT_FOUND, Some("not_found"), serde_json::Value::Null)
        );
        let publish = serde_json::json!({"project": "p", "path": "p", "generation": 3}).to_string().into_bytes();
        let (status, err) = call(&state, "/publish/", token, publish).await;
        assert_eq!(
            (status, err["error"].as_str(), err["method"].as_str()),
            (StatusCode::CONFLICT, Some("conflict"), Some("publish"))
        );
        assert!(lock(&state.slots).is_empty(), "nothing was started");
    }

    #[tokio::test]
    async fn a_tree_served_before_its_first_flip_swaps_places_with_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let (link, gens) = (dir.path().join("proj"), dir.path().join(GEN_DIR).join("proj"));
        std::fs::create_dir_all(&link).unwrap();
        std::fs::write(link.join("old.txt"), b"old").unwrap();
        let target = gens.join("2");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("new.txt"), b"new").unwrap();
        flip::flip(&link, &target, &gens, 2).await.unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), target);
        assert_eq!(std::fs::read(link.join("new.txt")).unwrap(), b"new");
        // The old tree is kept as the previous generation; nothing is left beside the link.
        assert_eq!(std::fs::read(gens.join("0").join("old.txt")).unwrap(), b"old");
        let beside: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut beside = beside;
        beside.sort();
        assert_eq!(beside, [GEN_DIR.to_owned(), "proj".to_owned()]);
        // The next flip renames a new link over this one and keeps the one it replaced.
        let third = gens.join("3");
        std::fs::create_dir_all(&third).unwrap();
        flip::flip(&link, &third, &gens, 3).await.unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), third);
        assert!(target.is_dir());
    }
}
