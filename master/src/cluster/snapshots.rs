//! What the slaves pull: each generation of a project, frozen. After a successful run the
//! project's tree is copied as hard links (no file's data is copied) to
//! `<mirror_root>/.mirror-sync-snap/<project>/<generation>`, and slaves are told to pull that
//! directory instead of the live tree. A slave still pulling generation N while the master's next
//! run rewrites the tree thus gets exactly N, never a mix of N and N+1. rsync writes every changed
//! file as a new file renamed into place (never in place, unless told `--inplace` or `--append`),
//! so a file of a snapshot never changes.
//!
//! A snapshot is kept while it is the project's current generation, while a slave may still be
//! pulling it (a notification of it not yet answered by a report, within the reconciler's
//! patience), or while the master pushes it to an object store; the others are removed.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use mirror_common::api::{MirrorPath, ProjectId};

use crate::db::projects::ProjectRow;

/// Beneath the mirror root (on the tree's file system: hard links cannot cross one), one
/// directory per project, one snapshot per generation. No project's `dest` may lie in it.
pub const SNAPSHOT_DIR: &str = ".mirror-sync-snap";

/// Where a snapshot is built before it is given its generation's name.
const BUILDING: &str = "next.partial";

/// Options under which rsync writes into existing files: a snapshot would change with the tree.
fn writes_in_place(options: &[String]) -> bool {
    options.iter().any(|o| o == "--inplace" || o.starts_with("--append"))
}

/// (project, generation) → how many readers of this master hold its snapshot.
type Holds = Arc<Mutex<HashMap<(String, i64), usize>>>;

#[derive(Debug, Clone)]
pub struct Snapshots {
    /// `<mirror_root>/.mirror-sync-snap`; `None` when `snapshots = false`.
    root: Option<PathBuf>,
    /// Snapshots the master itself is reading (a push to an object store): never pruned.
    holds: Holds,
    /// Per project, whose turn it is to build: a build waits until the one before is named.
    turns: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// A snapshot built and not yet named after its generation: until it is (or is dropped), the
/// project's next build waits, so that it cannot take this one's place.
#[derive(Debug)]
pub struct Built {
    dir: PathBuf,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

/// A snapshot kept for as long as this lives.
#[derive(Debug)]
pub struct Held {
    holds: Holds,
    key: (String, i64),
    /// The snapshot's directory.
    pub path: PathBuf,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = holds.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                holds.remove(&self.key);
            }
        }
    }
}

impl Snapshots {
    pub fn new(mirror_root: &Path, enabled: bool) -> Snapshots {
        Snapshots {
            root: enabled.then(|| mirror_root.join(SNAPSHOT_DIR)),
            holds: Holds::default(),
            turns: Arc::default(),
        }
    }

    fn turn(&self, project: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(turns.entry(project.to_owned()).or_default())
    }

    fn holds(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i64), usize>> {
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a generation's snapshot from being pruned while the master reads it; `None` if it
    /// has none (then the reader reads the live tree).
    pub async fn hold(&self, project: &str, generation: i64) -> Option<Held> {
        let path = self.project_dir(project)?.join(generation.to_string());
        let key = (project.to_owned(), generation);
        *self.holds().entry(key.clone()).or_default() += 1;
        // Held first, then looked for: a prune between the two cannot take it unseen.
        let held = Held { holds: self.holds.clone(), key, path };
        tokio::fs::metadata(&held.path).await.is_ok_and(|m| m.is_dir()).then_some(held)
    }

    fn project_dir(&self, project: &str) -> Option<PathBuf> {
        Some(self.root.as_ref()?.join(project))
    }

    /// After a successful run, before it is recorded: the tree frozen as the next generation's
    /// candidate. `Ok(None)`: no snapshot (turned off, or the project's options write in place);
    /// its slaves pull the live tree.
    pub async fn build(&self, project: &ProjectRow) -> anyhow::Result<Option<Built>> {
        let Some(dir) = self.project_dir(&project.id) else { return Ok(None) };
        if writes_in_place(&project.rsync_options.layered()) {
            tracing::warn!(project.id = %project.id, "--inplace or --append: no snapshot; slaves pull the live tree");
            return Ok(None);
        }
        let turn = self.turn(&project.id).lock_owned().await;
        let (source, target, parent) = (PathBuf::from(&project.dest), dir.join(BUILDING), dir.clone());
        tokio::task::spawn_blocking(move || {
            remove_tree(&target)?;
            std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
            link_tree(&source, &target)
        })
        .await??;
        Ok(Some(Built { dir, _turn: turn }))
    }

    /// What `build` made becomes `generation`'s snapshot.
    pub async fn name(&self, built: Built, generation: i64) -> anyhow::Result<()> {
        let dir = &built.dir;
        let target = dir.join(generation.to_string());
        let stale = target.clone();
        tokio::task::spawn_blocking(move || remove_tree(&stale)).await??;
        tokio::fs::rename(dir.join(BUILDING), &target)
            .await
            .with_context(|| format!("cannot name the snapshot {}", target.display()))
    }

    /// The snapshot of a generation, relative to the mirror root (as slaves name it in the
    /// master's rsync module), if there is one.
    pub async fn of(&self, project: &str, generation: i64) -> Option<MirrorPath> {
        let dir = self.project_dir(project)?.join(generation.to_string());
        if !tokio::fs::metadata(&dir).await.is_ok_and(|m| m.is_dir()) {
            return None;
        }
        MirrorPath::parse(format!("{SNAPSHOT_DIR}/{project}/{generation}")).ok()
    }

    /// Removes a project's snapshots but those of `keep` and those held (a build under way,
    /// `next.partial`, is left to `build`, which starts it over).
    pub async fn prune(&self, project: &str, keep: &HashSet<i64>) -> anyhow::Result<()> {
        let Some(dir) = self.project_dir(project) else { return Ok(()) };
        let mut gone = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else { return Ok(()) };
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let generation = name.to_str().and_then(|n| n.parse::<i64>().ok());
            let held = |g: i64| self.holds().contains_key(&(project.to_owned(), g));
            if generation.is_some_and(|g| !keep.contains(&g) && !held(g)) {
                gone.push(entry.path());
            }
        }
        self.remove_all(gone).await
    }

