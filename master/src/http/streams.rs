//! Open streams (`/events`, `/runs/{id}/log?follow=true`): they last as long as their client
//! wants, so they never take one of the request rooms of [`super::admission`] (70 of them once made
//! every listing answer 503). They have a cap of their own instead: `max_streams` in all and
//! `max_streams_per_user` per user; past either a new stream is answered 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::error::ApiError;

pub struct Streams {
    total: usize,
    per_user: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_user: HashMap<String, usize>,
}

/// One open stream; dropped when the stream ends (its client went away, or it ended).
pub struct StreamSlot {
    streams: Arc<Streams>,
    user: String,
}

impl Streams {
    pub fn new(total: usize, per_user: usize) -> Arc<Streams> {
        Arc::new(Streams { total, per_user, open: Mutex::new(Open::default()) })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn acquire(self: &Arc<Self>, user: &str) -> Result<StreamSlot, ApiError> {
        let mut open = self.open();
        let mine = open.by_user.get(user).copied().unwrap_or(0);
        if mine >= self.per_user {
            return Err(ApiError::TooMany(format!(
                "{user} has {mine} streams open (max_streams_per_user): close one, or try again later"
            )));
        }
        if open.total >= self.total {
            return Err(ApiError::TooMany("the master has max_streams streams open: try again later".into()));
        }
        open.total += 1;
        *open.by_user.entry(user.to_owned()).or_default() += 1;
        Ok(StreamSlot { streams: Arc::clone(self), user: user.to_owned() })
    }

    /// Streams open now (for tests and metrics).
    pub fn count(&self) -> usize {
        self.open().total
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_user.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_user.remove(&self.user);
            }
        }
    }
}

/// Whether a request opens a stream (it is not counted by the admission control).
pub fn is_stream(path: &str, query: Option<&str>) -> bool {
    let path = path.trim_end_matches('/');
    if path == "/events" {
        return true;
    }
    let follows =
        query.is_some_and(|q| q.split('&').any(|kv| matches!(kv, "follow" | "follow=" | "follow=true" | "follow=1")));
    follows && path.starts_with("/runs/") && path.ends_with("/log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_user_and_in_all_and_gives_back_on_drop() {
        let s = Streams::new(3, 2);
        let a1 = s.acquire("alice").unwrap();
        let _a2 = s.acquire("alice").unwrap();
        assert!(matches!(s.acquire("alice"), Err(ApiError::TooMany(_))));
        let _b1 = s.acquire("bob").unwrap();
        assert!(matches!(s.acquire("carol"), Err(ApiError::TooMany(_))));
        drop(a1);
        assert_eq!(s.count(), 2);
        let _c1 = s.acquire("carol").unwrap();
    }

    #[test]
    fn streams_are_told_from_requests() {
        assert!(is_stream("/events", None));
        assert!(is_stream("/runs/3/log", Some("follow=true")));
        assert!(!is_stream("/runs/3/log", None));
        assert!(!is_stream("/runs/3/log", Some("follow=false")));
        assert!(!is_stream("/list_projects/", Some("follow=true")));
    }
}
