//! mirror-slave: accepts sync requests from the master only (Bearer: this slave's token), pulls each
//! project from the master's rsync daemon (one rsync per project at a time, one follow-up queued
//! for a newer generation), and reports to the master once rsync has really ended.

pub mod config;
pub mod error;

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
use mirror_common::Secret;
use mirror_common::api::{
    CompletionReport, ProjectId, PublishRequest, Published, RunStats, ServedProject, SlaveStatus, SyncAccepted,
    SyncRequest, SyncState, SyncStatus,
};
use mirror_common::rsync_opts::{check_option, rsync_argv};
use mirror_common::time::Timestamp;
use mirror_runtime::fs::{TEMP_DIR, resolve_symlinks};
use mirror_runtime::rsync::{ConfineStatus, Ending, RsyncCommand, RunAs, run_rsync};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Settings;
use crate::error::SlaveError;

/// Where the generations of projects with `flip` live: `<root>/.mirror-sync-gen/<project>/<n>`;
/// the project's path is a symlink to the one served.
pub const GEN_DIR: &str = ".mirror-sync-gen";

/// A sync request is a small JSON document.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

struct Slot {
    running: i64,
    /// The newest request that came while `running` was being pulled: exactly one follow-up.
    pending: Option<Accepted>,
}

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
    slots: Mutex<HashMap<ProjectId, Slot>>,
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

/// A request that passed [`validate`], with the path it names, checked once and carried along.
#[derive(Debug, Clone)]
struct Accepted {
    req: SyncRequest,
    /// The project's directory relative to the module and to our root.
    rel: PathBuf,
}

/// Checks a request; the error names the field and says why. `confined`: our pulls are confined,
/// so options that name a path are allowed.
fn validate(confined: bool, req: SyncRequest) -> Result<Accepted, SlaveError> {
    // The project, the path and the source were parsed into their types with the body.
    if req.generation < 1 {
        return Err(SlaveError::invalid("generation", "must be at least 1"));
    }
    for (i, opt) in req.options.iter().enumerate() {
        check_option(opt, confined).map_err(|m| SlaveError::invalid(format!("options[{i}]"), m))?;
    }
    let rel = req.path.as_path().to_owned();
    check_rel(&rel)?;
    Ok(Accepted { req, rel })
}

/// A project's path must not lie in this slave's own directories.
fn check_rel(rel: &Path) -> Result<(), SlaveError> {
    match rel.components().next().map(|c| c.as_os_str()) {
        Some(first) if first == TEMP_DIR || first == GEN_DIR => {
            Err(SlaveError::invalid("path", format!("{} holds this slave's own files", first.to_string_lossy())))
        }
        _ => Ok(()),
    }
}

/// `POST /publish/`: the staged generation becomes the served tree in one rename (a symlink
/// swap): a reader sees the old tree or the new one, never a mix. The old one stays for readers
/// still in it until the next publish.
async fn publish(state: State<AppState>, request: Request) -> Response {
    publish_inner(state, request).await.unwrap_or_else(|e| e.at("publish"))
}

async fn publish_inner(State(state): State<AppState>, request: Request) -> Result<Response, SlaveError> {
    if !authorized(&state, &request) {
        return Err(SlaveError::Unauthorized);
    }
    let bytes = axum::body::to_bytes(request.into_body(), MAX_REQUEST_BYTES)
        .await
        .map_err(|_| SlaveError::TooLarge(MAX_REQUEST_BYTES))?;
    let req: PublishRequest = mirror_common::parse_json(&bytes).map_err(SlaveError::from)?;
    let rel = req.path.as_path().to_owned();
    check_rel(&rel)?;
    let served = lock(&state.served).get(&req.project).cloned().unwrap_or_default();
    if served.generation >= req.generation {
        let flipped_at = served.synced_at.unwrap_or_else(now);
        return Ok(Json(Published { generation: served.generation, flipped_at }).into_response());
    }
    let gens = state.root.join(GEN_DIR).join(req.project.as_str());
    let target = gens.join(req.generation.to_string());
    if !tokio::fs::metadata(&target).await.is_ok_and(|m| m.is_dir()) {
        return Err(SlaveError::Conflict(format!("generation {} is not staged here", req.generation)));
    }
    let link = state.root.join(&rel);
    let flipped_at = flip(&link, &target, &gens, req.generation)
        .await
        .map_err(|e| SlaveError::Internal(format!("cannot publish generation {}: {e}", req.generation)))?;
    {
        let mut all = lock(&state.served);
        let entry = all.entry(req.project.clone()).or_default();
        entry.generation = req.generation;
        entry.synced_at = Some(flipped_at);
        entry.staged = entry.staged.filter(|s| *s > req.generation);
        entry.last_status = SyncStatus::Success.as_str().into();
        entry.last_message = Some("published".into());
    }
    state.save_served().await;
    tracing::info!(project.id = %req.project, generation = req.generation, "published");
    Ok(Json(Published { generation: req.generation, flipped_at }).into_response())
}

