//! The listing (`GET /list_projects/`), kept up to date from the change events rather than thrown
//! away: a change to a project marks that project alone; the next reader re-reads and re-renders
//! the marked projects (one query each for rows, latest runs and last successes, whatever their
//! number) and assembles the body from the per-project fragments. Bodies of successive versions
//! share every unchanged fragment, so many clients reading during many writes hold little memory,
//! and a write costs the listing the rendering of one project, not of all of them. Readers that
//! accept gzip get the chunks compressed, each compressed once (on the async worker of the first
//! such reader: ~0.5 ms per changed chunk, longer once after a full re-read).

use mirror_common::names::ProjectId;
use mirror_common::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use mirror_common::api::PublicProjectView;

mod body;

pub use body::ListingBody;
use body::{Chunk, Frames, gzip_frames, plain_frames};

use crate::db::{self, Db, projects::ProjectRow, runs::RunRow};
use crate::events::{Change, Listener};
use crate::read::views::{ProjectState, project_view};

/// At more marked projects than this, the whole listing is read again (one scan beats a long
/// `IN` list).
const REREAD_ALL_ABOVE: usize = 512;

/// What one project's fragments were rendered from, kept to render it again when it expires (its
/// next fire time passes, or it turns stale: no query needed for that).
struct Entry {
    /// Shared with the readers of [`ListingCache::states`] (no copy per read).
    state: Arc<ProjectState>,
    /// Its JSON object for logged-in callers, and for everyone else.
    full: Bytes,
    public: Bytes,
    /// When it was rendered, in render order: a chunk holding a newer entry is joined again.
    serial: u64,
    /// A chunk ends after it ([`ends_chunk`] of its id, computed once).
    ends_chunk: bool,
}

/// The chunks of one version of the listing, in id order.
type Chunks = Arc<[Arc<Chunk>]>;

/// One version of the listing: its chunks, shared with other versions, and the bodies made of
/// them: (full, public) x (plain, gzip), each made once, by its first reader.
struct Assembled {
    version: u64,
    valid_until: Option<DateTime<Utc>>,
    full: Chunks,
    public: Chunks,
    bodies: [OnceLock<Frames>; 4],
}

/// A chunk: consecutive entries joined by `,`, kept while none of them changes. A chunk ends
/// after an entry whose id hashes to 0 modulo [`CHUNK_ENTRIES`] (boundaries that depend on the
/// ids alone, so that adding or removing a project changes its own chunk, not the ones after it).
/// Successive versions share every unchanged chunk, and a reader is sent the chunks as they are:
/// no copy of the listing per request.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ChunkKey {
    first: ProjectId,
    count: usize,
    newest: u64,
}

/// Entries per chunk, on average.
const CHUNK_ENTRIES: u64 = 64;

fn ends_chunk(id: &str) -> bool {
    use std::hash::{Hash, Hasher};
    // Stable within a process (the default hasher's keys are fixed for `DefaultHasher::new`).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish().is_multiple_of(CHUNK_ENTRIES)
}

fn join(parts: &[&Bytes]) -> Bytes {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(p);
    }
    Bytes::from(out)
}

#[derive(Default)]
struct Inner {
    /// Bumped by every change.
    version: u64,
    /// Nothing is known yet (at start): read everything.
    all_marked: bool,
    marked: BTreeSet<ProjectId>,
    entries: BTreeMap<ProjectId, Entry>,
    /// The chunks of the last assembly: (full, public).
    chunks: HashMap<ChunkKey, (Arc<Chunk>, Arc<Chunk>)>,
    /// The serial the next rendered entry gets.
    next_serial: u64,
    body: Option<Assembled>,
}

pub struct ListingCache {
    /// The master's `stale_after_secs` (a project's default staleness objective).
    default_max_age_secs: u64,
    inner: Mutex<Inner>,
    /// One refresh at a time: readers that miss while one runs wait for its result instead of
    /// each querying and rendering again.
    refreshing: tokio::sync::Mutex<()>,
}

