//! Slaves: their registration, what they serve, propagation, and the master-slave protocol.

use serde::{Deserialize, Serialize};

use super::{DeliveryStatus, Host, MirrorPath, Name, Port, ProjectId, RunStats, SyncState, SyncStatus, Timestamp};

/// `POST /add_slave/`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSlave {
    pub hostname: Host,
    /// Defaults to 7000, the slave's default port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// Why (kept with the change's version; or the `X-Comment` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// `POST /remove_slave/`: `port` is needed only when several slaves share a hostname.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveSlave {
    pub hostname: Host,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// Why (kept with the change's version; or the `X-Comment` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// `POST /rotate_slave_token/`: a new credential for a slave; the old one stops working at once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateSlaveToken {
    pub hostname: Host,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// Why (kept with the change's version; or the `X-Comment` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// `add_slave`: the token only when the slave is new (shown this once).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlaveAdded {
    pub hostname: Host,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `"Already added"` when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// `remove_slave`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlaveRemoved {
    pub hostname: Host,
    pub port: u16,
}

/// `rotate_slave_token`: the new token, shown this once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlaveToken {
    pub hostname: Host,
    pub port: u16,
    pub token: String,
}

/// One entry of `GET /list_slaves/`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlaveView {
    /// `hostname:port`, the name the slave reports with.
    pub name: String,
    pub hostname: Host,
    pub port: u16,
    pub added_at: Timestamp,
    /// Whether the slave holds a credential of its own (from `/add_slave/` or
    /// `/rotate_slave_token/`); without one it is never notified.
    pub token_issued: bool,
    /// When it last answered (a notification, a report, a status check).
    pub last_seen: Option<Timestamp>,
    /// Seen within three reconcile intervals.
    pub healthy: bool,
    pub projects: Vec<SlaveProjectView>,
}

/// A project as one slave serves it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlaveProjectView {
    pub project: ProjectId,
    /// The generation the slave serves (0: none yet).
    pub generation: i64,
    /// The project's current generation on the master.
    pub current: i64,
    pub lag: i64,
}

/// `GET /projects/{id}/propagation`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PropagationView {
    pub project: ProjectId,
    /// The current generation (bumped by each successful master run).
    pub generation: i64,
    /// Projects with `flip`: milliseconds between the first and the last slave's flip to the
    /// current generation (`null` until two have flipped), and the slaves that had not staged it
    /// when it was published (after `publish_timeout_secs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip_spread_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub laggards: Vec<String>,
    /// Whether slaves pull the current generation from its snapshot (frozen as the run left it),
    /// rather than from the master's live tree.
    #[serde(default)]
    pub snapshot: bool,
    pub slaves: Vec<SlavePropagation>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlavePropagation {
    pub slave: String,
    pub healthy: bool,
    /// The generation it serves, and since when.
    pub generation: i64,
    pub served_at: Option<Timestamp>,
    pub lag: i64,
    /// The newest generation it was told about, and what became of it.
    pub latest_generation: Option<i64>,
    pub latest_status: Option<DeliveryStatus>,
    pub latest_message: Option<String>,
    /// Projects with `flip`: the newest generation it has staged, and when it flipped to the
    /// generation it serves (its own clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flipped_at: Option<Timestamp>,
}

/// Where a slave pulls from: the master's rsync daemon, as the master's `rsyncd` config says slaves
/// reach it. The password is not here: each slave holds it in its own configuration.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RsyncSource {
    pub host: Host,
    pub port: u16,
    pub module: Name,
    pub user: Option<Name>,
}

/// `POST /sync_from_master/` on a slave (Bearer: the cluster token).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// The master's name for this slave (`hostname:port`), echoed back in the report.
    pub slave: String,
    pub project: ProjectId,
    /// The project's directory relative to the master's rsync module (and to the slave's root).
    pub path: MirrorPath,
    /// The project's layered rsync options (checked again by the slave).
    pub options: Vec<String>,
    pub generation: i64,
    pub source: RsyncSource,
    /// What to pull, relative to the master's module, when it is not `path`: the master's frozen
    /// copy of this generation (`.mirror-sync-snap/<project>/<generation>`), which its next run
    /// does not touch. Absent: the master's live tree at `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path: Option<MirrorPath>,
    /// Pull into a staging copy beside the served tree (hard links to unchanged files), report
    /// `staged`, and serve it only when told to publish (`POST /publish/`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flip: bool,
}

/// `POST /publish/` on a slave (Bearer: its token): serve the staged generation now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub project: ProjectId,
    pub path: MirrorPath,
    pub generation: i64,
}

/// A slave's answer to `POST /publish/`: when its served tree became the generation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    pub generation: i64,
    pub flipped_at: Timestamp,
}

/// The slave's answer to a sync request.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncAccepted {
    pub success: bool,
    pub state: SyncState,
}

/// `POST /slave_started/` on the master (Bearer: the slave's token): the answer names the slave
/// as the master knows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaveHello {
    pub slave: String,
}

/// `POST /slave_rsync_complete/` on the master (Bearer: the cluster token), sent once rsync has ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionReport {
    pub slave: String,
    pub project: ProjectId,
    pub generation: i64,
    pub status: SyncStatus,
    pub exit_code: Option<i32>,
    pub message: String,
    pub stats: RunStats,
    pub started_at: Option<Timestamp>,
    pub ended_at: Timestamp,
}

/// What a slave serves, per project.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServedProject {
    pub generation: i64,
    pub synced_at: Option<Timestamp>,
    /// A generation pulled beside the served one, waiting to be published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<i64>,
    pub last_status: String,
    pub last_message: Option<String>,
}

/// `GET /status` on a slave.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlaveStatus {
    /// Only for the master (with this slave's token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Whether this slave's pulls are confined by the kernel (Landlock).
    #[serde(default)]
    pub confined: bool,
    pub serving: std::collections::BTreeMap<ProjectId, ServedProject>,
    /// Project → generation being pulled now.
    pub running: std::collections::BTreeMap<ProjectId, i64>,
    /// Project → generation waiting for the current run to end.
    pub queued: std::collections::BTreeMap<ProjectId, i64>,
}
