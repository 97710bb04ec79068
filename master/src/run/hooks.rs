//! Hooks after a run (tunasync's `exec_on_success`/`exec_on_failure`, ftpsync's `HOOK`s): programs
//! declared in the master's configuration (`[[hooks]]`) and named by a project, run after its run
//! is recorded, confined like rsync (writes only beneath the project's tree, through the
//! confinement helper, with the run's priority and memory limit), from an empty environment plus
//! tunasync's variables and ours, their output appended to the run's log. A hook that fails is
//! noted in the run's message; the run and its generation stay as they ended.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use mirror_common::api::RunStatus;

use super::Runner;
use crate::config::HookSettings;
use crate::db;
use crate::db::projects::ProjectRow;

/// What a hook is told of the run it follows.
pub(super) struct Ended<'a> {
    pub project: &'a ProjectRow,
    pub run_id: i64,
    pub status: RunStatus,
    pub exit_code: Option<i32>,
}

impl Runner {
    /// Runs the project's hooks for how its run ended (`on_success` after a success,
    /// `on_failure` after a failure or a timeout; none after a stop).
    pub(super) async fn run_hooks(&self, ended: Ended<'_>) {
        let names = match ended.status {
            RunStatus::Success => &ended.project.hooks.on_success,
            RunStatus::Failed | RunStatus::Timeout => &ended.project.hooks.on_failure,
            _ => return,
        };
        for name in names {
            let Some(hook) = self.cfg.hooks.iter().find(|h| h.name == *name) else {
                tracing::warn!(hook = %name, "a hook the project names is no longer in the configuration");
                continue;
            };
            if let Err(why) = self.run_hook(hook, &ended).await {
                tracing::warn!(hook = %name, error = %why, "hook failed");
                let note = format!("; hook {name} failed: {why}");
                if let Err(e) = db::runs::note(&self.db, ended.run_id, &note).await {
                    tracing::warn!(error = %e, "cannot note the hook's failure");
                }
            }
        }
    }

    /// The log of run `run_id` of `p` (`<log_dir>/<project>/<run>.log`).
    pub(super) fn log_file(&self, p: &ProjectRow, run_id: i64) -> PathBuf {
        self.cfg.log_dir.join(p.id.as_str()).join(format!("{run_id}.log"))
    }

    async fn run_hook(&self, hook: &HookSettings, e: &Ended<'_>) -> Result<(), String> {
        let Some((program, args)) = hook.command.split_first() else { return Err("no program".into()) };
        let dest = e.project.dest.as_path();
        let log = self.log_file(e.project, e.run_id);
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(|x| x.to_string())?;
        let err = out.try_clone().map_err(|x| x.to_string())?;
        let mut command = match &self.cfg.confine.helper {
            Some(helper) => {
                let policy = mirror_runtime::rsync::Policy {
                    write: vec![dest.to_path_buf()],
                    read: ["/usr/bin", "/bin"].iter().map(PathBuf::from).collect(),
                };
                let confined = self.cfg.confine.confined();
                let launch = mirror_runtime::rsync::Launch {
                    policy: confined.then_some(policy),
                    parent: Some(std::process::id()),
                    limits: self.cfg.limits,
                };
                let mut c = tokio::process::Command::new(helper);
                c.args(launch.helper_args(Path::new(program), args));
                c
            }
            None => {
                let mut c = tokio::process::Command::new(program);
                c.args(args);
                c
            }
        };
        let generation = e.project.generation.to_string();
        let exit = e.exit_code.map_or_else(|| "-1".to_owned(), |c| c.to_string());
        command
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C")
            .envs(super::kinds::tunasync_env(e.project, &log))
            .env("TUNASYNC_JOB_EXIT_STATUS", &exit)
            .env("MIRROR_SYNC_RUN_ID", e.run_id.to_string())
            .env("MIRROR_SYNC_RUN_STATUS", e.status.as_str())
            .env("MIRROR_SYNC_GENERATION", generation)
            .current_dir(dest)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let mut child = mirror_runtime::rsync::GroupChild::spawn(&mut command).map_err(|x| x.to_string())?;
        let waited = tokio::time::timeout(std::time::Duration::from_secs(hook.timeout_secs), child.wait()).await;
        match waited {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(status.code().map_or_else(|| "ended by a signal".into(), |c| format!("exit {c}"))),
            Ok(Err(x)) => Err(x.to_string()),
            Err(_) => {
                // Dropped: its whole process group is killed.
                drop(child);
                Err(format!("still running after {} s: stopped", hook.timeout_secs))
            }
        }
    }
}
