//! What keeps a run from doing harm: the deletion limit, its preview, and the fake-success check.

use mirror_common::api::{Preview, RunStats};
use mirror_common::guards::MaxDelete;
use mirror_common::names::ProjectId;
use mirror_runtime::rsync::run_rsync;
use tokio::sync::watch;

use super::Runner;
use crate::db;

/// Whether the project's options delete anything on the receiving side.
fn deletes(project: &crate::db::projects::ProjectRow) -> bool {
    project.rsync_options.layered().iter().any(|o| crate::run::rsync::is_delete_option(o))
}

/// Why `stats` (of a dry run) cross `limit`, if they do. The tree is the mirror's as it is:
/// the upstream's file count, less what would be created, plus what would be deleted.
pub(super) fn over_limit(limit: MaxDelete, stats: &RunStats) -> Option<String> {
    let (deleted, tree, pct) = crossing(limit, stats)?;
    Some(format!(
        "would delete {deleted} of {tree} files ({pct}%), more than max_delete {limit}: nothing was changed \
         (raise the project's max_delete to let it through)"
    ))
}

/// When `stats` delete more than `limit` allows: what they delete, of how many, in percent.
fn crossing(limit: MaxDelete, stats: &RunStats) -> Option<(u64, u64, u64)> {
    let deleted = stats.files_deleted.unwrap_or(0);
    let tree = (stats.files_total.unwrap_or(0) + deleted).saturating_sub(stats.files_created.unwrap_or(0));
    if limit.allows(deleted, tree) {
        return None;
    }
    Some((deleted, tree, (deleted * 100).checked_div(tree).unwrap_or(100)))
}
impl Runner {
    /// After rsync stopped at `--max-delete={n}`: every file, directory and link of the previous
    /// generation's frozen copy that the run deleted is put back (hard links); the message says
    /// what was done. Without a frozen copy (snapshots off, or no slave or target to read one) the
    /// few it deleted stay deleted, and the message says so.
    pub(super) async fn put_back(&self, project: &crate::db::projects::ProjectRow, n: u64, limit: MaxDelete) -> String {
        let g = project.generation;
        let head = format!(
            "rsync stopped at max_delete {limit} ({n} files): it would delete more (raise the project's max_delete \
             to let it through); the generation stays at {g} and no slave is told"
        );
        self.restore_deleted(project, head).await
    }

    /// A git or command run's figures, from the tree before and after it (its own output's
    /// `refs_updated` and `bytes_received` kept); a command that deleted more than the deletion
    /// limit allows has failed, and what it deleted comes back from the frozen copy.
    pub(super) async fn measured(
        &self,
        plan: &super::plan::RunPlan,
        before: &super::kinds::Manifest,
        outcome: &mut mirror_runtime::rsync::RsyncOutcome,
    ) -> anyhow::Result<()> {
        let dest = plan.project.dest.as_path().to_path_buf();
        let after = tokio::task::spawn_blocking(move || super::kinds::Manifest::of(&dest)).await?;
        let told = std::mem::take(&mut outcome.stats);
        outcome.stats =
            RunStats { refs_updated: told.refs_updated, bytes_received: told.bytes_received, ..before.compare(&after) };
        if let Some((deleted, tree, pct)) = crossing(plan.limit, &outcome.stats) {
            let (g, limit) = (plan.project.generation, plan.limit);
            let head = format!(
                "the command deleted {deleted} of {tree} files ({pct}%), more than max_delete {limit} (raise the \
                 project's max_delete to let it through); the generation stays at {g} and no slave is told"
            );
            outcome.ending = mirror_runtime::rsync::Ending::Failed;
            outcome.message = self.restore_deleted(&plan.project, head).await;
            tracing::error!(message = %outcome.message, "run stopped at the deletion limit");
        }
        Ok(())
    }