impl ListingCache {
    pub fn new(default_max_age_secs: u64) -> Self {
        ListingCache {
            default_max_age_secs,
            inner: Mutex::new(Inner { all_marked: true, ..Inner::default() }),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }
}

/// Rendered projects: (row, last run, last success, next fire, full JSON, public JSON).
fn render(
    rows: Vec<ProjectRow>,
    mut last_runs: HashMap<ProjectId, RunRow>,
    mut last_success: HashMap<ProjectId, Timestamp>,
    now: DateTime<Utc>,
    max_age: u64,
) -> anyhow::Result<Vec<Entry>> {
    rows.into_iter()
        .map(|row| {
            let last_run = last_runs.remove(&row.id);
            let last_success = last_success.remove(&row.id);
            render_one(row, last_run, last_success, now, max_age)
        })
        .collect()
}

fn render_one(
    row: ProjectRow,
    last_run: Option<RunRow>,
    last_success: Option<Timestamp>,
    now: DateTime<Utc>,
    max_age: u64,
) -> anyhow::Result<Entry> {
    let view = project_view(&row, now, last_run.as_ref(), last_success, max_age)?;
    let next_run = view.next_run_time.map(Timestamp::to_datetime);
    // `stale` turns true just after `stale_after` (see `views::is_stale`).
    let turns_stale =
        view.stale_after.filter(|_| !view.stale).map(|t| t.to_datetime() + chrono::Duration::milliseconds(1));
    let expires = next_run.into_iter().chain(turns_stale).min();
    let full = Bytes::from(serde_json::to_vec(&view)?);
    let public = Bytes::from(serde_json::to_vec(&PublicProjectView::from(view))?);
    let ends_chunk = ends_chunk(&row.id);
    let state = Arc::new(ProjectState { row, last_run, last_success, next_run, expires });
    Ok(Entry { state, full, public, serial: 0, ends_chunk })
}

impl Inner {
    /// The chunks of the current entries: kept ones where nothing in them changed.
    fn assemble(&mut self) -> (Chunks, Chunks) {
        let mut kept = HashMap::with_capacity(self.chunks.len() + 1);
        let (mut full, mut public) = (Vec::new(), Vec::new());
        let mut group: Vec<&Entry> = Vec::with_capacity(2 * CHUNK_ENTRIES as usize);
        let mut entries = self.entries.iter().peekable();
        while let Some((_, entry)) = entries.next() {
            group.push(entry);
            if !(entry.ends_chunk || entries.peek().is_none()) {
                continue;
            }
            let key = ChunkKey {
                first: group[0].state.row.id.clone(),
                count: group.len(),
                newest: group.iter().map(|e| e.serial).max().unwrap_or(0),
            };
            let chunk = match self.chunks.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let f: Vec<&Bytes> = group.iter().map(|e| &e.full).collect();
                    let p: Vec<&Bytes> = group.iter().map(|e| &e.public).collect();
                    (Chunk::new(join(&f)), Chunk::new(join(&p)))
                }
            };
            full.push(Arc::clone(&chunk.0));
            public.push(Arc::clone(&chunk.1));
            kept.insert(key, chunk);
            group.clear();
        }
        self.chunks = kept;
        (full.into(), public.into())
    }
}

