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

mod merge;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use mirror_common::names::{Name, ProjectId};
use mirror_common::targets::{PushStatus, TargetKind, TargetSpec};

use crate::cluster::snapshots::Snapshots;
use crate::config::{S3Credentials, Settings, TargetSettings};
use crate::db::targets::Counts;
use crate::db::{self, Db, projects::ProjectRow};
use crate::events::{Change, Events, Listener};
use store::Store;

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
