//! A run's plan, prepared once for the run and for its preview: the checks that let it go, where
//! rsync receives, how long it may take, the argv of each stage, and the one builder of every
//! rsync command a run starts.

use std::path::PathBuf;
use std::time::Duration;

use mirror_common::guards::MaxDelete;
use mirror_common::kinds::Kind;
use mirror_runtime::rsync::{Child, Confinement, RsyncCommand, Speaks};

use super::Runner;
use super::kinds::{self, Given, Manifest};
use crate::config::ProviderSettings;
use crate::db::projects::ProjectRow;
use crate::run::rsync::{Stage, stage_argv};

/// The program a run starts.
pub(super) enum Tool {
    Rsync,
    /// With the key of an `ssh://` upstream.
    Git(Option<crate::config::GitSshKey>),
    /// The project's provider, as the configuration declared it when the run was planned.
    Command(ProviderSettings),
}

/// What one run of a project does, decided before anything is written.
pub(super) struct RunPlan {
    pub project: ProjectRow,
    pub run_id: i64,
    /// The run's log (`<log_dir>/<project>/<run>.log`).
    pub log_file: PathBuf,
    pub tool: Tool,
    /// A git or command run: the tree as it was before (rsync tells its own figures).
    pub before: Option<Manifest>,
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
    pub(super) async fn plan(&self, project: ProjectRow, run_id: i64) -> Result<RunPlan, String> {
        match crate::config::paths::resolve_dest(&self.cfg.mirror_root, &project.dest).await {
            Ok(resolved) if resolved == project.dest.as_path() => {}
            Ok(resolved) => return Err(format!("dest {} now resolves to {}", project.dest, resolved.display())),
            Err(e) => return Err(format!("dest {}: {}", project.dest, e.message)),
        }
        let temp = self.cfg.mirror_root.join(mirror_runtime::fs::TEMP_DIR).join(project.id.as_str());
        let log_file = self.log_file(&project, run_id);
        let timeout = project.timeout(self.cfg.default_timeout);
        let other = |tool, main, limit| RunPlan {
            project: project.clone(),
            run_id,
            log_file: log_file.clone(),
            tool,
            before: None,
            temp: temp.clone(),
            timeout,
            stage1: None,
            main,
            limit,
        };
        match project.source.kind {
            Kind::Rsync => {}
            Kind::Git => {
                let main = kinds::git_argv(&project).await.ok_or("the project has no upstream_url")?;
                let key =
                    match &project.source.ssh_key {
                        Some(name) => {
                            Some(self.cfg.git_ssh_keys.iter().find(|k| k.name == *name).cloned().ok_or_else(|| {
                                format!("ssh_key '{name}' is no longer in the master's configuration")
                            })?)
                        }
                        None => None,
                    };
                return Ok(other(Tool::Git(key), main, MaxDelete::Off));
            }
            Kind::Command => {
                let name = project.source.provider.as_ref().ok_or("the project names no provider")?;
                let Some(provider) = self.cfg.providers.iter().find(|p| p.name == *name) else {
                    return Err(format!("provider '{name}' is no longer in the master's configuration"));
                };
                let main = kinds::provider_argv(provider, &Given { project: &project, log_file: &log_file })?;
                let limit = project.max_delete.unwrap_or(self.cfg.max_delete);
                return Ok(other(Tool::Command(provider.clone()), main, limit));
            }
        }
        project.rsync_options.recheck(self.cfg.confine.confined()).map_err(|why| why.to_string())?;
        let name = &self.cfg.mirror_name;
        let Some(only) = crate::run::rsync::argv(&project, &temp, name) else {
            return Err("the project has a local source: there is no upstream to pull".to_owned());
        };
        let stage1 = stage_argv(&project, &temp, name, Stage::One);
        let main = stage_argv(&project, &temp, name, Stage::Two).unwrap_or(only);
        let limit = self.deletion_limit(&project);
        Ok(RunPlan { project, run_id, log_file, tool: Tool::Rsync, before: None, temp, timeout, stage1, main, limit })
    }

    /// An rsync of the plan's project with `args`, confined to its dest and temporary directory,
    /// with no log and no progress: every command of a run is built here.
    pub(super) fn command(&self, plan: &RunPlan, args: Vec<String>) -> RsyncCommand {
        let dest = plan.project.dest.as_path().to_path_buf();
        let mut writable = vec![dest.clone(), plan.temp.clone()];
        let (program, read, child) = match &plan.tool {
            Tool::Rsync => (self.cfg.rsync_path.clone(), vec![], Child::default()),
            Tool::Git(key) => {
                let (mut read, mut env) = (self.cfg.git_read.clone(), kinds::git_env());
                if let Some(key) = key {
                    read.extend([
                        key.key_file.clone(),
                        key.known_hosts.clone(),
                        self.cfg.ssh_path.clone(),
                        "/bin/sh".into(),
                    ]);
                    env.push(("GIT_SSH_COMMAND".to_owned(), kinds::ssh_command(&self.cfg.ssh_path, key)));
                }
                (self.cfg.git_path.clone(), read, Child { speaks: Speaks::Git, env, cwd: None })
            }
            Tool::Command(provider) => {
                // The run's log is opened before the program starts: tunasync's scripts may write it.
                writable.push(plan.log_file.clone());
                let given = Given { project: &plan.project, log_file: &plan.log_file };
                let env = kinds::provider_env(provider, &given);
                let program = PathBuf::from(provider.command.first().map_or("", String::as_str));
                (program, provider.read.clone(), Child { speaks: Speaks::Plain, env, cwd: Some(dest) })
            }
        };
        RsyncCommand {
            program,
            args,
            password: plan.project.rsync_password.clone(),
            timeout: plan.timeout,
            log_file: None,
            log_max_bytes: self.cfg.log_max_bytes,
            confinement: self
                .cfg
                .confine
                .confinement(writable, read)
                .map(|c| Confinement { limits: self.cfg.limits, ..c }),
            run_as: self.cfg.run_as,
            progress: None,
            child,
        }
    }

    /// `args` with `--dry-run`: it reads the upstream's list, changes nothing.
    pub(super) fn dry_command(&self, plan: &RunPlan, mut args: Vec<String>) -> RsyncCommand {
        args.insert(0, "--dry-run".to_owned());
        self.command(plan, args)
    }
}
