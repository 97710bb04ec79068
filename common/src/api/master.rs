//! The master itself: its status, its nodes, its webhook deliveries.

use serde::{Deserialize, Serialize};

use super::{ProjectId, Timestamp};

/// `GET /status/` on the master. The details only for a logged-in caller.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MasterStatus {
    pub version: String,
    /// Whether every rsync runs confined by Landlock.
    pub confined: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confinement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    /// The rsync daemon slaves pull from, when this master manages it (`rsyncd.manage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync_daemon: Option<DaemonStatus>,
}

/// Whether the managed rsync daemon runs; why not, for a logged-in caller.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub managed: bool,
    pub up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One entry of `GET /nodes`: a master process on the shared database.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    /// Where its API answers.
    pub api_url: String,
    /// Its rsync daemon, `host:port`: slaves pull the projects it runs from there.
    pub rsyncd: String,
    pub started_at: Timestamp,
    pub last_heartbeat: Timestamp,
    /// Heard of within `node_dead_secs`.
    pub alive: bool,
    /// The node that leads (runs what must happen once, and the projects any node may run).
    pub leader: bool,
    /// The projects it runs.
    pub projects: Vec<ProjectId>,
}

/// One entry of `GET /alerts`: an event queued for a webhook, and what became of it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertDeliveryView {
    pub id: i64,
    /// The webhook's `name` (never its URL).
    pub webhook: String,
    /// `run_failed`, `run_recovered`, `stale`, `fresh_again`, `slave_down`, `slave_back`, `slave_lagging`.
    pub event: String,
    /// The one-line text sent.
    pub text: String,
    /// `pending`, `delivered` or `given_up`.
    pub state: String,
    pub created_at: Timestamp,
    pub attempts: u32,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// `event: config` of `GET /events`: a configuration commit was stored.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigEvent {
    /// `project`, `slave` or `user`.
    pub kind: String,
    pub key: String,
    pub version: i64,
    pub author: Option<String>,
    pub comment: Option<String>,
    pub removed: bool,
}

/// `event: run` of `GET /events`: a run was queued, started, or ended with this status.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunEvent {
    pub project: ProjectId,
    pub run: i64,
    pub status: super::RunStatus,
}
