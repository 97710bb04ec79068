//! The rendered listing, kept between changes.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use chrono::{DateTime, Utc};

use crate::events::{Change, Listener};

/// The rendered `GET /list_projects/` body. Dashboards poll it; rebuilding it means a query, a
/// next-fire computation per project and JSON for all of them, so it is kept until a project
/// changes or the earliest `next_run_time` in it passes.
#[derive(Default)]
pub struct ListingCache {
    version: AtomicU64,
    body: RwLock<Option<CachedListing>>,
    /// One rebuild at a time: the readers that miss while one runs wait for its body instead of
    /// each querying the database and rendering the same listing again.
    pub rebuilding: tokio::sync::Mutex<()>,
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

    /// A body built from data at least as new as `version` (read when the request came: every
    /// change committed before it is in such a body), still valid at `now`.
    pub fn get_since(&self, version: u64, now: DateTime<Utc>, public: bool) -> Option<Bytes> {
        let guard = self.body.read().ok()?;
        let cached = guard.as_ref()?;
        (cached.version >= version && cached.valid_until.is_none_or(|t| now < t))
            .then(|| if public { cached.public.clone() } else { cached.full.clone() })
    }

    pub fn put(&self, version: u64, valid_until: Option<DateTime<Utc>>, full: Bytes, public: Bytes) {
        if let Ok(mut guard) = self.body.write() {
            *guard = Some(CachedListing { version, valid_until, full, public });
        }
    }
}

impl Listener for ListingCache {
    /// Every change is shown by the listing: projects, runs, generations.
    fn changed(&self, _change: &Change) {
        self.invalidate();
    }
}