/// Points `link` at `target` by renaming a new symlink over it; then removes the generations
/// older than the one it pointed at before (readers may still be in that one).
async fn flip(link: &Path, target: &Path, gens: &Path, generation: i64) -> std::io::Result<Timestamp> {
    let parent = link.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    tokio::fs::create_dir_all(parent).await?;
    let name = link.file_name().ok_or_else(|| std::io::Error::other("no name"))?.to_string_lossy();
    let tmp = parent.join(format!(".{name}.flip-{generation}"));
    let _ = tokio::fs::remove_file(&tmp).await;
    tokio::fs::symlink(target, &tmp).await?;
    let previous = match tokio::fs::symlink_metadata(link).await {
        Ok(m) if m.is_symlink() => {
            let previous = tokio::fs::read_link(link).await.ok();
            tokio::fs::rename(&tmp, link).await?;
            previous
        }
        // A tree served before this project flipped: the link and the tree swap places in one
        // step, then the tree is kept as the previous generation.
        Ok(m) if m.is_dir() => {
            let aside = gens.join("0");
            let _ = tokio::fs::remove_dir_all(&aside).await;
            match exchange(&tmp, link).await {
                Ok(()) => tokio::fs::rename(&tmp, &aside).await?,
                // A file system (or kernel) without RENAME_EXCHANGE: moved aside first, the one moment
                // without a tree, once per project.
                Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EINVAL | nix::libc::ENOSYS)) => {
                    tokio::fs::rename(link, &aside).await?;
                    tokio::fs::rename(&tmp, link).await?;
                }
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(e);
                }
            }
            Some(aside)
        }
        _ => {
            tokio::fs::rename(&tmp, link).await?;
            None
        }
    };
    let flipped_at = now();
    let (gens, keep) = (gens.to_owned(), [Some(target.to_owned()), previous]);
    tokio::task::spawn_blocking(move || {
        for entry in std::fs::read_dir(&gens).into_iter().flatten().flatten() {
            let p = entry.path();
            // A newer generation, staged or being pulled (`<n>.partial`), is not ours to remove.
            let number = p.file_name().and_then(|n| n.to_str()).map(|n| n.trim_end_matches(".partial"));
            let staged_later = number.and_then(|n| n.parse::<i64>().ok()).is_some_and(|n| n > generation);
            if !keep.iter().flatten().any(|k| *k == p) && !staged_later {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    });
    Ok(flipped_at)
}

/// Swaps what two paths name in one step (`renameat2(RENAME_EXCHANGE)`): a reader of either
/// sees the one or the other, never nothing.
async fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let (a, b) = (a.to_owned(), b.to_owned());
    tokio::task::spawn_blocking(move || {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        renameat2(AT_FDCWD, &a, AT_FDCWD, &b, RenameFlags::RENAME_EXCHANGE).map_err(std::io::Error::from)
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn sync_from_master(state: State<AppState>, request: Request) -> Response {
    sync_inner(state, request).await.unwrap_or_else(|e| e.at("sync_from_master"))
}

async fn sync_inner(State(state): State<AppState>, request: Request) -> Result<Response, SlaveError> {
    if !authorized(&state, &request) {
        return Err(SlaveError::Unauthorized);
    }
    let bytes = axum::body::to_bytes(request.into_body(), MAX_REQUEST_BYTES)
        .await
        .map_err(|_| SlaveError::TooLarge(MAX_REQUEST_BYTES))?;
    let req: SyncRequest = mirror_common::parse_json(&bytes).map_err(SlaveError::from)?;
    let accepted = validate(state.confine.confined(), req)?;
    let req = &accepted.req;
    let (served, staged) = lock(&state.served).get(&req.project).map_or((0, None), |s| (s.generation, s.staged));
    let state_name = {
        let mut slots = lock(&state.slots);
        match slots.get_mut(&req.project) {
            Some(slot) if req.generation <= slot.running => SyncState::Running,
            Some(slot) => {
                // Only the newest generation is worth pulling after the current run.
                if slot.pending.as_ref().is_none_or(|p| p.req.generation < req.generation) {
                    slot.pending = Some(accepted.clone());
                }
                SyncState::Queued
            }
            None if req.generation <= served => SyncState::Current,
            // Staged already, waiting to be published: said again.
            None if req.flip && staged == Some(req.generation) => SyncState::Current,
            None => {
                slots.insert(req.project.clone(), Slot { running: req.generation, pending: None });
                let worker = state.clone();
                let first = accepted.clone();
                tokio::spawn(async move { worker.pull_until_current(first).await });
                SyncState::Started
            }
        }
    };
    if state_name == SyncState::Current {
        // Already served: the report may have been lost, so send it again; nothing runs twice.
        let mut report = state.report_for_served(req, served);
        if req.generation > served {
            (report.generation, report.status) = (req.generation, SyncStatus::Staged);
            report.message = "staged, waiting to be published".into();
        }
        let reporter = state.clone();
        tokio::spawn(async move { reporter.send_report(report).await });
    }
    tracing::info!(project.id = %req.project, generation = req.generation, state = state_name.as_str(), "sync request");
    Ok((StatusCode::ACCEPTED, Json(SyncAccepted { success: true, state: state_name })).into_response())
}

/// What this slave serves. Its root and rsync's messages (local paths) only for the master.
async fn status(State(state): State<AppState>, request: Request) -> Json<SlaveStatus> {
    let (running, queued) = {
        let slots = lock(&state.slots);
        let running = slots.iter().map(|(k, s)| (k.clone(), s.running)).collect();
        let queued =
            slots.iter().filter_map(|(k, s)| s.pending.as_ref().map(|p| (k.clone(), p.req.generation))).collect();
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
    async fn pull_until_current(self, first: Accepted) {
        let mut next = Some(first);
        while let Some(accepted) = next.take() {
            let report = self.pull(&accepted).await;
            let reporter = self.clone();
            tokio::spawn(async move { reporter.send_report(report).await });
            let req = &accepted.req;
            let mut slots = lock(&self.slots);
            let follow_up = slots.get_mut(&req.project).and_then(|s| s.pending.take());
            match follow_up {
                Some(f) if f.req.generation > req.generation => {
                    if let Some(s) = slots.get_mut(&req.project) {
                        s.running = f.req.generation;
                    }
                    next = Some(f);
                }
                _ => {
                    slots.remove(&req.project);
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(project.id = %accepted.req.project, generation = accepted.req.generation))]
    async fn pull(&self, accepted: &Accepted) -> CompletionReport {
        let (req, rel) = (&accepted.req, &accepted.rel);
        let started_at = now();
        // With `flip`: into a new generation beside the served one, unchanged files hard-linked.
        let gens = self.root.join(GEN_DIR).join(req.project.as_str());
        let (dest, link_dest) = if req.flip {
            let served = served_generation_dir(&self.root.join(rel), &gens).await;
            (gens.join(format!("{}.partial", req.generation)), served)
        } else {
            (self.root.join(rel), None)
        };
        let user = req.source.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        let host = req.source.host.bracketed();
        // The master's frozen copy of the generation when it names one, else its tree.
        let from = req.source_path.as_ref().map_or(rel.as_path(), |p| p.as_path());
        let source = format!("rsync://{user}{host}:{}/{}/{}/", req.source.port, req.source.module, from.display());
        // The project's upstream port means nothing here: the source URL names the master's.
        let temp = self.root.join(TEMP_DIR).join(req.project.as_str());
        let own_temp = !mirror_runtime::fs::names_temp_dir(&req.options);
        let options = req.options.iter().filter(|o| !o.starts_with("--port=")).cloned();
        let options = options.chain(own_temp.then(|| format!("--temp-dir={}", temp.display())));
        let options = options.chain(link_dest.as_ref().map(|d| format!("--link-dest={}", d.display())));
        let io_timeout = self.settings.pull_io_timeout_secs;
        let has = |name: &str| req.options.iter().any(|o| o.starts_with(name));
        let options = options
            .chain((!has("--timeout")).then(|| format!("--timeout={io_timeout}")))
            .chain((!has("--contimeout")).then(|| format!("--contimeout={io_timeout}")));
        let args = rsync_argv(options, source, format!("{}/", dest.display()));
        let command = RsyncCommand {
            program: self.rsync_path.clone(),
            args,
            password: self.rsync_password.clone(),
            timeout: Duration::from_secs(self.settings.run_timeout_secs),
            log_file: None,
            log_max_bytes: 0,
            // The pull writes only beneath the project's directory (with `flip`, its generations:
            // hard links need the served one in the same writable hierarchy), whatever the tree holds.
            confinement: self
                .confine
                .confinement(vec![if req.flip { gens.clone() } else { dest.clone() }, temp.clone()], vec![]),
            run_as: self.run_as,
            progress: None,
        };
        // A symlink in the root (one a pulled tree brought, say) must not send this pull elsewhere.
        let lands = resolve_symlinks(&dest).await;
        if req.flip {
            // What a pull killed before the end left: not a generation.
            let _ = tokio::fs::remove_dir_all(&dest).await;
        }
        let created = match &lands {
            Some(l) if *l == dest || req.flip => match self.prepare_dest(&dest).await {
                Ok(()) => self.empty_temp(&temp).await,
                Err(e) => Err(e),
            },
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
        let (mut status, exit_code, mut message, stats) = match outcome {
            Ok(o) => {
                let ok = matches!(o.ending, Ending::Success | Ending::SuccessWithWarning);
                (if ok { SyncStatus::Success } else { SyncStatus::Failed }, o.exit_code, o.message, o.stats)
            }
            Err(m) => (SyncStatus::Failed, None, m, RunStats::default()),
        };
        if req.flip {
            let staged = gens.join(req.generation.to_string());
            if status == SyncStatus::Success {
                let _ = tokio::fs::remove_dir_all(&staged).await;
                match tokio::fs::rename(&dest, &staged).await {
                    Ok(()) => status = SyncStatus::Staged,
                    Err(e) => (status, message) = (SyncStatus::Failed, format!("cannot stage: {e}")),
                }
            }
            if status != SyncStatus::Staged {
                let _ = tokio::fs::remove_dir_all(&dest).await;
            }
        }
        let ended_at = now();
        {
            let mut served = lock(&self.served);
            let entry = served.entry(req.project.clone()).or_default();
            if status == SyncStatus::Success && req.generation > entry.generation {
                entry.generation = req.generation;
                entry.synced_at = Some(ended_at);
            }
            if status == SyncStatus::Staged && entry.staged.is_none_or(|s| s < req.generation) {
                entry.staged = Some(req.generation);
            }
            entry.last_status = status.as_str().into();
            entry.last_message = Some(message.clone());
        }
        self.save_served().await;
        if status == SyncStatus::Staged {
            tracing::info!("pulled from the master, staged");
        } else if status == SyncStatus::Success {
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

    /// Removes what a killed pull left in the project's temporary directory, then makes it anew,
    /// owned by the account that pulls.
    async fn empty_temp(&self, temp: &Path) -> std::io::Result<()> {
        mirror_runtime::fs::empty_dir(temp).await?;
        self.prepare_dest(temp).await
    }

    /// Posts `body` to the master's `path` with our token, retrying with backoff (0.25 s doubling
    /// up to 32 s) while the master does not answer, `attempts` times at most or until shutdown.
    /// A refusal (4xx) is not retried. True once the master has taken it.
    async fn tell_master(&self, path: &str, body: &impl serde::Serialize, what: &str, attempts: u32) -> bool {
        let Some(token) = &self.token else { return false };
        let url = format!("{}{path}", self.settings.master_url.trim_end_matches('/'));
        let mut stop = self.stop.subscribe();
        for attempt in 0..attempts {
            match self.http.post(&url).bearer_auth(token.expose()).json(body).send().await {
                Ok(r) if r.status().is_success() => return true,
                Ok(r) if r.status().is_client_error() => {
                    tracing::warn!(status = %r.status(), "the master refused the {what}");
                    return false;
                }
                Ok(r) => tracing::warn!(status = %r.status(), attempt, "{what} not taken, retrying"),
                Err(e) => tracing::warn!(error = %e, attempt, "master unreachable, retrying the {what}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250 << attempt.min(7))) => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
        }
        false
    }

    /// Sends the report; if the master never takes it, its reconciler asks again and the report is
    /// sent anew.
    async fn send_report(&self, report: CompletionReport) {
        self.tell_master("/slave_rsync_complete/", &report, "report", 6).await;
    }

    /// Tells the master we have (re)started, so that it re-sends at once what a previous run of
    /// ours was pulling; tried until the master answers.
    async fn announce(&self) {
        if self.tell_master("/slave_started/", &serde_json::json!({}), "start notice", u32::MAX).await {
            tracing::info!("told the master we are up");
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

/// The generation directory `link` (a project's path) points at, when it is one of `gens`.
async fn served_generation_dir(link: &Path, gens: &Path) -> Option<PathBuf> {
    let target = tokio::fs::read_link(link).await.ok()?;
    (target.starts_with(gens) && tokio::fs::metadata(&target).await.is_ok_and(|m| m.is_dir())).then_some(target)
}

fn now() -> Timestamp {
    Timestamp::now()
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/sync_from_master/", post(sync_from_master))
        .route("/sync_from_master", post(sync_from_master))
        .route("/publish/", post(publish))
        .route("/publish", post(publish))
        .route("/status", get(status))
        .route("/status/", get(status))
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
        let served: BTreeMap<ProjectId, ServedProject> = match tokio::fs::read(&settings.state_file).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("state_file: {} is not valid", settings.state_file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("state_file: {}", settings.state_file.display())),
        };
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
    use axum::body::Body;
    use mirror_common::api::RsyncSource;
    use mirror_runtime::rsync::ConfineMode;
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
        flip(&link, &target, &gens, 2).await.unwrap();
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
        flip(&link, &third, &gens, 3).await.unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), third);
        assert!(target.is_dir());
    }
}
