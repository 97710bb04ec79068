//! What changed, told to whoever cares. The services and the runner publish a change once it is
//! committed; the listing cache, the scheduler and the propagation listen. No part that changes
//! something has to know who depends on it, and no two parts import each other for it.

use std::sync::{Arc, RwLock};

use mirror_common::names::{Name, ProjectId};

use crate::db::projects::ProjectRow;

#[derive(Debug, Clone)]
pub enum Change {
    /// A project was added or changed (configuration, schedule, enabled); the row as committed.
    ProjectSaved(ProjectRow),
    /// A project is gone, with its history; a run of it that is going must stop.
    ProjectRemoved { id: ProjectId },
    /// A project's id followed its new name; a `ProjectSaved` of the new id follows.
    ProjectRenamed { from: ProjectId, to: ProjectId },
    /// A run of this node changed state, as recorded: queued, running (its first rsync started), or
    /// ended with this status (then `bytes`: what it received). Told once per state, in order.
    Run { project: ProjectId, run: i64, status: mirror_common::api::RunStatus, bytes: Option<u64> },
    /// What is known of these projects must be read again: another node changed their runs, or
    /// their row does not read.
    Stale { projects: Vec<ProjectId> },
    /// A configuration commit was stored (after its transaction).
    Committed(Committed),
    /// A run succeeded: the project has a new generation for the slaves.
    NewGeneration(ProjectRow),
    /// A push to an object-store target ended.
    PushEnded {
        project: ProjectId,
        target: String,
        status: mirror_common::targets::PushStatus,
        uploaded: u64,
        deleted: u64,
        bytes: u64,
        /// Why it failed (the first errors), or what it skipped.
        message: String,
    },
    /// After a successful run, its tree was frozen for the slaves (`made`), or could not be.
    SnapshotBuilt { project: ProjectId, made: bool, seconds: f64 },
    /// A user was created, removed, or got a new password or role: its cached logins must go.
    UserChanged { username: Name },
}

/// A stored configuration commit, as watchers are told of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Committed {
    pub kind: &'static str,
    pub key: String,
    pub version: i64,
    pub author: Option<String>,
    pub comment: Option<String>,
    pub removed: bool,
}

/// Told of every change, synchronously and in order: it must not block (spawn what takes time).
pub trait Listener: Send + Sync {
    fn changed(&self, change: &Change);
}

#[derive(Default)]
pub struct Events {
    listeners: RwLock<Vec<Arc<dyn Listener>>>,
}

impl Events {
    pub fn subscribe(&self, listener: Arc<dyn Listener>) {
        self.listeners.write().unwrap_or_else(|poisoned| poisoned.into_inner()).push(listener);
    }

    pub fn publish(&self, change: Change) {
        let listeners = self.listeners.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        for l in listeners {
            l.changed(&change);
        }
    }
}
