//! Runs: one run as listed, its progress, a dry run's preview, and tunasync's `/jobs` entry.

use serde::{Deserialize, Serialize};

use super::{ProjectId, RunStatus, Timestamp, Trigger};

/// What `POST /syncup/?dry_run=true` found: what a run would change, and whether `max_delete`
/// would stop it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Preview {
    pub method: String,
    pub success: bool,
    pub id: ProjectId,
    pub dry_run: bool,
    /// rsync's figures for the dry run: `files_total` (the upstream's), `files_created`,
    /// `files_deleted`, `files_transferred` and `bytes_transferred` (what would be copied).
    pub stats: RunStats,
    /// The project's limit in effect (its own or the master's); `off` when it deletes nothing.
    pub max_delete: crate::guards::MaxDelete,
    /// Why a run would be refused, when it would.
    pub refused: Option<String>,
    /// The dry run's own end: exit code and rsync's message.
    pub exit_code: Option<i32>,
    pub message: String,
}

/// Figures from rsync's `--stats`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStats {
    /// Files, directories and links (rsync's "Number of files").
    pub files_total: Option<u64>,
    /// Of those, regular files (its `reg:` count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regular_files: Option<u64>,
    pub files_transferred: Option<u64>,
    pub total_size: Option<u64>,
    pub bytes_transferred: Option<u64>,
    pub bytes_received: Option<u64>,
    /// Files (and directories, links) the run created and deleted; a dry run: would. `null` for
    /// runs recorded before they were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_created: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_deleted: Option<u64>,
    /// A git run: the references (branches, tags) it created, moved or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refs_updated: Option<u64>,
    /// Items rsync itemized as changed (`--itemize-changes`: created, updated, deleted, or only
    /// their attributes changed); `0`: the run changed nothing. Not kept with the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<u64>,
}

/// One rsync run, from `GET /runs/` and `GET /runs/{id}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    pub id: i64,
    pub project: ProjectId,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub scheduled_for: Option<Timestamp>,
    pub queued_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub exit_code: Option<i64>,
    pub attempts: u32,
    /// rsync's meaning of the exit code, and its own error line.
    pub message: Option<String>,
    /// Succeeded with a warning (rsync exit 24: files vanished during the transfer).
    pub warning: bool,
    /// A successful run: whether it changed the tree (and so made a new generation); `false`:
    /// nothing changed, no generation, no slave told. Absent for other runs and older ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    /// What the project's probe found before the run: `unchanged` (the run ended there, no walk),
    /// `changed`, `first` (nothing to compare with yet), or why it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// The stage a two-stage run is in while it runs: 1 (everything but the indexes) or 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<u8>,
    /// The upstream it pulled from (`rsync://host[:port]/module/`), for a project with several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    pub stats: RunStats,
    /// The last 64 KiB of output; only in `GET /runs/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
    /// How far it has got, while it runs; only in `GET /runs/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RunProgress>,
}

impl RunView {
    /// Without what only a logged-in caller may read: rsync's messages and output name local
    /// paths, symlink targets and files.
    pub fn public(self) -> RunView {
        RunView { message: None, log_tail: None, progress: None, ..self }
    }
}

/// How far a running rsync has got: its `--info=progress2` line, as it was last printed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProgress {
    /// Bytes done so far (sent, or found already there).
    pub bytes: u64,
    /// rsync's estimate of the share done, 0-100.
    pub percent: u8,
    /// The current rate as rsync prints it (`3.03MB/s`).
    pub rate: String,
    /// Files transferred so far.
    pub files_transferred: u64,
    /// Files still to check, of `files_known` (rsync's `to-chk`; `ir-chk` while the file list
    /// is still growing, then `files_known` grows too).
    pub files_to_check: Option<u64>,
    pub files_known: Option<u64>,
}

/// `GET|POST /syncup/?id=`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncupResponse {
    pub method: String,
    pub success: bool,
    pub id: ProjectId,
    pub run_id: i64,
    /// Asked for while run `follow_up_of` was going: this run is one more full pass that starts
    /// when it ends (every ask meanwhile joins it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up_of: Option<i64>,
}

/// `POST /projects/{id}/trigger_token`: the project's new trigger token, shown this once. It lets
/// its holder do one thing: start a run of this project (`POST /trigger/{project}`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerToken {
    pub id: ProjectId,
    pub token: String,
}

/// `POST /runs/{id}/stop`: the run is being stopped (it ends `stopped` once its rsync is gone).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStopping {
    pub run_id: i64,
    pub project: ProjectId,
}

/// One entry of `GET /jobs`: tunasync's `WebMirrorStatus`, field for field, so that mirror-web and
/// other tunasync consumers read us unchanged. Times are tunasync's text form
/// (`2006-01-02 15:04:05 -0700`) and Unix seconds; a time that never was is Go's zero time.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunasyncJob {
    pub name: String,
    pub is_master: bool,
    /// `none`, `failed`, `success`, `syncing`, `paused` or `disabled`.
    pub status: String,
    pub last_update: String,
    pub last_update_ts: i64,
    pub last_started: String,
    pub last_started_ts: i64,
    pub last_ended: String,
    pub last_ended_ts: i64,
    pub next_schedule: String,
    pub next_schedule_ts: i64,
    pub upstream: String,
    /// Approximate, as rsync prints it with `-h` (`1.23G`), or `unknown`.
    pub size: String,
}
