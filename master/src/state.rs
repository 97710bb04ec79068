//! The state every handler shares: passed with `with_state`, no globals, so tests can run many
//! masters in one process.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use chrono::{DateTime, Utc};

use crate::auth::Authenticator;
use crate::cluster::Cluster;
use crate::config::Settings;
use crate::db::Db;
use crate::runner::Runner;
use crate::scheduler::Scheduler;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub db: Db,
    pub settings: Settings,
    /// `settings.mirror_root`, created and with symlinks resolved.
    pub mirror_root: PathBuf,
    pub auth: Authenticator,
    pub listing: Arc<ListingCache>,
    pub runner: Arc<Runner>,
    pub scheduler: Arc<Scheduler>,
    pub cluster: Arc<Cluster>,
    /// Whether rsync runs are confined (decides which options are accepted).
    pub confine: mirror_runtime::rsync::ConfineStatus,
    /// Serialises project writes, so that checks across rows (overlapping `dest`s, renames) and
    /// the write that follows them cannot interleave with another request's.
    pub project_writes: tokio::sync::Mutex<()>,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The rendered `GET /list_projects/` body. Dashboards poll it; rebuilding it means a query, a
/// next-fire computation per project and JSON for all of them, so it is kept until a project
/// changes or the earliest `next_run_time` in it passes.
#[derive(Default)]
pub struct ListingCache {
    version: AtomicU64,
    body: RwLock<Option<CachedListing>>,
}

struct CachedListing {
    version: u64,
    valid_until: Option<DateTime<Utc>>,
    /// For logged-in callers.
    full: Bytes,
    /// For everyone else: no local paths, accounts or rsync messages.
    public: Bytes,
}

impl ListingCache {
    /// Call after every committed change to what the listing shows.
    pub fn invalidate(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    /// The version to tag a body with; read it before querying, so a change committed during the
    /// query makes the body stale rather than cached as current.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    pub fn get(&self, now: DateTime<Utc>, public: bool) -> Option<Bytes> {
        let current = self.version();
        let guard = self.body.read().ok()?;
        let cached = guard.as_ref()?;
        (cached.version == current && cached.valid_until.is_none_or(|t| now < t))
            .then(|| if public { cached.public.clone() } else { cached.full.clone() })
    }

    pub fn put(&self, version: u64, valid_until: Option<DateTime<Utc>>, full: Bytes, public: Bytes) {
        if let Ok(mut guard) = self.body.write() {
            *guard = Some(CachedListing { version, valid_until, full, public });
        }
    }
}
