//! One merge of a project's tree into one target: what the store holds against what the tree has
//! (a full merge lists the store; a watched tree's change names its paths), then the uploads and
//! deletions, at most `targets.max_parallel` requests at a time, and what the master remembers of
//! each object it put.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use mirror_common::targets::TargetSpec;

use super::Pusher;
use super::store::{Remote, Store};
use super::tree::{self, Local, Selection};
use crate::db::targets::{Counts, Known};
use crate::db::{self, projects::ProjectRow};

/// At most this many errors are kept in a push's message.
const REPORTED_ERRORS: usize = 5;

/// What one merge is to do.
struct Work {
    /// The files to check against their objects.
    files: Vec<Local>,
    /// The store's listing beneath the prefix (a full merge only).
    remote: Option<HashMap<String, Remote>>,
    /// The keys whose files are gone.
    deletes: Vec<String>,
    /// Files the walk did not publish (names the store cannot hold, and the like).
    skipped: u64,
    /// What the push's message says of it.
    notes: Vec<String>,
}

/// What checking one file came to.
enum Checked {
    /// Equal to its object; the entry to remember when the master did not know it so.
    Unchanged(Option<Known>),
    Uploaded(Known),
    /// Gone between the walk and its turn: the next push deletes its object.
    Vanished,
}

impl Pusher {
    /// Brings `spec`'s store in step with `row`'s tree, or with the changed `paths` of it.
    pub(super) async fn merge(
        &self,
        row: &ProjectRow,
        spec: &TargetSpec,
        paths: Option<BTreeSet<String>>,
        counts: &mut Counts,
        errors: &mut Vec<String>,
        notes: &mut Vec<String>,
    ) -> Result<(), String> {
        let sel = Arc::new(Selection::of(spec)?);
        let store = self.open(spec)?;
        let identity = store.identity();
        // A full merge pushes the generation as the slaves get it: its snapshot, which the next
        // run does not touch, kept while the push reads it. Watched trees have no runs.
        let held = match &paths {
            None => self.snapshots.hold(&row.id, row.generation).await,
            Some(_) => None,
        };
        let root = held.as_ref().map_or_else(|| PathBuf::from(&row.dest), |h| h.path.clone());
        let known = db::targets::known(&self.db, &identity, &sel.target_prefix).await.map_err(|e| e.to_string())?;
        let mut work = self.work(store.as_ref(), &sel, spec, &root, paths).await?;
        counts.skipped += work.skipped;
        notes.append(&mut work.notes);
        counts.files = work.files.len() as u64;
        let remote = work.remote.map(Arc::new);
        let known = Arc::new(known);
        let remember = self.upload(&store, work.files, remote.clone(), known.clone(), counts, errors).await;
        let mut gone = self.delete(&store, work.deletes, counts, errors).await;
        // Entries of objects someone else removed are forgotten too.
        if let Some(listing) = &remote {
            gone.extend(known.keys().filter(|k| !listing.contains_key(*k)).cloned());
        }
        db::targets::remember(&self.db, &identity, &remember, &gone).await.map_err(|e| e.to_string())
    }

    /// The files to check and the keys to delete.
    async fn work(
        &self,
        store: &dyn Store,
        sel: &Arc<Selection>,
        spec: &TargetSpec,
        root: &Path,
        paths: Option<BTreeSet<String>>,
    ) -> Result<Work, String> {
        let mut notes = Vec::new();
        let notes = &mut notes;
        let work = match paths {
            None => {
                let (r, s) = (root.to_path_buf(), sel.clone());
                let walked =
                    tokio::task::spawn_blocking(move || tree::walk(&r, &s)).await.map_err(|e| e.to_string())??;
                let skipped = walked.skipped;
                if !walked.skipped_names.is_empty() {
                    notes.push(format!("{} not published: {}", walked.skipped, walked.skipped_names.join(", ")));
                }
                let listed = store.list(&sel.target_prefix).await.map_err(|e| e.0)?;
                let wanted: HashSet<&str> = walked.files.iter().map(|f| f.key.as_str()).collect();
                let deletes: Vec<String> = if spec.keep_deleted {
                    Vec::new()
                } else {
                    listed.iter().filter(|r| !wanted.contains(r.key.as_str())).map(|r| r.key.clone()).collect()
                };
                let deletes = self.beneath_prefix(sel, deletes, notes);
                let remote: HashMap<String, Remote> = listed.into_iter().map(|r| (r.key.clone(), r)).collect();
                Work { files: walked.files, remote: Some(remote), deletes, skipped, notes: std::mem::take(notes) }
            }
            Some(paths) => {
                // A watched tree's changes: what the master put is taken as what the store holds
                // (the merge at start and after a missed event checks the store itself).
                let (r, s) = (root.to_path_buf(), sel.clone());
                tokio::task::spawn_blocking(move || changed_files(&r, &s, &paths))
                    .await
                    .map_err(|e| e.to_string())
                    .map(|(files, gone)| (files, if spec.keep_deleted { Vec::new() } else { gone }))
                    .map(|(files, gone)| {
                        let deletes = self.beneath_prefix(sel, gone, notes);
                        Work { files, remote: None, deletes, skipped: 0, notes: std::mem::take(notes) }
                    })?
            }
        };
        Ok(work)
    }

