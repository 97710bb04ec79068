//! Files the master writes into a project's tree with each new generation, for the tools that read
//! a mirror's freshness: Debian's trace file (`trace.rs`), Arch's `lastupdate` and `lastsync`
//! (`freshness`), and a redirector's trace file holding a Unix time (`trace_epoch_file`, as
//! mirrorbits reads one). They are written after rsync has brought the tree and before the
//! generation is frozen and told to the slaves, so a slave gets them with the tree they describe,
//! and a reader never sees one newer than the tree. rsync is told to neither bring nor delete them.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use super::Runner;
use crate::db::projects::ProjectRow;

/// Arch's files, at the top of the tree.
pub const LASTUPDATE: &str = "lastupdate";
pub const LASTSYNC: &str = "lastsync";

/// The most entries the walk for `lastupdate` looks at (a tree larger than this gets the newest
/// time among them).
const MAX_WALK: usize = 20_000_000;

/// Where Debian's trace file of mirror `name` lies in a tree, relative to it.
pub fn debian_trace(name: &str) -> PathBuf {
    Path::new("project").join("trace").join(name)
}

/// The files of `p` that rsync must leave alone (relative to its tree), and the filters that
/// make it: not brought from the upstream, and not deleted, even by `--delete-excluded`.
pub fn filters(p: &ProjectRow) -> Vec<String> {
    let mut names: Vec<&str> = Vec::new();
    if p.freshness {
        names.extend([LASTUPDATE, LASTSYNC]);
    }
    names.extend(p.trace_epoch_file.as_deref());
    names.iter().flat_map(|n| [format!("--exclude=/{n}"), format!("--filter=P /{n}")]).collect()
}

/// Writes `text` as `rel` in `dest` (already checked to lie in the mirror root), through no
/// symlink the tree may hold: the file's directory must resolve to itself, and the file is
/// written beside it and renamed into place. The directory keeps the time rsync gave it (the
/// upstream's): the next run must not see a change of ours as one to undo. The file's own time is
/// `at`, the instant its text tells: two versions written within one second, of the same size,
/// must still differ to the quick check of a slave's rsync (size and time).
pub async fn put_file(
    mirror_root: &Path,
    dest: &Path,
    rel: &Path,
    text: String,
    at: SystemTime,
) -> std::io::Result<()> {
    let target = dest.join(rel);
    let (Some(dir), Some(name)) = (target.parent().map(Path::to_path_buf), target.file_name()) else {
        return Err(std::io::Error::other(format!("{} names no file", rel.display())));
    };
    let dir_text = dir.to_str().ok_or_else(|| std::io::Error::other("dest is not UTF-8"))?;
    match crate::config::paths::resolve_dest(mirror_root, dir_text).await {
        Ok(resolved) if resolved == dir => {}
        _ => return Err(std::io::Error::other(format!("{} leads out of the tree", dir.display()))),
    }
    tokio::fs::create_dir_all(&dir).await?;
    if tokio::fs::symlink_metadata(&target).await.is_ok_and(|m| !m.is_file()) {
        return Err(std::io::Error::other(format!("{} is not a file", target.display())));
    }
    let times = tokio::fs::metadata(&dir).await?.modified()?;
    let tmp = dir.join(format!(".{}.mirror-sync-tmp", name.to_string_lossy()));
    let _ = tokio::fs::remove_file(&tmp).await;
    tokio::fs::write(&tmp, text).await?;
    let stamped = tmp.clone();
    tokio::task::spawn_blocking(move || std::fs::File::options().write(true).open(&stamped)?.set_modified(at))
        .await
        .map_err(std::io::Error::other)??;
    tokio::fs::rename(&tmp, &target).await?;
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.set_modified(times))
        .await
        .map_err(std::io::Error::other)?
}

/// The modification time of the newest regular file in `dest` (symlinks are not followed), but
/// the master's own files: when the tree last changed, as rsync keeps the upstream's times.
fn newest_file(dest: &Path, own: &[PathBuf]) -> Option<SystemTime> {
    let mut newest: Option<SystemTime> = None;
    let mut stack = vec![dest.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_WALK {
                return newest;
            }
            let (path, Ok(kind)) = (entry.path(), entry.file_type()) else { continue };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && !own.contains(&path)
                && !entry.file_name().to_string_lossy().ends_with(".mirror-sync-tmp")
                && let Ok(modified) = entry.metadata().and_then(|m| m.modified())
            {
                newest = newest.max(Some(modified));
            }
        }
    }
    newest
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Runner {
    /// The freshness files a project asks for, after a run that made a new generation and ended
    /// at `ended`. A failure to write one is logged; the run stays a success.
    pub(super) async fn write_stamps(&self, project: &ProjectRow, ended: DateTime<Utc>) {
        let dest = project.dest.as_path().to_path_buf();
        let ended = SystemTime::from(ended);
        let mut files: Vec<(PathBuf, SystemTime)> = Vec::new();
        if project.freshness {
            // The master's own files: these, the redirector's trace and Debian's.
            let mut own: Vec<PathBuf> = [LASTUPDATE, LASTSYNC].iter().map(|n| dest.join(n)).collect();
            own.extend(project.trace_epoch_file.as_ref().map(|rel| dest.join(rel)));
            own.push(dest.join(debian_trace(&self.cfg.mirror_name)));
            let walked = dest.clone();
            let newest = tokio::task::spawn_blocking(move || newest_file(&walked, &own)).await.ok().flatten();
            if let Some(newest) = newest {
                files.push((PathBuf::from(LASTUPDATE), newest));
            }
            files.push((PathBuf::from(LASTSYNC), ended));
        }
        if let Some(rel) = &project.trace_epoch_file {
            files.push((PathBuf::from(rel), ended));
        }
        for (rel, at) in files {
            let at = UNIX_EPOCH + std::time::Duration::from_secs(epoch(at));
            let text = format!("{}\n", epoch(at));
            if let Err(e) = put_file(&self.cfg.mirror_root, &dest, &rel, text, at).await {
                tracing::warn!(file = %rel.display(), error = %e, "cannot write a freshness file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_file_is_found_below_and_the_masters_own_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let at = |secs: u64| UNIX_EPOCH + std::time::Duration::from_secs(secs);
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        for (name, secs) in [("old", 1_000), ("a/b/new", 2_000), ("lastsync", 9_000)] {
            let f = std::fs::File::create(dir.path().join(name)).unwrap();
            f.set_modified(at(secs)).unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("a/link")).unwrap();
        let own = vec![dir.path().join("lastsync")];
        assert_eq!(newest_file(dir.path(), &own), Some(at(2_000)));
    }
}
