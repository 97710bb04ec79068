//! Object-store targets (issue 15, the autosync seed): after each successful run, on
//! `POST /targets/sync`, and for each change in a watched tree, every target of the project is
//! brought in step with its tree. One push at a time per target; a request that comes during one
//! is done after it, once (requests in between are merged).
//!
//! Change detection: an object is the same as a file when their sizes and SHA-256 are equal. The
//! hash goes into each object's metadata (`x-amz-meta-sha256`) because a multipart upload's ETag
//! is not an MD5 of the content; the master also remembers (size, ETag, hash, local stamp) of
//! every object it put, so an unchanged tree is re-pushed with one listing and no other request,
//! and an unchanged file is not even read again.

pub mod s3;
pub mod store;
pub mod tree;
pub mod watch;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use mirror_common::names::{Name, ProjectId};
use mirror_common::targets::{PushStatus, TargetKind, TargetSpec};

use crate::config::{S3Credentials, Settings, TargetSettings};
use crate::db::targets::{Counts, Known};
use crate::db::{self, Db, projects::ProjectRow};
use crate::events::{Change, Events, Listener};
use crate::snapshots::Snapshots;
use store::{Remote, Store};
use tree::{Local, Selection};

/// At most this many errors are kept in a push's message.
const REPORTED_ERRORS: usize = 5;

/// What is to be done for one target.
#[derive(Debug, Default)]
struct Pending {
    /// A full merge, and what asked for it (`run`, `manual`, `start`, `watch`).
    full: Option<&'static str>,
    /// Paths (relative to the tree) that changed in a watched tree.
    paths: BTreeSet<String>,
}

pub struct Pusher {
    db: Db,
    settings: TargetSettings,
    keys: HashMap<Name, Arc<s3::Keys>>,
    /// The `[[s3_credentials]]` entries: which endpoints and buckets each may be used with.
    credentials: Vec<S3Credentials>,
    events: Arc<Events>,
    /// Per (project, target): work waiting; an entry exists while a worker drives it.
    pending: Mutex<HashMap<(ProjectId, Name), Pending>>,
    watchers: Mutex<HashMap<ProjectId, watch::Watching>>,
    /// A full merge reads the generation's snapshot, when there is one, not the live tree.
    snapshots: Snapshots,
    me: Weak<Pusher>,
}

