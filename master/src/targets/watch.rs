//! A watched tree (`watch = true`): each file closed after writing, renamed or removed is pushed
//! to the project's targets, gathered for `watch_debounce_ms`. inotify through the `notify`
//! crate. A lost event (the kernel's queue overflowed, an error) or a directory moved in asks for
//! a full merge instead, so nothing is missed for long.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use mirror_common::names::{Name, ProjectId};
use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RemoveKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use super::Pusher;
use crate::config::TargetSettings;

/// More changed paths than this between two pushes: a full merge instead.
const MAX_PATHS: usize = 10_000;

#[derive(Default)]
struct Batch {
    paths: BTreeSet<String>,
    rescan: bool,
}

impl Batch {
    fn add(&mut self, rel: String) {
        if self.paths.len() >= MAX_PATHS {
            self.rescan = true;
            self.paths.clear();
        } else if !self.rescan {
            self.paths.insert(rel);
        }
    }
}

pub struct Watching {
    pub root: PathBuf,
    pub targets: Vec<Name>,
    _watcher: RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rel_of(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?.to_str()?;
    (!rel.is_empty()).then(|| rel.to_owned())
}

/// The files under a directory that appeared (moved in, or made and filled before its watch was
/// added); `None` when there are too many to list.
fn files_under(root: &Path, dir: &Path) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).ok()?.flatten() {
            let meta = entry.path().symlink_metadata().ok()?;
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if let Some(rel) = rel_of(root, &entry.path()) {
                out.push(rel);
            }
            if out.len() > MAX_PATHS {
                return None;
            }
        }
    }
    Some(out)
}

fn record(root: &Path, batch: &Mutex<Batch>, event: notify::Result<notify::Event>) -> bool {
    let mut batch = batch.lock().unwrap_or_else(|p| p.into_inner());
    let event = match event {
        Ok(e) if !e.need_rescan() => e,
        _ => {
            batch.rescan = true;
            return true;
        }
    };
    let mut added = false;
    for path in &event.paths {
        let Some(rel) = rel_of(root, path) else { continue };
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Remove(RemoveKind::File | RemoveKind::Any | RemoveKind::Other) => batch.add(rel),
            EventKind::Modify(ModifyKind::Name(_)) | EventKind::Create(CreateKind::Folder) => {
                if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                    match files_under(root, path) {
                        Some(files) => files.into_iter().for_each(|f| batch.add(f)),
                        None => batch.rescan = true,
                    }
                } else {
                    // A file renamed in or out (rsync puts each file in place by a rename).
                    batch.add(rel);
                }
            }
            // Files that were under it are each reported removed; a directory moved away is not.
            EventKind::Remove(RemoveKind::Folder) => batch.rescan = true,
            _ => continue,
        }
        added = true;
    }
    added
}

impl Watching {
    pub fn start(
        pusher: Weak<Pusher>,
        project: ProjectId,
        root: PathBuf,
        targets: Vec<Name>,
        settings: &TargetSettings,
    ) -> notify::Result<Watching> {
        std::fs::create_dir_all(&root).map_err(notify::Error::io)?;
        // inotify reports the path it was given: watch the canonical one, strip the same.
        let root = root.canonicalize().map_err(notify::Error::io)?;
        let batch = Arc::new(Mutex::new(Batch::default()));
        let wake = Arc::new(tokio::sync::Notify::new());
        let (b, w, r) = (batch.clone(), wake.clone(), root.clone());
        let mut watcher = notify::recommended_watcher(move |event| {
            if record(&r, &b, event) {
                w.notify_one();
            }
        })?;
        watcher.watch(&root, RecursiveMode::Recursive)?;
        let debounce = Duration::from_millis(settings.watch_debounce_ms);
        let task = tokio::spawn(async move {
            loop {
                wake.notified().await;
                tokio::time::sleep(debounce).await;
                let taken = std::mem::take(&mut *batch.lock().unwrap_or_else(|p| p.into_inner()));
                let Some(pusher) = pusher.upgrade() else { return };
                tracing::debug!(project.id = %project, paths = taken.paths.len(), rescan = taken.rescan, "watched tree changed");
                pusher.changed_paths(&project, taken.paths, taken.rescan);
            }
        });
        Ok(Watching { root, targets, _watcher: watcher, task })
    }
}
