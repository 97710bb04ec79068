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
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use mirror_common::api::PublicProjectView;

use crate::db::{self, Db, projects::ProjectRow, runs::RunRow};
use crate::events::{Change, Listener};
use crate::views::{ProjectState, project_view};

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

/// A body's frames, shared by every reader of one version.
type Frames = Arc<[Bytes]>;

/// Consecutive entries joined by `,`, and the same compressed for readers that accept gzip
/// (compressed once, by the first such reader, and kept as long as the chunk).
struct Chunk {
    plain: Bytes,
    gzip: OnceLock<Segment>,
}

impl Chunk {
    fn new(plain: Bytes) -> Arc<Chunk> {
        Arc::new(Chunk { plain, gzip: OnceLock::new() })
    }

    fn gzip(&self) -> &Segment {
        self.gzip.get_or_init(|| Segment::of(&self.plain))
    }
}

/// A piece of a gzip body: raw deflate blocks ending on a byte boundary (sync flush, not final),
/// so that pieces compressed on their own join into one deflate stream; with the CRC-32 and length
/// of what it holds, which combine into the gzip trailer.
struct Segment {
    deflated: Bytes,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Segment {
    fn of(data: &[u8]) -> Segment {
        use std::io::Write;
        let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        // Writes into a Vec cannot fail.
        let _ = encoder.write_all(data);
        let _ = encoder.flush();
        let deflated = Bytes::from(std::mem::take(encoder.get_mut()));
        let mut crc = crc32fast::Hasher::new();
        crc.update(data);
        Segment { deflated, crc, len: data.len() as u64 }
    }
}

/// `[`, `,` and `]` as gzip segments, made once.
fn punctuation() -> &'static [Segment; 3] {
    static PUNCTUATION: OnceLock<[Segment; 3]> = OnceLock::new();
    PUNCTUATION.get_or_init(|| [Segment::of(b"["), Segment::of(b","), Segment::of(b"]")])
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

/// A listing body: `[`, the chunks joined by `,`, `]`, each chunk handed to the connection as
/// it is (shared, not copied), or the same as gzip; its length is known, so it is sent with a
/// `Content-Length`.
pub struct ListingBody {
    frames: Frames,
    next: usize,
    remaining: u64,
    /// Sent as gzip (the answer says `Content-Encoding: gzip`).
    pub gzip: bool,
}

/// The fixed gzip header: deflate, no name, no time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// An empty final deflate block: the end of the stream.
const DEFLATE_END: [u8; 2] = [0x03, 0x00];

/// `[`, the chunks joined by `,`, `]`.
fn plain_frames(chunks: &[Arc<Chunk>]) -> Frames {
    let mut frames = Vec::with_capacity(2 * chunks.len() + 2);
    frames.push(Bytes::from_static(b"["));
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            frames.push(Bytes::from_static(b","));
        }
        frames.push(c.plain.clone());
    }
    frames.push(Bytes::from_static(b"]"));
    frames.into()
}

/// The same as one gzip stream: header, the segments, the end block, CRC-32 and length.
fn gzip_frames(chunks: &[Arc<Chunk>]) -> Frames {
    let [open, comma, close] = punctuation();
    let mut segments: Vec<&Segment> = Vec::with_capacity(2 * chunks.len() + 2);
    segments.push(open);
    for (i, c) in chunks.iter().enumerate() {
        if i > 0 {
            segments.push(comma);
        }
        segments.push(c.gzip());
    }
    segments.push(close);
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    let mut frames = Vec::with_capacity(segments.len() + 3);
    frames.push(Bytes::from_static(&GZIP_HEADER));
    for s in segments {
        crc.combine(&s.crc);
        len += s.len;
        frames.push(s.deflated.clone());
    }
    frames.push(Bytes::from_static(&DEFLATE_END));
    let mut trailer = Vec::with_capacity(8);
    trailer.extend_from_slice(&crc.finalize().to_le_bytes());
    // ISIZE: the length modulo 2^32, as gzip defines it.
    trailer.extend_from_slice(&((len & 0xffff_ffff) as u32).to_le_bytes());
    frames.push(Bytes::from(trailer));
    frames.into()
}

impl ListingBody {
    fn from_frames(frames: Frames, gzip: bool) -> ListingBody {
        let remaining = frames.iter().map(|f| f.len() as u64).sum();
        ListingBody { frames, next: 0, remaining, gzip }
    }
}

impl http_body::Body for ListingBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let Some(frame) = self.frames.get(self.next).cloned() else { return Poll::Ready(None) };
        self.next += 1;
        self.remaining = self.remaining.saturating_sub(frame.len() as u64);
        Poll::Ready(Some(Ok(http_body::Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn bytes_of(body: ListingBody) -> Vec<u8> {
        let expected = http_body::Body::size_hint(&body).exact();
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(Some(bytes.len() as u64), expected);
        bytes.to_vec()
    }

    /// The plain body; checks that the gzip body holds the same.
    async fn collect(parts: &[&'static str]) -> String {
        let chunks: Vec<Arc<Chunk>> = parts.iter().map(|p| Chunk::new(Bytes::from_static(p.as_bytes()))).collect();
        let plain = String::from_utf8(bytes_of(ListingBody::from_frames(plain_frames(&chunks), false)).await).unwrap();
        let gzipped = bytes_of(ListingBody::from_frames(gzip_frames(&chunks), true)).await;
        let mut unzipped = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut unzipped).unwrap();
        assert_eq!(unzipped, plain);
        plain
    }

    #[tokio::test]
    async fn bodies_are_json_arrays_of_their_chunks() {
        assert_eq!(collect(&[]).await, "[]");
        assert_eq!(collect(&[r#"{"a":1}"#]).await, r#"[{"a":1}]"#);
        assert_eq!(collect(&[r#"{"a":1},{"b":2}"#, r#"{"c":3}"#]).await, r#"[{"a":1},{"b":2},{"c":3}]"#);
        let big: &'static str = Box::leak(format!("{{\"x\":\"{}\"}}", "abc".repeat(100_000)).into_boxed_str());
        let listed = collect(&[big, big, r#"{"y":2}"#]).await;
        assert_eq!(listed.len(), 2 * big.len() + 11);
    }
}
