//! mirror-slave: accepts sync requests from the master only (Bearer: this slave's token), pulls each
//! project from the master's rsync daemon (one rsync per project at a time, one follow-up queued
//! for a newer generation), and reports to the master once rsync has really ended.

pub mod config;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mirror_common::api::{
    CompletionReport, RunStats, ServedProject, SlaveStatus, SyncAccepted, SyncRequest, SyncState, SyncStatus,
    is_valid_id,
};
use mirror_common::rsync_opts::{check_option, normalize_lexically, rsync_argv};
use mirror_common::{ErrorBody, Secret};
use mirror_runtime::fs::resolve_symlinks;
use mirror_runtime::rsync::{ConfineStatus, Ending, RsyncCommand, RunAs, run_rsync};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Settings;

/// A sync request is a small JSON document.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

struct Slot {
    running: i64,
    /// The newest request that came while `running` was being pulled: exactly one follow-up.
    pending: Option<SyncRequest>,
}

pub struct Inner {
    settings: Settings,
    root: PathBuf,
    token: Option<Secret>,
    rsync_password: Option<Secret>,
    confine: ConfineStatus,
    run_as: Option<RunAs>,
    http: reqwest::Client,
    slots: Mutex<HashMap<String, Slot>>,
    served: Mutex<BTreeMap<String, ServedProject>>,
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

fn error(status: StatusCode, code: &str, message: impl Into<String>, field: Option<&str>) -> Response {
    let body = ErrorBody {
        method: Some("sync_from_master".into()),
        success: false,
        error: code.into(),
        message: message.into(),
        field: field.map(String::from),
    };
    (status, Json(body)).into_response()
}

/// Checks the master's Bearer token. Without a configured token, nothing is accepted.
fn authorized(state: &AppState, request: &Request) -> bool {
    let Some(token) = &state.token else { return false };
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| token.matches(given.trim()))
}

/// A path relative to the module: no `..`, not absolute, no control characters.
fn check_path(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() || path.chars().any(char::is_control) {
        return Err("must be a relative path".into());
    }
    if p.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err("must not contain '..' or '.'".into());
    }
    normalize_lexically(p).ok_or_else(|| "must stay inside the root".into())
}

/// Checks a request; the error names the field and says why.
fn validate(state: &AppState, req: &SyncRequest) -> Result<PathBuf, (String, String)> {
    let bad = |field: &str, m: String| (field.to_owned(), m);
    if !is_valid_id(&req.project) {
        return Err(bad("project", "must match [A-Za-z0-9._-]+".into()));
    }
    if req.generation < 1 {
        return Err(bad("generation", "must be at least 1".into()));
    }
    let rel = check_path(&req.path).map_err(|m| bad("path", m))?;
    for (i, opt) in req.options.iter().enumerate() {
        check_option(opt, state.confine.confined()).map_err(|m| bad(&format!("options[{i}]"), m))?;
    }
    if !is_valid_id(&req.source.module) || req.source.user.as_deref().is_some_and(|u| !is_valid_id(u)) {
        return Err(bad("source", "module and user must match [A-Za-z0-9._-]+".into()));
    }
    if req.source.host.is_empty() || req.source.host.starts_with('-') || req.source.host.contains(['/', '@', ' ']) {
        return Err(bad("source.host", "is not a host name or address".into()));
    }
    Ok(rel)
}

async fn sync_from_master(State(state): State<AppState>, request: Request) -> Response {
    if !authorized(&state, &request) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "this slave's token is required", None);
    }
    let bytes = match axum::body::to_bytes(request.into_body(), MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            let message = format!("the request body is larger than {MAX_REQUEST_BYTES} bytes");
            return error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message, None);
        }
    };
    let req: SyncRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_json", e.to_string(), None),
    };
    if let Err((field, message)) = validate(&state, &req) {
        return error(StatusCode::BAD_REQUEST, "invalid_field", message, Some(&field));
    }
    let served = lock(&state.served).get(&req.project).map(|s| s.generation).unwrap_or(0);
    let state_name = {
        let mut slots = lock(&state.slots);
        match slots.get_mut(&req.project) {
            Some(slot) if req.generation <= slot.running => SyncState::Running,
            Some(slot) => {
                // Only the newest generation is worth pulling after the current run.
                if slot.pending.as_ref().is_none_or(|p| p.generation < req.generation) {
                    slot.pending = Some(req.clone());
                }
                SyncState::Queued
            }
            None if req.generation <= served => SyncState::Current,
            None => {
                slots.insert(req.project.clone(), Slot { running: req.generation, pending: None });
                let worker = state.clone();
                let first = req.clone();
                tokio::spawn(async move { worker.pull_until_current(first).await });
                SyncState::Started
            }
        }
    };
    if state_name == SyncState::Current {
        // Already served: the report may have been lost, so send it again; nothing runs twice.
        let report = state.report_for_served(&req, served);
        let reporter = state.clone();
        tokio::spawn(async move { reporter.send_report(report).await });
    }
    tracing::info!(project.id = %req.project, generation = req.generation, state = state_name.as_str(), "sync request");
    (StatusCode::ACCEPTED, Json(SyncAccepted { success: true, state: state_name })).into_response()
}

