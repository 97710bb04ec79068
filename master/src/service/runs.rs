//! The runs service: starting a run by hand, and reading the history, with the rule of who may
//! read it (anyone when `public_read`, otherwise a logged-in caller; rsync's output only for one).

use std::sync::Arc;

use mirror_common::api::{ProjectId, RunView};

use crate::auth::Principal;
use crate::db::{self, Db};
use crate::error::Error;
use crate::read::views::run_view;
use crate::run::Runner;
use mirror_common::Secret;
use mirror_common::api::Trigger;

/// A trigger token as kept: its SHA-256 in hex. The token is 32 random bytes, so a fast hash
/// is enough (no password to guess), and checking one costs an unauthenticated caller nothing.
fn token_hash(token: &Secret) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.expose().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two hashes in time that does not depend on where they differ.
fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The most runs one listing returns.
pub const MAX_LIST: i64 = 1000;

pub struct Runs {
    pub db: Db,
    pub runner: Arc<Runner>,
    /// Whether callers who are not logged in may read the history.
    pub public_read: bool,
}

impl Runs {
    /// `/syncup/`: queues a run of the project now and returns its id. The trigger runs to its end
    /// even if the caller goes away: a request dropped between the run's row and its place in the
    /// queue would leave the project marked as running for good.
    pub async fn start(&self, caller: &Principal, id: &ProjectId) -> Result<crate::run::Started, Error> {
        self.runnable(id).await?;
        let (runner, project) = (self.runner.clone(), id.clone());
        let trigger = async move { runner.trigger_manual(&project).await };
        let started = tokio::spawn(tracing::Instrument::in_current_span(trigger))
            .await
            .map_err(|e| Error::Internal(e.into()))??;
        tracing::info!(project.id = %id, run.id = started.run_id, after = ?started.follow_up_of, user.name = %caller.username, "manual run started");
        Ok(started)
    }

    /// `POST /projects/{id}/trigger_token`: a new trigger token for the project, shown this once;
    /// the one it had stops at once. Only its SHA-256 is kept.
    pub async fn issue_trigger_token(&self, caller: &Principal, id: &ProjectId) -> Result<Secret, Error> {
        self.runnable(id).await?;
        let token = crate::auth::new_token();
        if !db::projects::set_trigger_token(&self.db, id.as_str(), &token_hash(&token)).await? {
            return Err(Error::not_found("id", format!("no project with id '{id}'")));
        }
        tracing::info!(project.id = %id, user.name = %caller.username, "trigger token issued");
        Ok(token)
    }

    /// `POST /trigger/{project}`: an upstream's push with the project's trigger token. A run now,
    /// or one more pass after the run going, as `/syncup/`. A missing project, a project without a
    /// token and a wrong token get the same answer: the endpoint tells nothing to who has none.
    pub async fn push(&self, id: &ProjectId, given: &Secret) -> Result<crate::run::Started, Error> {
        self.check_trigger_token(id, given).await?;
        let project = self.runnable(id).await?;
        if !project.enabled {
            return Err(Error::conflict("id", format!("project '{id}' is disabled: a push starts no run")));
        }
        let (runner, project) = (self.runner.clone(), id.clone());
        let trigger = async move { runner.trigger_pass(&project, Trigger::Push).await };
        let started = tokio::spawn(tracing::Instrument::in_current_span(trigger))
            .await
            .map_err(|e| Error::Internal(e.into()))??;
        tracing::info!(project.id = %id, run.id = started.run_id, after = ?started.follow_up_of, "run started by a push");
        Ok(started)
    }

    /// `GET /trigger/{project}/runs/{run}`: the state of a run of the project (`None`: its latest),
    /// for the holder of its trigger token (ftpsync's push waits on it), in its public form with
    /// the stage a two-stage run is in.
    pub async fn pushed_run(&self, id: &ProjectId, given: &Secret, run: Option<i64>) -> Result<RunView, Error> {
        self.check_trigger_token(id, given).await?;
        let row = match run {
            Some(n) => db::runs::get(&self.db, n).await?.filter(|r| r.project_id == *id),
            None => db::runs::list(&self.db, Some(id.as_str()), 1).await?.into_iter().next(),
        };
        let row = row.ok_or_else(|| Error::not_found("run", format!("no such run of project '{id}'")))?;
        let mut view = run_view(&row, false).public();
        if view.status == mirror_common::api::RunStatus::Running {
            view.stage = self.runner.stage(row.id);
        }
        Ok(view)
    }

    /// A missing project, a project without a token and a wrong token get the same answer.
    async fn check_trigger_token(&self, id: &ProjectId, given: &Secret) -> Result<(), Error> {
        const REFUSED: &str = "no valid trigger token for this project (POST /projects/{id}/trigger_token issues one)";
        let stored = db::projects::trigger_token(&self.db, id.as_str()).await?;
        if !stored.is_some_and(|s| same_hash(&s, &token_hash(given))) {
            return Err(Error::Unauthorized(REFUSED));
        }
        Ok(())
    }

    /// The project, if it exists and has an upstream to run.
    async fn runnable(&self, id: &ProjectId) -> Result<db::projects::ProjectRow, Error> {
        let row = db::projects::get(&self.db.read, id)
            .await?
            .ok_or_else(|| Error::not_found("id", format!("no project with id '{id}'")))?;
        if row.is_local() {
            return Err(Error::conflict(
                "id",
                format!(
                    "project '{id}' has a local source: there is no upstream to run (POST /targets/sync pushes it)"
                ),
            ));
        }
        Ok(row)
    }