impl ListingCache {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn mark<'a>(&self, ids: impl IntoIterator<Item = &'a ProjectId>) {
        let mut inner = self.inner();
        inner.version += 1;
        inner.marked.extend(ids.into_iter().cloned());
    }

    /// A body built from data at least as new as `version`, still valid at `now`.
    fn body_since(&self, version: u64, now: DateTime<Utc>, public: bool, gzip: bool) -> Option<ListingBody> {
        let slot = usize::from(public) * 2 + usize::from(gzip);
        let (chunks, made) = {
            let inner = self.inner();
            let body = inner.body.as_ref()?;
            if body.version < version || body.valid_until.is_some_and(|t| now >= t) {
                return None;
            }
            match body.bodies[slot].get() {
                Some(frames) => (None, Some(Arc::clone(frames))),
                None => (Some(Arc::clone(if public { &body.public } else { &body.full })), None),
            }
        };
        if let Some(frames) = made {
            return Some(ListingBody::from_frames(frames, gzip));
        }
        // The first reader of this version and variant makes its frames (outside the lock), and
        // leaves them for the others if the version is still the current one.
        let chunks = chunks?;
        let frames = if gzip { gzip_frames(&chunks) } else { plain_frames(&chunks) };
        {
            // The same assembly (its chunk list is the very one read above), not a newer one.
            let inner = self.inner();
            if let Some(body) = inner.body.as_ref()
                && Arc::ptr_eq(if public { &body.public } else { &body.full }, &chunks)
            {
                let _ = body.bodies[slot].set(Arc::clone(&frames));
            }
        }
        Some(ListingBody::from_frames(frames, gzip))
    }

    /// The listing as of now: every change committed before this call is in it. `gzip`: the
    /// reader accepts it.
    pub async fn body(&self, db: &Db, public: bool, gzip: bool) -> anyhow::Result<ListingBody> {
        let arrived = self.inner().version;
        if let Some(body) = self.body_since(arrived, Utc::now(), public, gzip) {
            return Ok(body);
        }
        let _one_refresh = self.refreshing.lock().await;
        // Built by the refresh we waited for?
        let now = Utc::now();
        if let Some(body) = self.body_since(arrived, now, public, gzip) {
            return Ok(body);
        }
        self.refresh(db, now).await?;
        self.body_since(arrived, now, public, gzip).ok_or_else(|| anyhow::anyhow!("the listing refresh left no body"))
    }

    /// Every project with its latest run, last success and next fire, as current as the listing
    /// (the status page, `/jobs` and `/metrics` read it: no query when nothing changed).
    pub async fn states(&self, db: &Db) -> anyhow::Result<Vec<Arc<ProjectState>>> {
        let arrived = self.inner().version;
        if !self.is_current(arrived, Utc::now()) {
            let _one_refresh = self.refreshing.lock().await;
            let now = Utc::now();
            if !self.is_current(arrived, now) {
                self.refresh(db, now).await?;
            }
        }
        let inner = self.inner();
        Ok(inner.entries.values().map(|e| Arc::clone(&e.state)).collect())
    }

    fn is_current(&self, version: u64, now: DateTime<Utc>) -> bool {
        let inner = self.inner();
        inner.body.as_ref().is_some_and(|b| b.version >= version && b.valid_until.is_none_or(|t| now < t))
    }

    /// Re-reads the marked projects, re-renders those that went out of date by themselves (their
    /// next fire passed, or they turned stale), and assembles.
    async fn refresh(&self, db: &Db, now: DateTime<Utc>) -> anyhow::Result<()> {
        let (version, all, marked, expired) = {
            let mut inner = self.inner();
            let expired: Vec<ProjectId> = inner
                .entries
                .iter()
                .filter(|(_, e)| e.state.expires.is_some_and(|t| t <= now))
                .map(|(id, _)| id.clone())
                .collect();
            let all = std::mem::take(&mut inner.all_marked) || inner.marked.len() > REREAD_ALL_ABOVE;
            let marked: Vec<ProjectId> = std::mem::take(&mut inner.marked).into_iter().collect();
            (inner.version, all, marked, expired)
        };
        let result = self.reread(db, now, all, &marked, &expired).await;
        let (fresh, stale_again) = match result {
            Ok(r) => r,
            Err(e) => {
                // Not refreshed: what was marked stays marked.
                let mut inner = self.inner();
                inner.all_marked |= all;
                inner.marked.extend(marked);
                return Err(e);
            }
        };
        let mut inner = self.inner();
        if all {
            inner.entries.clear();
        } else {
            for id in marked.iter().chain(&stale_again) {
                inner.entries.remove(id);
            }
        }
        for mut entry in fresh {
            entry.serial = inner.next_serial;
            inner.next_serial += 1;
            inner.entries.insert(entry.state.row.id.clone(), entry);
        }
        let valid_until = inner.entries.values().filter_map(|e| e.state.expires).min();
        let (full, public) = inner.assemble();
        inner.body = Some(Assembled { version, valid_until, full, public, bodies: Default::default() });
        Ok(())
    }

    /// The entries to put in: the marked projects read again (all of them when `all`), and the
    /// expired ones rendered again from what they were rendered from. Also returns the expired
    /// ids (an expired project that is gone is removed with the marked ones).
    async fn reread(
        &self,
        db: &Db,
        now: DateTime<Utc>,
        all: bool,
        marked: &[ProjectId],
        expired: &[ProjectId],
    ) -> anyhow::Result<(Vec<Entry>, Vec<ProjectId>)> {
        let (rows, last_runs, last_success) = if all {
            (
                db::projects::list(db).await?,
                db::runs::latest_per_project(db).await?,
                db::runs::last_success_per_project(db).await?,
            )
        } else if marked.is_empty() {
            (Vec::new(), Vec::new(), Vec::new())
        } else {
            (
                db::projects::list_some(db, marked).await?,
                db::runs::latest_of(db, marked).await?,
                db::runs::last_success_of(db, marked).await?,
            )
        };
        let last_runs: HashMap<ProjectId, RunRow> = last_runs.into_iter().map(|r| (r.project_id.clone(), r)).collect();
        let last_success: HashMap<ProjectId, Timestamp> = last_success.into_iter().collect();
        // The expired ones not read again above: rendered from their kept data.
        let again: Vec<(ProjectRow, Option<RunRow>, Option<Timestamp>)> = if all {
            Vec::new()
        } else {
            let read: BTreeSet<&ProjectId> = marked.iter().collect();
            let inner = self.inner();
            expired
                .iter()
                .filter(|id| !read.contains(id))
                .filter_map(|id| inner.entries.get(id))
                .map(|e| (e.state.row.clone(), e.state.last_run.clone(), e.state.last_success))
                .collect()
        };
        let stale_again: Vec<ProjectId> = again.iter().map(|(row, _, _)| row.id.clone()).collect();
        // A next fire per project and JSON: CPU work, off the async workers.
        let max_age = self.default_max_age_secs;
        let entries = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Entry>> {
            let mut entries = render(rows, last_runs, last_success, now, max_age)?;
            for (row, last_run, last_success) in again {
                entries.push(render_one(row, last_run, last_success, now, max_age)?);
            }
            Ok(entries)
        })
        .await??;
        Ok((entries, stale_again))
    }
}

impl Listener for ListingCache {
    /// Marks the projects a change touches; the next reader brings them up to date.
    fn changed(&self, change: &Change) {
        match change {
            Change::ProjectSaved(row) | Change::NewGeneration(row) => self.mark([&row.id]),
            Change::ProjectRemoved { id } => self.mark([id]),
            Change::ProjectRenamed { from, to } => self.mark([from, to]),
            Change::Stale { projects } => self.mark(projects),
            Change::Run { project, .. } => self.mark([project]),
            Change::UserChanged { .. }
            | Change::Committed(_)
            | Change::PushEnded { .. }
            | Change::SnapshotBuilt { .. } => {}
        }
    }
}