/// Reads every `[[s3_credentials]]` entry's key id and secret (at start: a missing variable or a
/// file readable by others stops the master, naming the entry).
async fn load_keys(creds: &[S3Credentials]) -> anyhow::Result<HashMap<Name, Arc<s3::Keys>>> {
    let env = |var: &str, what: &str, name: &Name| {
        std::env::var(var).map_err(|_| anyhow::anyhow!("s3_credentials '{name}': {what} variable {var} is not set"))
    };
    let mut keys = HashMap::new();
    for c in creds {
        let access_key_id = match (&c.access_key_id, &c.access_key_id_env) {
            (Some(id), _) => id.clone(),
            (None, Some(var)) => env(var, "access_key_id_env", &c.name)?,
            (None, None) => anyhow::bail!("s3_credentials '{}': no access key id", c.name),
        };
        let secret = match (&c.secret_access_key_env, &c.secret_access_key_file) {
            (Some(var), _) => mirror_common::Secret::new(env(var, "secret_access_key_env", &c.name)?),
            (None, Some(path)) => mirror_runtime::fs::read_secret_file(path)
                .await
                .map_err(|m| anyhow::anyhow!("s3_credentials '{}': secret_access_key_file: {m}", c.name))?,
            (None, None) => anyhow::bail!("s3_credentials '{}': no secret access key", c.name),
        };
        keys.insert(c.name.clone(), Arc::new(s3::Keys { access_key_id, secret_access_key: secret }));
    }
    Ok(keys)
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
    pub async fn new(
        db: Db,
        settings: &Settings,
        events: Arc<Events>,
        snapshots: Snapshots,
    ) -> anyhow::Result<Arc<Pusher>> {
        let keys = load_keys(&settings.s3_credentials).await?;
        Ok(Arc::new_cyclic(|me| Pusher {
            db,
            settings: settings.targets.clone(),
            keys,
            credentials: settings.s3_credentials.clone(),
            events,
            pending: Mutex::new(HashMap::new()),
            watchers: Mutex::new(HashMap::new()),
            snapshots,
            me: me.clone(),
        }))
    }

    /// At start: pushes a previous master left going are recorded as interrupted; every watched
    /// project is watched and merged once (changes made while the master was down are pushed).
    pub async fn start(&self) -> anyhow::Result<()> {
        db::targets::interrupt_unfinished(&self.db).await?;
        for row in db::projects::list(&self.db).await? {
            if row.watch && !row.targets.is_empty() {
                self.watch(&row);
            }
        }
        Ok(())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<(ProjectId, Name), Pending>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A full merge of every target of `row`.
    pub fn request_all(&self, row: &ProjectRow, trigger: &'static str) {
        for t in row.targets.iter() {
            self.request(&row.id, &t.name, Some(trigger), BTreeSet::new());
        }
    }

    /// Queues work for one target; starts its worker unless one is going (it takes the work).
    fn request(
        &self,
        project: &ProjectId,
        target: &Name,
        full: Option<&'static str>,
        paths: BTreeSet<String>,
    ) -> String {
        let key = (project.clone(), target.clone());
        let mut pending = self.pending();
        let start = !pending.contains_key(&key);
        let p = pending.entry(key.clone()).or_default();
        if full.is_some() {
            p.full = p.full.or(full);
        }
        p.paths.extend(paths);
        drop(pending);
        if start && let Some(me) = self.me.upgrade() {
            tokio::spawn(async move { me.drive(key).await });
        }
        target.to_string()
    }

    /// Paths changed in a watched tree.
    pub fn changed_paths(&self, project: &ProjectId, paths: BTreeSet<String>, rescan: bool) {
        let row = self.watchers.lock().unwrap_or_else(|p| p.into_inner()).get(project).map(|w| w.targets.clone());
        for target in row.unwrap_or_default() {
            self.request(project, &target, rescan.then_some("watch"), paths.clone());
        }
    }

    async fn drive(self: Arc<Self>, key: (ProjectId, Name)) {
        loop {
            let work = {
                let mut pending = self.pending();
                let Some(p) = pending.get_mut(&key) else { return };
                if p.full.is_none() && p.paths.is_empty() {
                    pending.remove(&key);
                    return;
                }
                std::mem::take(p)
            };
            let row = match db::projects::get(&self.db.read, &key.0).await {
                Ok(Some(row)) => row,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(project.id = %key.0, error = %e, "cannot read the project for a push");
                    continue;
                }
            };
            let Some(spec) = row.targets.iter().find(|t| t.name == key.1).cloned() else { continue };
            let trigger = work.full.unwrap_or("watch");
            self.push(&row, &spec, trigger, work.full.is_none().then_some(work.paths)).await;
        }
    }

    fn open(&self, spec: &TargetSpec) -> Result<Arc<dyn Store>, String> {
        let keys = self.keys.get(&spec.credentials).ok_or_else(|| {
            format!("no [[s3_credentials]] entry named '{}' in the master's configuration", spec.credentials)
        })?;
        // Checked when the target was saved, and again here: the configuration may have changed.
        if let Some(entry) = self.credentials.iter().find(|c| c.name == spec.credentials) {
            entry.allows(&spec.endpoint, &spec.bucket).map_err(|(field, m)| format!("{field}: {m}"))?;
        }
        match spec.kind {
            TargetKind::S3 => Ok(Arc::new(s3::S3::new(spec, keys, &self.settings).map_err(|e| e.0)?)),
        }
    }

    /// One push, recorded: a full merge, or (`paths`) only the files that changed.
    async fn push(&self, row: &ProjectRow, spec: &TargetSpec, trigger: &'static str, paths: Option<BTreeSet<String>>) {
        let span = tracing::info_span!("push", project.id = %row.id, target = %spec.name, trigger);
        let _enter = span.enter();
        let id = match db::targets::start(&self.db, &row.id, &spec.name, trigger).await {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(error = %e, "cannot record a push");
                return;
            }
        };
        let mut counts = Counts::default();
        let mut errors = Vec::new();
        let mut notes = Vec::new();
        let done = self.merge(row, spec, paths, &mut counts, &mut errors, &mut notes).await;
        let (status, message) = match done {
            Err(fatal) => (PushStatus::Failed, fatal),
            Ok(()) if counts.errors > 0 => (
                PushStatus::Failed,
                format!("{} requests failed (the next push does them): {}", counts.errors, errors.join("; ")),
            ),
            Ok(()) => (PushStatus::Success, notes.join("; ")),
        };
        if status == PushStatus::Success {
            tracing::info!(
                uploaded = counts.uploaded,
                deleted = counts.deleted,
                unchanged = counts.unchanged,
                "push done"
            );
        } else {
            tracing::warn!(message = %message, "push failed");
        }
        if let Err(e) = db::targets::finish(&self.db, id, status, &counts, &message).await {
            tracing::error!(error = %e, "cannot record the end of a push");
        }
        if let Err(e) = db::targets::prune(&self.db, &row.id, &spec.name, self.settings.pushes_keep).await {
            tracing::warn!(error = %e, "cannot prune old pushes");
        }
        self.events.publish(Change::PushEnded {
            project: row.id.clone(),
            target: spec.name.to_string(),
            status,
            uploaded: counts.uploaded,
            deleted: counts.deleted,
            bytes: counts.bytes_uploaded,
            message,
        });
    }

    async fn merge(
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
        let (files, remote, deletes) = match paths {
            None => {
                let (r, s) = (root.clone(), sel.clone());
                let walked =
                    tokio::task::spawn_blocking(move || tree::walk(&r, &s)).await.map_err(|e| e.to_string())??;
                counts.skipped = walked.skipped;
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
                let deletes = self.beneath_prefix(&sel, deletes, notes);
                let remote: HashMap<String, Remote> = listed.into_iter().map(|r| (r.key.clone(), r)).collect();
                (walked.files, Some(remote), deletes)
            }
            Some(paths) => {
                // A watched tree's changes: what the master put is taken as what the store holds
                // (the merge at start and after a missed event checks the store itself).
                let (r, s) = (root.clone(), sel.clone());
                tokio::task::spawn_blocking(move || changed_files(&r, &s, &paths))
                    .await
                    .map_err(|e| e.to_string())
                    .map(|(files, gone)| (files, None, if spec.keep_deleted { Vec::new() } else { gone }))
                    .map(|(files, remote, gone)| (files, remote, self.beneath_prefix(&sel, gone, notes)))?
            }
        };
        counts.files = files.len() as u64;
        let remote = remote.map(Arc::new);
        let known = Arc::new(known);
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
        // Entries of objects someone else removed are forgotten too.
        if let Some(listing) = &remote {
            gone.extend(known.keys().filter(|k| !listing.contains_key(*k)).cloned());
        }
        db::targets::remember(&self.db, &identity, &remember, &gone).await.map_err(|e| e.to_string())
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

    /// Starts or stops watching `row`'s tree as its configuration says.
    pub fn watch(&self, row: &ProjectRow) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        let wanted = row.watch && !row.targets.is_empty();
        let targets: Vec<Name> = row.targets.iter().map(|t| t.name.clone()).collect();
        match watchers.get_mut(&row.id) {
            Some(w) if wanted && w.root == Path::new(&row.dest) => {
                w.targets = targets;
                return;
            }
            Some(_) => {
                watchers.remove(&row.id);
            }
            None => {}
        }
        if !wanted {
            return;
        }
        match watch::Watching::start(self.me.clone(), row.id.clone(), PathBuf::from(&row.dest), targets, &self.settings)
        {
            Ok(w) => {
                watchers.insert(row.id.clone(), w);
                // Changes made while no one watched: a full merge first.
                self.request_all(row, "start");
            }
            Err(e) => tracing::error!(project.id = %row.id, error = %e, "cannot watch the tree"),
        }
    }

    fn unwatch(&self, id: &ProjectId) {
        self.watchers.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
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

impl Listener for Pusher {
    fn changed(&self, change: &Change) {
        match change {
            Change::NewGeneration(row) if !row.targets.is_empty() => {
                self.request_all(row, "run");
            }
            Change::ProjectSaved(row) => self.watch(row),
            Change::ProjectRemoved { id } => self.unwatch(id),
            Change::ProjectRenamed { from, .. } => self.unwatch(from),
            _ => {}
        }
    }
}

/// What the API asks of the targets.
impl Pusher {
    async fn project(&self, id: &ProjectId) -> Result<ProjectRow, crate::error::Error> {
        db::projects::get(&self.db.read, id)
            .await?
            .ok_or_else(|| crate::error::Error::not_found("id", format!("no project with id '{}'", id.escape_debug())))
    }

    /// `POST /targets/sync?id=[&target=]`: a full merge of the project's targets (or of one).
    pub async fn sync(
        &self,
        id: &ProjectId,
        target: Option<&Name>,
    ) -> Result<mirror_common::targets::PushStarted, crate::error::Error> {
        let row = self.project(id).await?;
        let chosen: Vec<&TargetSpec> = row.targets.iter().filter(|t| target.is_none_or(|n| *n == t.name)).collect();
        if chosen.is_empty() {
            return Err(match target {
                Some(n) => crate::error::Error::not_found("target", format!("project '{id}' has no target '{n}'")),
                None => crate::error::Error::conflict("id", format!("project '{id}' has no targets")),
            });
        }
        let targets = chosen.iter().map(|t| self.request(&row.id, &t.name, Some("manual"), BTreeSet::new())).collect();
        Ok(mirror_common::targets::PushStarted { project: row.id.to_string(), targets })
    }

    /// `GET /targets?id=`: the project's targets with their last push.
    pub async fn views(&self, id: &ProjectId) -> Result<Vec<mirror_common::targets::TargetView>, crate::error::Error> {
        let row = self.project(id).await?;
        let mut last: HashMap<String, (db::targets::PushRow, Option<mirror_common::time::Timestamp>)> =
            db::targets::last_per_target(&self.db, id)
                .await?
                .into_iter()
                .map(|(p, s)| (p.target.clone(), (p, s)))
                .collect();
        Ok(row
            .targets
            .iter()
            .map(|t| {
                let found = last.remove(t.name.as_str());
                mirror_common::targets::TargetView {
                    target: t.clone(),
                    last_push: found.as_ref().map(|(p, _)| p.view()),
                    last_success: found.and_then(|(_, s)| s),
                }
            })
            .collect())
    }

    /// `GET /targets/pushes?id=[&target=][&limit=]`: newest first.
    pub async fn pushes(
        &self,
        id: &ProjectId,
        target: Option<&Name>,
        limit: i64,
    ) -> Result<Vec<mirror_common::targets::PushView>, crate::error::Error> {
        if !(1..=1000).contains(&limit) {
            return Err(crate::error::Error::field("limit", "must be a number from 1 to 1000"));
        }
        self.project(id).await?;
        let rows = db::targets::list(&self.db, id, target.map(Name::as_str), limit).await?;
        Ok(rows.iter().map(db::targets::PushRow::view).collect())
    }

    /// `GET /targets/pushes/{id}`.
    pub async fn push_view(&self, id: i64) -> Result<mirror_common::targets::PushView, crate::error::Error> {
        let row = db::targets::get(&self.db, id).await?;
        row.map(|r| r.view()).ok_or_else(|| crate::error::Error::not_found("id", format!("no push {id}")))
    }
}
