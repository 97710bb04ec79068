//! Run logs: the newest `log_keep` of each project are kept.

use std::path::PathBuf;

use super::Runner;

impl Runner {
    /// Keeps the newest `log_keep` run logs of a project.
    pub(super) async fn rotate_logs(&self, project_id: &str) {
        let dir = self.cfg.log_dir.join(project_id);
        let keep = self.cfg.log_keep;
        let removed = tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
            let mut runs: Vec<(i64, PathBuf)> = entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let id = e.file_name().to_str()?.strip_suffix(".log")?.parse::<i64>().ok()?;
                    Some((id, e.path()))
                })
                .collect();
            runs.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
            runs.into_iter().skip(keep).map(|(_, path)| (std::fs::remove_file(&path), path)).collect()
        })
        .await
        .unwrap_or_default();
        for (result, path) in removed {
            if let Err(e) = result {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an old run log");
            }
        }
    }
}