    /// An operator's stop of a queued or running run: its rsync process group is ended, it is
    /// recorded as `stopped`, and no slave is told (it did not succeed).
    pub async fn stop(&self, caller: &Principal, id: i64) -> Result<ProjectId, Error> {
        let row = db::runs::get(&self.db, id).await?.ok_or_else(|| Error::not_found("id", format!("no run {id}")))?;
        if !matches!(row.status, mirror_common::api::RunStatus::Queued | mirror_common::api::RunStatus::Running)
            || !self.runner.stop(&row.project_id, id)
        {
            return Err(Error::conflict("id", format!("run {id} is not going (it is {})", row.status)));
        }
        tracing::info!(project.id = %row.project_id, run.id = id, user.name = %caller.username, "run stopped by an operator");
        Ok(row.project_id)
    }

    /// Where a run's full output is, and whether the run is still going (its output may grow).
    pub async fn output(&self, id: i64) -> Result<(Option<std::path::PathBuf>, bool), Error> {
        let row = db::runs::get(&self.db, id).await?.ok_or_else(|| Error::not_found("id", format!("no run {id}")))?;
        let going =
            matches!(row.status, mirror_common::api::RunStatus::Queued | mirror_common::api::RunStatus::Running);
        Ok((row.log_file.map(std::path::PathBuf::from), going))
    }

    fn may_read(&self, reader: Option<&Principal>) -> Result<(), Error> {
        if !self.public_read && reader.is_none() {
            return Err(Error::Unauthorized("reading runs needs a login on this master"));
        }
        Ok(())
    }

    /// Newest first, without output; `limit` from 1 to [`MAX_LIST`].
    pub async fn list(
        &self,
        reader: Option<&Principal>,
        project: Option<&ProjectId>,
        limit: i64,
    ) -> Result<Vec<RunView>, Error> {
        self.may_read(reader)?;
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(Error::field("limit", format!("must be a number from 1 to {MAX_LIST}")));
        }
        let rows = db::runs::list(&self.db, project.map(ProjectId::as_str), limit).await?;
        let public = reader.is_none();
        Ok(rows.iter().map(|r| run_view(r, false)).map(|v| if public { v.public() } else { v }).collect())
    }

    /// One run; with the last 64 KiB of its output for a logged-in caller (rsync's output names
    /// local paths, symlink targets and files).
    pub async fn get(&self, reader: Option<&Principal>, id: i64) -> Result<RunView, Error> {
        self.may_read(reader)?;
        let row = db::runs::get(&self.db, id).await?.ok_or_else(|| Error::not_found("id", format!("no run {id}")))?;
        let mut view = run_view(&row, reader.is_some());
        if view.status == mirror_common::api::RunStatus::Running {
            view.progress = self.runner.progress(id);
            view.stage = self.runner.stage(id);
        }
        Ok(if reader.is_none() { view.public() } else { view })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::events::Events;
    use crate::run::RunnerConfig;
    use mirror_common::api::{Name, Role, RunStatus};

    async fn runs(dir: &std::path::Path, public_read: bool) -> (Runs, Db) {
        let db = crate::db::connect(&dir.join("t.db")).await.unwrap();
        let settings = Settings { mirror_root: dir.join("mirror"), log_dir: dir.join("logs"), ..Settings::default() };
        std::fs::create_dir_all(&settings.mirror_root).unwrap();
        // `false` stands in for rsync: a run starts, fails at once, and is recorded.
        let cfg = RunnerConfig { rsync_path: "/bin/false".into(), retries: 0, ..RunnerConfig::from(&settings) };
        let runner = Runner::new(db.clone(), cfg, 1, Arc::new(Events::default()));
        (Runs { db: db.clone(), runner, public_read }, db)
    }

    fn root() -> Principal {
        Principal { username: Name::from_static("root"), role: Role::Root, token_expires: None }
    }

    #[tokio::test]
    async fn reading_follows_public_read_and_limits_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (private, _) = runs(dir.path(), false).await;
        assert!(matches!(private.list(None, None, 10).await, Err(Error::Unauthorized(_))));
        assert!(matches!(private.get(None, 1).await, Err(Error::Unauthorized(_))));
        assert!(private.list(Some(&root()), None, 10).await.unwrap().is_empty());
        for bad in [0, MAX_LIST + 1] {
            match private.list(Some(&root()), None, bad).await {
                Err(Error::Field(f)) => assert_eq!(f.field, "limit"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(private.get(Some(&root()), 7).await, Err(Error::NotFound { .. })));
    }

    #[tokio::test]
    async fn a_run_of_a_missing_project_is_not_found_and_a_started_one_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let (runs, db) = runs(dir.path(), true).await;
        let gone = ProjectId::from_static("gone");
        assert!(matches!(runs.start(&root(), &gone).await, Err(Error::NotFound { .. })));
        crate::db::testing::add_project(&db, "p", dir.path().join("mirror/p").to_str().unwrap()).await;
        let id = ProjectId::from_static("p");
        let run_id = runs.start(&root(), &id).await.unwrap().run_id;
        let listed = runs.list(None, Some(&id), 10).await.unwrap();
        assert_eq!(listed.iter().map(|r| r.id).collect::<Vec<_>>(), vec![run_id]);
        // Anonymous readers never get rsync's output.
        assert!(runs.get(None, run_id).await.unwrap().log_tail.is_none());
        let ended = async {
            loop {
                let run = runs.get(Some(&root()), run_id).await.unwrap();
                if !matches!(run.status, RunStatus::Queued | RunStatus::Running) {
                    return run;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        let finished = tokio::time::timeout(std::time::Duration::from_secs(20), ended).await.unwrap();
        assert_eq!(finished.status, RunStatus::Failed, "{finished:?}");
        assert!(finished.log_tail.is_some());
    }
}