    /// `head`, and how the files a run deleted were put back from the previous generation's
    /// frozen copy.
    async fn restore_deleted(&self, project: &crate::db::projects::ProjectRow, head: String) -> String {
        let g = project.generation;
        let Some(held) = self.cfg.snapshots.hold(&project.id, g).await else {
            return format!("{head}; no frozen copy of generation {g} to put back the files it deleted");
        };
        let (from, to) = (held.path.clone(), project.dest.as_path().to_path_buf());
        let restored = tokio::task::spawn_blocking(move || crate::cluster::snapshots::put_back(&from, &to)).await;
        drop(held);
        match restored {
            Ok(Ok(k)) => format!("{head}; {k} deleted files put back from generation {g}'s frozen copy"),
            Ok(Err(e)) => format!("{head}; putting back the deleted files failed: {e}"),
            Err(e) => format!("{head}; putting back the deleted files failed: {e}"),
        }
    }

    pub(super) fn deletion_limit(&self, project: &crate::db::projects::ProjectRow) -> MaxDelete {
        if deletes(project) { project.max_delete.unwrap_or(self.cfg.max_delete) } else { MaxDelete::Off }
    }

    /// `POST /syncup/?id=&dry_run=true`: what a run would change now, and whether `max_delete`
    /// would stop it. Runs beside a run that is going (it writes nothing but the directories).
    pub async fn preview(&self, project_id: &ProjectId) -> Result<Preview, crate::error::Error> {
        use crate::error::Error;
        let project = db::projects::get(&self.db.read, project_id)
            .await?
            .ok_or_else(|| Error::not_found("id", format!("no project with id '{project_id}'")))?;
        if !project.source.kind.is_rsync() {
            let kind = project.source.kind.as_str();
            return Err(Error::conflict(
                "dry_run",
                format!("a {kind} project has no dry run: only rsync can tell what it would change"),
            ));
        }
        let plan = self.plan(project, 0).await.map_err(|why| Error::conflict("id", format!("{why}: not run")))?;
        tokio::fs::create_dir_all(&plan.project.dest).await.map_err(|e| Error::Internal(e.into()))?;
        // Never emptied here: a run going may be using it.
        tokio::fs::create_dir_all(&plan.temp).await.map_err(|e| Error::Internal(e.into()))?;
        let dry = self.dry_command(&plan, plan.main.clone());
        let (_stop, never) = watch::channel(false);
        let outcome = run_rsync(&dry, never, &|_| {}).await.map_err(|e| Error::Internal(e.into()))?;
        let refused = if outcome.succeeded() { over_limit(plan.limit, &outcome.stats) } else { None };
        Ok(Preview {
            method: "syncup".to_owned(),
            success: outcome.succeeded(),
            id: project_id.clone(),
            dry_run: true,
            stats: outcome.stats,
            max_delete: plan.limit,
            refused,
            exit_code: outcome.exit_code,
            message: outcome.message,
        })
    }

    /// Why a run rsync calls a success is not one: the tree it left is empty while the last
    /// successful run's was not, or smaller by more than `max_shrink` percent.
    pub(super) async fn fake_success(
        &self,
        project: &crate::db::projects::ProjectRow,
        now: &RunStats,
    ) -> anyhow::Result<Option<String>> {
        let Some((before_size, before_files)) = db::runs::last_success_size(&self.db, &project.id).await? else {
            return Ok(None);
        };
        if now.regular_files == Some(0) && before_size.unwrap_or(0) > 0 {
            return Ok(Some(format!(
                "the upstream served an empty tree (the last success had {} entries, {} bytes): marked failed; \
                 the generation stays at {} and no slave is told",
                before_files.unwrap_or(0),
                before_size.unwrap_or(0),
                project.generation
            )));
        }
        let (Some(before), Some(size)) = (before_size.filter(|b| *b > 0), now.total_size) else { return Ok(None) };
        let limit = u64::from(self.cfg.max_shrink);
        if limit < 100 && size.saturating_mul(100) < before.saturating_mul(100 - limit) {
            let shrank = 100 - size.saturating_mul(100) / before;
            return Ok(Some(format!(
                "the tree shrank from {before} to {size} bytes ({shrank}% smaller), more than max_shrink = {limit}%: \
                 marked failed; the generation stays at {} and no slave is told",
                project.generation
            )));
        }
        Ok(None)
    }
}
