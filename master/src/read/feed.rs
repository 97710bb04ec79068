//! The live feed of what changes (`GET /events`): configuration commits and run states, each
//! with an id. Every event is kept in the database (the newest [`KEEP`]) before it is sent, so a
//! watcher that reconnects with `Last-Event-ID` misses none of them.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

use crate::db::Db;
use crate::db::feed::Notifications;
use crate::events::{Change, Events, Listener};

pub use crate::db::feed::{FeedEvent, KEEP};

/// The most events stored in one transaction.
const BATCH: usize = 256;

pub struct Feed {
    db: Db,
    node: String,
    live: broadcast::Sender<Arc<FeedEvent>>,
    input: mpsc::UnboundedSender<(&'static str, String)>,
}

impl Feed {
    /// Starts the one writer: events are stored, then sent, in the order they happened.
    pub fn start(db: Db, node: String) -> Arc<Feed> {
        let (live, _) = broadcast::channel(1024);
        let (input, mut rx) = mpsc::unbounded_channel::<(&'static str, String)>();
        let (writer_db, writer_live, writer_node) = (db.clone(), live.clone(), node.clone());
        tokio::spawn(async move {
            let mut written = 0usize;
            let mut batch = Vec::with_capacity(BATCH);
            // What has come meanwhile is stored together (one transaction): a burst of runs
            // costs one commit per batch, not one per event.
            loop {
                let n = rx.recv_many(&mut batch, BATCH).await;
                if n == 0 {
                    break;
                }
                // While the database is away (PostgreSQL restarting), the events wait and are
                // stored when it is back: the other nodes learn of every change through them.
                let mut wait = std::time::Duration::from_millis(100);
                let stored = loop {
                    match crate::db::feed::append(&writer_db, &writer_node, &batch).await {
                        // The master is stopping: there is nothing left to store into.
                        Err(sqlx::Error::PoolClosed) => return,
                        Err(e) if crate::db::is_unavailable(&e) && wait < std::time::Duration::from_secs(60) => {
                            tracing::warn!(error = %e, "the event log is unavailable: trying again");
                            tokio::time::sleep(wait).await;
                            wait *= 2;
                        }
                        other => break other,
                    }
                };
                match stored {
                    Ok(ids) => {
                        for (id, (kind, data)) in ids.into_iter().zip(batch.drain(..)) {
                            let node = Some(writer_node.clone());
                            let _ = writer_live.send(Arc::new(FeedEvent { id, kind: kind.to_owned(), data, node }));
                        }
                    }
                    Err(e) => tracing::error!(error = %e, events = batch.len(), "cannot store events for watchers"),
                }
                let before = written;
                written += n;
                batch.clear();
                if written / 1000 != before / 1000 {
                    let pruned = crate::db::feed::prune(&writer_db).await;
                    if let Err(e) = pruned {
                        tracing::warn!(error = %e, "cannot prune the event log");
                    }
                }
            }
        });
        Arc::new(Feed { db, node, live, input })
    }

    /// On PostgreSQL, where other nodes change things too: follows the event log (told by
    /// `NOTIFY` at once, and reading it every second besides, so that a lost notification or a
    /// reconnection misses nothing). Each event of another node goes to this node's watchers, and
    /// what it changed to this node's listing, scheduler and runner through `events`.
    pub fn follow(self: &Arc<Self>, events: Arc<Events>, mut stop: tokio::sync::watch::Receiver<bool>) {
        if !self.db.is_postgres() {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut seen = match me.newest().await {
                Ok(id) => id,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the event log: changes of other nodes are not followed");
                    return;
                }
            };
            let mut listener = None;
            loop {
                if listener.is_none() {
                    listener = Notifications::listen(&me.db).await;
                }
                let notified = async {
                    match listener.as_mut() {
                        Some(l) => l.next().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    ok = notified => if !ok { listener = None },
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                match me.since(seen, 1000).await {
                    Ok(batch) => {
                        for e in batch {
                            if e.node.as_deref() != Some(me.node.as_str()) {
                                // The database busy or away: this event is applied at the next
                                // read, not skipped.
                                if let Err(err) = apply_remote(&me.db, &events, &e).await {
                                    tracing::warn!(error = %err, event = e.id, "cannot apply another node's change yet");
                                    break;
                                }
                                seen = e.id;
                                let _ = me.live.send(Arc::new(e));
                            } else {
                                seen = e.id;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the event log"),
                }
            }
        });
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

/// What an event of another node changed, told to this node's parts (never the feed itself, nor
/// the slaves: the node where it happened told them). `Err`: the database could not be read now.
async fn apply_remote(db: &Db, events: &Events, e: &FeedEvent) -> sqlx::Result<()> {
    let Ok(data) = serde_json::from_str::<serde_json::Value>(&e.data) else { return Ok(()) };
    let text = |k: &str| data[k].as_str().map(str::to_owned);
    match e.kind.as_str() {
        "config" => match (text("kind").as_deref(), text("key")) {
            (Some("project"), Some(key)) => {
                let Ok(id) = mirror_common::names::ProjectId::parse(key.as_str()) else { return Ok(()) };
                match crate::db::projects::get(&db.read, id.as_str()).await {
                    Ok(Some(row)) => events.publish(Change::ProjectSaved(row)),
                    Ok(None) => events.publish(Change::ProjectRemoved { id }),
                    Err(err) if crate::db::is_unavailable(&err) => return Err(err),
                    // A row that does not read (written by hand): the listing reads it again and
                    // names the fault.
                    Err(err) => {
                        tracing::warn!(project.id = %id, error = %err, "cannot read a project another node changed");
                        events.publish(Change::Stale { projects: vec![id] });
                    }
                }
            }
            (Some("user"), Some(key)) => {
                if let Ok(username) = mirror_common::names::Name::parse(key.as_str()) {
                    events.publish(Change::UserChanged { username });
                }
            }
            _ => {}
        },
        "run" => {
            if let Some(Ok(project)) = text("project").map(mirror_common::names::ProjectId::parse) {
                events.publish(Change::Stale { projects: vec![project] });
            }
        }
        _ => {}
    }
    Ok(())
}

impl Listener for Arc<Feed> {
    fn changed(&self, change: &Change) {
        let event = match change {
            Change::Committed(c) => ("config", serde_json::to_string(c).unwrap_or_default()),
            Change::Run { project, run, status, .. } => {
                let event = mirror_common::api::RunEvent { project: project.clone(), run: *run, status: *status };
                ("run", serde_json::to_string(&event).unwrap_or_default())
            }
            _ => return,
        };
        let _ = self.input.send(event);
    }
}