/// What this slave serves. Its root and rsync's messages (local paths) only for the master.
async fn status(State(state): State<AppState>, request: Request) -> Json<SlaveStatus> {
    let (running, queued) = {
        let slots = lock(&state.slots);
        let running = slots.iter().map(|(k, s)| (k.clone(), s.running)).collect();
        let queued = slots.iter().filter_map(|(k, s)| s.pending.as_ref().map(|p| (k.clone(), p.generation))).collect();
        (running, queued)
    };
    let full = authorized(&state, &request);
    let mut serving = lock(&state.served).clone();
    if !full {
        serving.values_mut().for_each(|s| s.last_message = None);
    }
    let root = full.then(|| state.root.display().to_string());
    Json(SlaveStatus { root, confined: state.confine.confined(), serving, running, queued })
}

impl AppState {
    fn report_for_served(&self, req: &SyncRequest, generation: i64) -> CompletionReport {
        let served = lock(&self.served).get(&req.project).cloned().unwrap_or_default();
        CompletionReport {
            slave: req.slave.clone(),
            project: req.project.clone(),
            generation,
            status: SyncStatus::Success,
            exit_code: Some(0),
            message: "already serving this generation".into(),
            stats: RunStats::default(),
            started_at: None,
            ended_at: served.synced_at.unwrap_or_else(now),
        }
    }

