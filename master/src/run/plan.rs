//! A run's plan, prepared once for the run and for its preview: the checks that let it go, where
//! rsync receives, how long it may take, the argv of each stage, and the one builder of every
//! rsync command a run starts.

use std::path::PathBuf;
use std::time::Duration;

use mirror_common::guards::MaxDelete;
use mirror_runtime::rsync::{Confinement, RsyncCommand};

use super::Runner;
use crate::db::projects::ProjectRow;
use crate::run::rsync::{Stage, stage_argv};

/// What one run of a project does, decided before anything is written.
pub(super) struct RunPlan {
    pub project: ProjectRow,
    /// Where rsync receives (`--temp-dir`, and the probe's landing place).
    pub temp: PathBuf,
    pub timeout: Duration,
    /// Stage 1 of a two-stage project.
    pub stage1: Option<Vec<String>>,
    /// The run's command: the only stage, or stage 2 (what the deletion guard counts with).
    pub main: Vec<String>,
    /// The deletion limit in effect: the project's own, else the master's; off when its options
    /// delete nothing.
    pub limit: MaxDelete,
}

impl Runner {
    /// The plan of a run of `project`, or why it may not run now: its dest no longer resolves to
    /// itself (a symlink put in the mirror root since it was added must not send rsync's writes
    /// outside it), its options are no longer allowed (stored under older rules, or before this
    /// host lost its confinement), or it has no upstream. Nothing is written.
    pub(super) async fn plan(&self, project: ProjectRow) -> Result<RunPlan, String> {
        match crate::config::paths::resolve_dest(&self.cfg.mirror_root, &project.dest).await {
            Ok(resolved) if resolved == project.dest.as_path() => {}
            Ok(resolved) => return Err(format!("dest {} now resolves to {}", project.dest, resolved.display())),
            Err(e) => return Err(format!("dest {}: {}", project.dest, e.message)),
        }
        project.rsync_options.recheck(self.cfg.confine.confined()).map_err(|why| why.to_string())?;
        let temp = self.cfg.mirror_root.join(mirror_runtime::fs::TEMP_DIR).join(project.id.as_str());
        let name = &self.cfg.mirror_name;
        let Some(only) = crate::run::rsync::argv(&project, &temp, name) else {
            return Err("the project has a local source: there is no upstream to pull".to_owned());
        };
        let stage1 = stage_argv(&project, &temp, name, Stage::One);
        let main = stage_argv(&project, &temp, name, Stage::Two).unwrap_or(only);
        let limit = self.deletion_limit(&project);
        let timeout = project.timeout(self.cfg.default_timeout);
        Ok(RunPlan { project, temp, timeout, stage1, main, limit })
    }

    /// An rsync of the plan's project with `args`, confined to its dest and temporary directory,
    /// with no log and no progress: every command of a run is built here.
    pub(super) fn command(&self, plan: &RunPlan, args: Vec<String>) -> RsyncCommand {
        let writable = vec![plan.project.dest.as_path().to_path_buf(), plan.temp.clone()];
        RsyncCommand {
            program: self.cfg.rsync_path.clone(),
            args,
            password: plan.project.rsync_password.clone(),
            timeout: plan.timeout,
            log_file: None,
            log_max_bytes: self.cfg.log_max_bytes,
            confinement: self
                .cfg
                .confine
                .confinement(writable, vec![])
                .map(|c| Confinement { limits: self.cfg.limits, ..c }),
            run_as: self.cfg.run_as,
            progress: None,
        }
    }

    /// `args` with `--dry-run`: it reads the upstream's list, changes nothing.
    pub(super) fn dry_command(&self, plan: &RunPlan, mut args: Vec<String>) -> RsyncCommand {
        args.insert(0, "--dry-run".to_owned());
        self.command(plan, args)
    }
}