    /// Every project that has snapshots keeps those of its `keep` entry (and the held ones); a
    /// project with no entry, one that is no more, loses them all. Only the projects that have
    /// snapshots are looked at.
    pub async fn prune_all(&self, keep: &HashMap<ProjectId, HashSet<i64>>) -> anyhow::Result<()> {
        let Some(root) = &self.root else { return Ok(()) };
        let mut gone = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(root).await else { return Ok(()) };
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let id = name.to_str().and_then(|n| ProjectId::parse(n).ok());
            // Held by a push, or a build under way (a project newer than `keep`, say).
            let held = |p: &ProjectId| {
                self.holds().keys().any(|(held, _)| held == p.as_str()) || self.turn(p).try_lock().is_err()
            };
            match id.as_ref().and_then(|p| keep.get(p).map(|k| (p, k))) {
                Some((project, generations)) => self.prune(project, generations).await?,
                None if id.as_ref().is_some_and(held) => {}
                None => gone.push(entry.path()),
            }
        }
        self.remove_all(gone).await
    }

    pub fn enabled(&self) -> bool {
        self.root.is_some()
    }

    async fn remove_all(&self, paths: Vec<PathBuf>) -> anyhow::Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        tracing::debug!(snapshots = ?paths, "removing snapshots");
        tokio::task::spawn_blocking(move || paths.iter().try_for_each(|p| remove_tree(p))).await?
    }
}

fn remove_tree(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// `target` becomes a copy of `source` in which every file, symlink or special file is a hard
/// link to the source's; directories are made anew with the source's mode, owner and times.
/// Nothing is followed: a symlink is linked as itself. Walked without recursion, so a deep tree
/// costs heap, not stack.
fn link_tree(source: &Path, target: &Path) -> anyhow::Result<()> {
    let mut pending = vec![(source.to_path_buf(), target.to_path_buf())];
    let mut made = Vec::new();
    while let Some((from, to)) = pending.pop() {
        std::fs::create_dir(&to).with_context(|| format!("cannot create {}", to.display()))?;
        for entry in std::fs::read_dir(&from).with_context(|| format!("cannot read {}", from.display()))? {
            let entry = entry.with_context(|| format!("cannot read {}", from.display()))?;
            let (file, link) = (entry.path(), to.join(entry.file_name()));
            if entry.file_type()?.is_dir() {
                pending.push((file, link));
            } else {
                std::fs::hard_link(&file, &link).with_context(|| format!("cannot link {}", file.display()))?;
            }
        }
        made.push((from, to));
    }
    // Children before parents: making an entry changes its directory's times.
    for (from, to) in made.iter().rev() {
        copy_dir_attributes(from, to)?;
    }
    Ok(())
}

/// Puts back into `live` what a run deleted from it: every entry of the frozen copy `frozen` that
/// `live` no longer has (hard links; directories made anew with their attributes). Entries `live`
/// still has are left as they are, and nothing is followed: the walk goes down only through real
/// directories of both trees. Returns how many entries were put back (blocking).
pub fn put_back(frozen: &Path, live: &Path) -> anyhow::Result<u64> {
    let mut restored = 0u64;
    let mut made = Vec::new();
    let mut pending = vec![(frozen.to_path_buf(), live.to_path_buf())];
    while let Some((from, to)) = pending.pop() {
        for entry in std::fs::read_dir(&from).with_context(|| format!("cannot read {}", from.display()))? {
            let entry = entry.with_context(|| format!("cannot read {}", from.display()))?;
            let (source, target) = (entry.path(), to.join(entry.file_name()));
            let is_dir = entry.file_type()?.is_dir();
            match std::fs::symlink_metadata(&target) {
                Ok(m) if is_dir && m.is_dir() => pending.push((source, target)),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if is_dir {
                        link_tree(&source, &target)?;
                    } else {
                        std::fs::hard_link(&source, &target)
                            .with_context(|| format!("cannot put back {}", target.display()))?;
                    }
                    restored += 1;
                    made.push(to.clone());
                }
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", target.display())),
            }
        }
    }
    // The directories something was put back into get their times back too.
    made.dedup();
    for dir in made.iter().rev() {
        if let Ok(rel) = dir.strip_prefix(live) {
            copy_dir_attributes(&frozen.join(rel), dir)?;
        }
    }
    Ok(restored)
}