    /// Pulls `first`, then the follow-up that came meanwhile, if any, until none is left.
    async fn pull_until_current(self, first: SyncRequest) {
        let mut next = Some(first);
        while let Some(req) = next.take() {
            let report = self.pull(&req).await;
            let reporter = self.clone();
            tokio::spawn(async move { reporter.send_report(report).await });
            let mut slots = lock(&self.slots);
            let follow_up = slots.get_mut(&req.project).and_then(|s| s.pending.take());
            match follow_up {
                Some(f) if f.generation > req.generation => {
                    if let Some(s) = slots.get_mut(&req.project) {
                        s.running = f.generation;
                    }
                    next = Some(f);
                }
                _ => {
                    slots.remove(&req.project);
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(project.id = %req.project, generation = req.generation))]
    async fn pull(&self, req: &SyncRequest) -> CompletionReport {
        let started_at = now();
        let rel = check_path(&req.path).unwrap_or_default();
        let dest = self.root.join(&rel);
        let user = req.source.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        let host =
            if req.source.host.contains(':') { format!("[{}]", req.source.host) } else { req.source.host.clone() };
        let source = format!("rsync://{user}{host}:{}/{}/{}/", req.source.port, req.source.module, rel.display());
        // The project's upstream port means nothing here: the source URL names the master's.
        let options = req.options.iter().filter(|o| !o.starts_with("--port=")).cloned();
        let args = rsync_argv(options, source, format!("{}/", dest.display()));
        let command = RsyncCommand {
            program: mirror_runtime::rsync::program_path(&self.settings.rsync_path),
            args,
            password: self.rsync_password.clone(),
            timeout: Duration::from_secs(self.settings.run_timeout_secs),
            log_file: None,
            log_max_bytes: 0,
            // The pull writes only beneath the project's directory, whatever the tree holds.
            confinement: self.confine.confinement(vec![dest.clone()], vec![]),
            run_as: self.run_as,
        };
        // A symlink in the root (one a pulled tree brought, say) must not send this pull elsewhere.
        let lands = resolve_symlinks(&dest).await;
        let created = match &lands {
            Some(l) if *l == dest => self.prepare_dest(&dest).await,
            _ => Err(std::io::Error::other(format!(
                "it resolves to {}: not pulled",
                lands.as_ref().map_or_else(|| "nothing".into(), |l| l.display().to_string())
            ))),
        };
        let outcome = match created {
            Err(e) => Err(format!("cannot create {}: {e}", dest.display())),
            Ok(()) => run_rsync(&command, self.stop.subscribe(), &|_| {})
                .await
                .map_err(|e| format!("cannot start rsync: {e}")),
        };
        let (status, exit_code, message, stats) = match outcome {
            Ok(o) => {
                let ok = matches!(o.ending, Ending::Success | Ending::SuccessWithWarning);
                (if ok { SyncStatus::Success } else { SyncStatus::Failed }, o.exit_code, o.message, o.stats)
            }
            Err(m) => (SyncStatus::Failed, None, m, RunStats::default()),
        };
        let ended_at = now();
        {
            let mut served = lock(&self.served);
            let entry = served.entry(req.project.clone()).or_default();
            if status == SyncStatus::Success && req.generation > entry.generation {
                entry.generation = req.generation;
                entry.synced_at = Some(ended_at.clone());
            }
            entry.last_status = status.as_str().into();
            entry.last_message = Some(message.clone());
        }
        self.save_served().await;
        if status == SyncStatus::Success {
            tracing::info!("pulled from the master");
        } else {
            tracing::warn!(message = %message, "pull failed");
        }
        CompletionReport {
            slave: req.slave.clone(),
            project: req.project.clone(),
            generation: req.generation,
            status,
            exit_code,
            message,
            stats,
            started_at: Some(started_at),
            ended_at,
        }
    }

    /// Creates the project's directory, owned by the account that pulls into it.
    async fn prepare_dest(&self, dest: &Path) -> std::io::Result<()> {
        tokio::fs::create_dir_all(dest).await?;
        if let Some(r) = self.run_as {
            let dest = dest.to_owned();
            tokio::task::spawn_blocking(move || std::os::unix::fs::chown(dest, Some(r.uid), Some(r.gid)))
                .await
                .map_err(std::io::Error::other)??;
        }
        Ok(())
    }

    /// Sends the report, retrying with backoff while the master does not answer. If it never does,
    /// the master's reconciler asks again and the report is sent anew.
    async fn send_report(&self, report: CompletionReport) {
        let url = format!("{}/slave_rsync_complete/", self.settings.master_url.trim_end_matches('/'));
        let Some(token) = &self.token else { return };
        for attempt in 0..6u32 {
            let sent = self.http.post(&url).bearer_auth(token.expose()).json(&report).send().await;
            match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) if r.status().is_client_error() => {
                    tracing::warn!(status = %r.status(), "the master refused the report");
                    return;
                }
                Ok(r) => tracing::warn!(status = %r.status(), attempt, "report not taken, retrying"),
                Err(e) => tracing::warn!(error = %e, attempt, "master unreachable, retrying the report"),
            }
            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
        }
    }

    /// Keeps what is served across restarts (write to a temporary file, then rename).
    async fn save_served(&self) {
        let Ok(json) = serde_json::to_vec_pretty(&*lock(&self.served)) else { return };
        let path = self.settings.state_file.clone();
        let tmp = path.with_extension("tmp");
        let written = async {
            tokio::fs::write(&tmp, json).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = written.await {
            tracing::error!(path = %path.display(), error = %e, "cannot save the served generations");
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/sync_from_master/", post(sync_from_master))
        .route("/sync_from_master", post(sync_from_master))
        .route("/status", get(status))
        .route("/status/", get(status))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint", None) })
        .layer(tower_http::trace::TraceLayer::new_for_http())
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
        let served: BTreeMap<String, ServedProject> = match tokio::fs::read(&settings.state_file).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("state_file: {} is not valid", settings.state_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("state_file: {}", settings.state_file.display())),
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let listener = TcpListener::bind(addr).await.with_context(|| format!("listen: cannot bind {addr}"))?;
        let (stop, _) = watch::channel(false);
        let state = AppState(Arc::new(Inner {
            token: settings.token.clone(),
            settings,
            root,
            rsync_password,
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
