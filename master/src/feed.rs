//! The live feed of what changes (`GET /events`): configuration commits and run states, each
//! with an id. Every event is kept in the database (the newest [`KEEP`]) before it is sent, so a
//! watcher that reconnects with `Last-Event-ID` misses none of them.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::db::Db;
use crate::events::{Change, Listener};

pub use crate::db::feed::{FeedEvent, KEEP};

pub struct Feed {
    db: Db,
    live: broadcast::Sender<Arc<FeedEvent>>,
    input: mpsc::UnboundedSender<(&'static str, String)>,
}

impl Feed {
    /// Starts the one writer: events are stored, then sent, in the order they happened.
    pub fn start(db: Db) -> Arc<Feed> {
        let (live, _) = broadcast::channel(1024);
        let (input, mut rx) = mpsc::unbounded_channel::<(&'static str, String)>();
        let (writer_db, writer_live) = (db.clone(), live.clone());
        tokio::spawn(async move {
            let mut written = 0u64;
            while let Some((kind, data)) = rx.recv().await {
                let stored = crate::db::feed::append(&writer_db, kind, &data).await;
                match stored {
                    Ok(id) => {
                        let _ = writer_live.send(Arc::new(FeedEvent { id, kind: kind.to_owned(), data }));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot store an event for watchers"),
                }
                written += 1;
                if written.is_multiple_of(1000) {
                    let pruned = crate::db::feed::prune(&writer_db).await;
                    if let Err(e) = pruned {
                        tracing::warn!(error = %e, "cannot prune the event log");
                    }
                }
            }
        });
        Arc::new(Feed { db, live, input })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.live.subscribe()
    }

    /// Stored events after `after`, oldest first, at most `limit`.
    pub async fn since(&self, after: i64, limit: i64) -> sqlx::Result<Vec<FeedEvent>> {
        crate::db::feed::since(&self.db, after, limit).await
    }

    /// The newest event's id (0: none yet).
    pub async fn newest(&self) -> sqlx::Result<i64> {
        crate::db::feed::newest(&self.db).await
    }
}

impl Listener for Arc<Feed> {
    fn changed(&self, change: &Change) {
        let event = match change {
            Change::Committed(c) => ("config", serde_json::to_string(c).unwrap_or_default()),
            Change::RunState { project, run, status } => {
                ("run", json!({"project": project, "run": run, "status": status}).to_string())
            }
            _ => return,
        };
        let _ = self.input.send(event);
    }
}
