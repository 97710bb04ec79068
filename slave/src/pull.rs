//! Pulling a project from the master's rsync daemon: one pull per project at a time, one follow-up
//! queued for a newer generation, staged beside the served tree when the project flips.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mirror_common::api::{CompletionReport, RunStats, SyncRequest, SyncStatus};
use mirror_common::rsync_opts::{check_option, daemon_source, rsync_argv};
use mirror_common::time::Timestamp;
use mirror_runtime::fs::{TEMP_DIR, resolve_symlinks};
use mirror_runtime::rsync::{Ending, RsyncCommand, run_rsync};

use crate::error::SlaveError;
use crate::flip::served_generation_dir;
use crate::{AppState, GEN_DIR, lock, now};

/// A request that passed [`validate`], with the path it names, checked once and carried along.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub req: SyncRequest,
    /// The project's directory relative to the module and to our root.
    pub rel: PathBuf,
}

/// Checks a request; the error names the field and says why. `confined`: our pulls are confined,
/// so options that name a path are allowed.
pub(crate) fn validate(confined: bool, req: SyncRequest) -> Result<Accepted, SlaveError> {
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
pub(crate) fn check_rel(rel: &Path) -> Result<(), SlaveError> {
    match rel.components().next().map(|c| c.as_os_str()) {
        Some(first) if first == TEMP_DIR || first == GEN_DIR => {
            Err(SlaveError::invalid("path", format!("{} holds this slave's own files", first.to_string_lossy())))
        }
        _ => Ok(()),
    }
}

/// A project being pulled here.
pub(crate) struct Slot {
    pub running: i64,
    /// The newest request that came while `running` was being pulled: exactly one follow-up.
    pub pending: Option<Accepted>,
}

/// Where one pull writes.
struct Place {
    dest: PathBuf,
    /// The served generation, hard-linked from (`flip`).
    link_dest: Option<PathBuf>,
    /// The project's generations (`flip`).
    gens: PathBuf,
    temp: PathBuf,
}

/// A pull with `flip` that succeeded becomes generation `generation`, staged beside the served
/// one; what a failed one left goes.
async fn stage(place: &Place, generation: i64, status: SyncStatus, message: String) -> (SyncStatus, String) {
    let mut result = (status, message);
    if status == SyncStatus::Success {
        let staged = place.gens.join(generation.to_string());
        let _ = tokio::fs::remove_dir_all(&staged).await;
        result = match tokio::fs::rename(&place.dest, &staged).await {
            Ok(()) => (SyncStatus::Staged, result.1),
            Err(e) => (SyncStatus::Failed, format!("cannot stage: {e}")),
        };
    }
    if result.0 != SyncStatus::Staged {
        let _ = tokio::fs::remove_dir_all(&place.dest).await;
    }
    result
}

impl AppState {
    /// Pulls `first`, then the follow-up that came meanwhile, if any, until none is left.
    pub(crate) async fn pull_until_current(self, first: Accepted) {
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
        let req = &accepted.req;
        let started_at = now();
        let place = self.place(accepted).await;
        // A symlink in the root (one a pulled tree brought, say) must not send this pull elsewhere.
        let lands = resolve_symlinks(&place.dest).await;
        if req.flip {
            // What a pull killed before the end left: not a generation.
            let _ = tokio::fs::remove_dir_all(&place.dest).await;
        }
        let created = match &lands {
            Some(l) if *l == place.dest || req.flip => match self.prepare_dest(&place.dest).await {
                Ok(()) => self.empty_temp(&place.temp).await,
                Err(e) => Err(e),
            },
            _ => Err(std::io::Error::other(format!(
                "it resolves to {}: not pulled",
                lands.as_ref().map_or_else(|| "nothing".into(), |l| l.display().to_string())
            ))),
        };
        let outcome = match created {
            Err(e) => Err(format!("cannot create {}: {e}", place.dest.display())),
            Ok(()) => run_rsync(&self.command(accepted, &place), self.stop.subscribe(), &|_| {})
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
            (status, message) = stage(&place, req.generation, status, message).await;
        }
        let ended_at = now();
        self.record(req, status, &message, ended_at).await;
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

    /// Where the pull writes: the project's path, or with `flip` a new generation beside the
    /// served one (unchanged files hard-linked from it).
    async fn place(&self, accepted: &Accepted) -> Place {
        let (req, rel) = (&accepted.req, &accepted.rel);
        let gens = self.root.join(GEN_DIR).join(req.project.as_str());
        let temp = self.root.join(TEMP_DIR).join(req.project.as_str());
        if req.flip {
            let served = served_generation_dir(&self.root.join(rel), &gens).await;
            Place { dest: gens.join(format!("{}.partial", req.generation)), link_dest: served, gens, temp }
        } else {
            Place { dest: self.root.join(rel), link_dest: None, gens, temp }
        }
    }

    /// The pull's rsync: from the master's frozen copy of the generation when the request names
    /// one, else its tree; confined to what it writes.
    fn command(&self, accepted: &Accepted, place: &Place) -> RsyncCommand {
        let (req, rel) = (&accepted.req, &accepted.rel);
        let from = req.source_path.as_ref().map_or(rel.as_path(), |p| p.as_path());
        let user = req.source.user.as_ref().map(|u| u.as_str());
        let module = req.source.module.as_str();
        let source = daemon_source(user, &req.source.host, Some(req.source.port), module, Some(from));
        // The project's upstream port means nothing here: the source URL names the master's.
        let own_temp = !mirror_runtime::fs::names_temp_dir(&req.options);
        let options = req.options.iter().filter(|o| !o.starts_with("--port=")).cloned();
        let options = options.chain(own_temp.then(|| format!("--temp-dir={}", place.temp.display())));
        let options = options.chain(place.link_dest.as_ref().map(|d| format!("--link-dest={}", d.display())));
        let io_timeout = self.settings.pull_io_timeout_secs;
        let has = |name: &str| req.options.iter().any(|o| o.starts_with(name));
        let options = options
            .chain((!has("--timeout")).then(|| format!("--timeout={io_timeout}")))
            .chain((!has("--contimeout")).then(|| format!("--contimeout={io_timeout}")));
        // The pull writes only beneath the project's directory (with `flip`, its generations:
        // hard links need the served one in the same writable hierarchy), whatever the tree holds.
        let writes = if req.flip { place.gens.clone() } else { place.dest.clone() };
        RsyncCommand {
            program: self.rsync_path.clone(),
            args: rsync_argv(options, source, format!("{}/", place.dest.display())),
            password: self.rsync_password.clone(),
            timeout: Duration::from_secs(self.settings.run_timeout_secs),
            log_file: None,
            log_max_bytes: 0,
            confinement: self.confine.confinement(vec![writes, place.temp.clone()], vec![]),
            run_as: self.run_as,
            progress: None,
            child: Default::default(),
        }
    }

    /// What the pull left, in what this slave serves (and keeps across restarts).
    async fn record(&self, req: &SyncRequest, status: SyncStatus, message: &str, ended_at: Timestamp) {
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
            entry.last_message = Some(message.to_owned());
        }
        self.save_served().await;
        match status {
            SyncStatus::Staged => tracing::info!("pulled from the master, staged"),
            SyncStatus::Success => tracing::info!("pulled from the master"),
            SyncStatus::Failed => tracing::warn!(message = %message, "pull failed"),
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
}