fn copy_dir_attributes(from: &Path, to: &Path) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    // Only root may give a directory away; a master that is not keeps its own.
    match std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid())) {
        Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied => return Err(e.into()),
        _ => {}
    }
    // Times before the mode: a mode without read permission would keep the directory from opening.
    let times = std::fs::FileTimes::new().set_accessed(meta.accessed()?).set_modified(meta.modified()?);
    std::fs::File::open(to)?.set_times(times)?;
    std::fs::set_permissions(to, meta.permissions())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_the_tree_as_hard_links_with_the_directories_attributes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::write(src.join("a/b/file"), "one").unwrap();
        std::os::unix::fs::symlink("../nowhere", src.join("a/link")).unwrap();
        std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        std::fs::File::open(src.join("a")).unwrap().set_modified(old).unwrap();

        link_tree(&src, &dst).unwrap();

        let (a, b) =
            (std::fs::metadata(src.join("a/b/file")).unwrap(), std::fs::metadata(dst.join("a/b/file")).unwrap());
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2), "the same file, not a copy");
        let link = std::fs::symlink_metadata(dst.join("a/link")).unwrap();
        assert!(link.file_type().is_symlink(), "a symlink is linked as itself, not followed");
        let a = std::fs::metadata(dst.join("a")).unwrap();
        assert_eq!(a.permissions().mode() & 0o7777, 0o750);
        assert_eq!(a.modified().unwrap(), old, "the directory's time survives the entries made in it");
        // The tree moves on (rsync renames a new file into place): the snapshot keeps the old one.
        std::fs::write(src.join("a/b/file.new"), "two").unwrap();
        std::fs::rename(src.join("a/b/file.new"), src.join("a/b/file")).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("a/b/file")).unwrap(), "one");
    }

    #[tokio::test]
    async fn a_held_snapshot_outlives_a_prune_and_goes_at_the_next_once_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::new(dir.path(), true);
        let gens = dir.path().join(SNAPSHOT_DIR).join("p");
        for g in ["1", "2", "next.partial"] {
            std::fs::create_dir_all(gens.join(g)).unwrap();
        }
        let keep = HashSet::from([2]);
        let held = snapshots.hold("p", 1).await.unwrap();
        assert_eq!(held.path, gens.join("1"));
        assert!(snapshots.hold("p", 3).await.is_none(), "no snapshot, nothing to hold");
        snapshots.prune("p", &keep).await.unwrap();
        assert!(gens.join("1").is_dir() && gens.join("2").is_dir());
        drop(held);
        snapshots.prune("p", &keep).await.unwrap();
        assert!(!gens.join("1").exists() && gens.join("2").is_dir());
        assert!(gens.join("next.partial").is_dir(), "a build under way is not a generation");
        snapshots.prune_all(&HashMap::new()).await.unwrap();
        assert!(!gens.exists(), "a project that is no more loses its snapshots");
    }

    /// A build holds its project's turn until it is named: the next run's build cannot replace
    /// it in between.
    #[tokio::test]
    async fn a_build_keeps_the_next_one_waiting_until_it_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("file"), "one").unwrap();
        let snapshots = Snapshots::new(dir.path(), true);
        let mut project = crate::db::projects::sample();
        project.id = ProjectId::from_static("p");
        project.dest = mirror_common::names::Dest::from_path(&tree).unwrap();
        let built = snapshots.build(&project).await.unwrap().unwrap();
        assert!(snapshots.turn("p").try_lock().is_err(), "the next build waits");
        snapshots.prune_all(&HashMap::new()).await.unwrap();
        assert!(dir.path().join(SNAPSHOT_DIR).join("p/next.partial").is_dir(), "a build under way is left alone");
        snapshots.name(built, 7).await.unwrap();
        assert!(snapshots.turn("p").try_lock().is_ok(), "named: the next build may go");
        let named = dir.path().join(SNAPSHOT_DIR).join("p/7/file");
        assert_eq!(std::fs::read_to_string(named).unwrap(), "one");
        assert_eq!(snapshots.of("p", 7).await.unwrap().as_str(), ".mirror-sync-snap/p/7");
    }

    #[test]
    fn in_place_options_are_told_apart() {
        assert!(writes_in_place(&["-a".into(), "--inplace".into()]));
        assert!(writes_in_place(&["--append-verify".into()]));
        assert!(!writes_in_place(&["-a".into(), "--delay-updates".into()]));
    }
}