    /// Checks each file against its object and uploads the changed ones; answers the entries to
    /// remember.
    async fn upload(
        &self,
        store: &Arc<dyn Store>,
        files: Vec<Local>,
        remote: Option<Arc<HashMap<String, Remote>>>,
        known: Arc<HashMap<String, Known>>,
        counts: &mut Counts,
        errors: &mut Vec<String>,
    ) -> Vec<Known> {
        let mut remember = Vec::new();
        let checks = futures::stream::iter(files.into_iter().map(|file| {
            let (store, remote, known) = (store.clone(), remote.clone(), known.clone());
            async move {
                let k = known.get(&file.key).cloned();
                let r = match &remote {
                    Some(listing) => listing.get(&file.key).cloned(),
                    None => k.as_ref().map(|k| Remote {
                        key: k.key.clone(),
                        size: u64::try_from(k.size).unwrap_or(0),
                        etag: k.etag.clone(),
                    }),
                };
                let key = file.key.clone();
                (key, check(store.as_ref(), file, r, k).await)
            }
        }))
        .buffer_unordered(self.settings.max_parallel);
        futures::pin_mut!(checks);
        while let Some((key, result)) = checks.next().await {
            match result {
                Ok(Checked::Unchanged(entry)) => {
                    counts.unchanged += 1;
                    remember.extend(entry);
                }
                Ok(Checked::Uploaded(entry)) => {
                    counts.uploaded += 1;
                    counts.bytes_uploaded += u64::try_from(entry.size).unwrap_or(0);
                    remember.push(entry);
                }
                Ok(Checked::Vanished) => {}
                Err(e) => {
                    counts.errors += 1;
                    if errors.len() < REPORTED_ERRORS {
                        errors.push(e);
                    }
                    tracing::debug!(key = %key.escape_debug(), "request failed");
                }
            }
        }
        remember
    }

    /// Deletes the objects of gone files; answers the keys deleted.
    async fn delete(
        &self,
        store: &Arc<dyn Store>,
        deletes: Vec<String>,
        counts: &mut Counts,
        errors: &mut Vec<String>,
    ) -> Vec<String> {
        let mut gone = Vec::new();
        let deleting = futures::stream::iter(deletes.into_iter().map(|key| {
            let store = store.clone();
            async move {
                let done = store.delete(&key).await;
                (key, done)
            }
        }))
        .buffer_unordered(self.settings.max_parallel);
        futures::pin_mut!(deleting);
        while let Some((key, done)) = deleting.next().await {
            match done {
                Ok(()) => {
                    counts.deleted += 1;
                    gone.push(key);
                }
                Err(e) => {
                    counts.errors += 1;
                    if errors.len() < REPORTED_ERRORS {
                        errors.push(e.0);
                    }
                }
            }
        }
        gone
    }

    /// The deletions a push may do: all of them beneath a `target_prefix`; none at the bucket's
    /// root unless `targets.delete_at_bucket_root` says so (the note says how many were kept).
    fn beneath_prefix(&self, sel: &Selection, deletes: Vec<String>, notes: &mut Vec<String>) -> Vec<String> {
        if !sel.target_prefix.is_empty() || self.settings.delete_at_bucket_root || deletes.is_empty() {
            return deletes;
        }
        notes.push(format!(
            "{} objects without a file were kept: the target has no target_prefix, and a push deletes only \
             beneath one (targets.delete_at_bucket_root = true allows it)",
            deletes.len()
        ));
        Vec::new()
    }
}

/// The files among `paths` (relative to `root`) that the target gets, and the keys of those gone.
fn changed_files(root: &Path, sel: &Selection, paths: &BTreeSet<String>) -> (Vec<Local>, Vec<String>) {
    let (mut files, mut gone) = (Vec::new(), Vec::new());
    let tree: Arc<Path> = Arc::from(root);
    for rel in paths {
        let Some(key) = sel.key_of(rel) else { continue };
        let path = root.join(rel);
        match path.symlink_metadata() {
            Ok(m) if m.is_file() => files.push(Local::new(&tree, rel.clone(), key, &m)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => gone.push(key),
            Err(_) => {}
        }
    }
    (files, gone)
}

/// Whether `file` equals its object, and if not, uploads it.
async fn check(
    store: &dyn Store,
    file: Local,
    remote: Option<Remote>,
    known: Option<Known>,
) -> Result<Checked, String> {
    let size = i64::try_from(file.size).unwrap_or(i64::MAX);
    // The object is what the master put, and the file has not been written since it was hashed.
    if let (Some(r), Some(k)) = (&remote, &known)
        && !r.etag.is_empty()
        && r.etag == k.etag
        && r.size == file.size
        && k.size == size
        && k.local_stamp == file.stamp
    {
        return Ok(Checked::Unchanged(None));
    }
    let local = file.clone();
    let hashed = tokio::task::spawn_blocking(move || tree::hash(&local)).await.map_err(|e| e.to_string())?;
    let (sha256, stamp) = match hashed {
        Ok(h) => h,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checked::Vanished),
        Err(e) => return Err(format!("reading {}: {e}", file.key.escape_debug())),
    };
    if let Some(r) = &remote
        && r.size == file.size
    {
        let stored = match &known {
            Some(k) if !r.etag.is_empty() && k.etag == r.etag && k.size == size => Some(k.sha256.clone()),
            _ => store.stored_hash(&file.key).await.map_err(|e| e.0)?,
        };
        if stored.as_deref() == Some(sha256.as_str()) {
            let entry = Known { key: file.key, size, etag: r.etag.clone(), sha256, local_stamp: stamp };
            return Ok(Checked::Unchanged(Some(entry)));
        }
    }
    let etag = store.put(&file.key, &file, &sha256).await.map_err(|e| e.0)?;
    Ok(Checked::Uploaded(Known { key: file.key, size, etag, sha256, local_stamp: stamp }))
}
