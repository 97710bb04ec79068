//! Request and response bodies of the master's HTTP API (the 2014 API's shapes, fixed).

use serde::{Deserialize, Deserializer, Serialize};

use crate::Secret;
use crate::cron::{CronOptions, ScheduleSpec};
pub use crate::depends::DependsOn;
pub use crate::guards::MaxDelete;
pub use crate::names::{Dest, Host, MirrorPath, ModulePath, Name, Port, ProjectId, is_valid_host, is_valid_id};
pub use crate::project::ProjectConfig;
use crate::rsync_opts::{RsyncOptions, RsyncOptionsInput};
pub use crate::stages::Stages;
pub use crate::status::{DeliveryStatus, Role, RunStatus, SyncState, SyncStatus, Trigger};
pub use crate::targets::Targets;
pub use crate::time::Timestamp;

/// `POST /add_project/`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddProject {
    pub project: String,
    /// Defaults to `project`.
    pub id: Option<ProjectId>,
    /// The upstream. A project without `rsync_host` and `rsync_module` has a local source: its
    /// `dest` is a tree written by something else (a build, an operator), pushed to its targets.
    pub rsync_host: Option<Host>,
    /// A module name, optionally followed by a path inside it: `fedora/linux/releases`.
    pub rsync_module: Option<ModulePath>,
    /// The project's tree, under the mirror root (`source` is read too: a local source's tree).
    #[serde(alias = "source")]
    pub dest: String,
    pub rsync_password: Option<Secret>,
    /// Absent: manual runs only.
    pub cron_options: Option<CronOptions>,
    pub rsync_options: Option<RsyncOptionsInput>,
    /// Defaults to true.
    pub enabled: Option<bool>,
    /// The rsync daemon user; without it, a project with a password logs in as its name.
    pub rsync_user: Option<Name>,
    /// Set: the source becomes `rsync://host:port/module`.
    pub rsync_port: Option<Port>,
    /// Overrides the master's `run_timeout_secs`.
    pub timeout_secs: Option<u64>,
    /// One run at start if a scheduled fire was missed while the master was down (default false).
    pub catch_up: Option<bool>,
    /// Staleness objective: a project whose last success is older is `stale`. Default: the
    /// master's `stale_after_secs`.
    pub max_age_secs: Option<u64>,
    /// Writes `project/trace/<mirror_name>` in ftpsync's format after each successful run
    /// (default false).
    pub trace: Option<bool>,
    /// A run deletes at most this many files (`1000`, `"10%"`, `"off"`); at the limit it fails and
    /// what it deleted is put back from the previous generation's frozen copy. Default: the
    /// master's `max_delete`.
    pub max_delete: Option<MaxDelete>,
    /// Two-stage sync (ftpsync): `{"profile": "debian"}` and/or `{"stage1_exclude": [...]}`.
    pub stages: Option<Stages>,
    /// Slaves stage each generation beside the served tree and all flip to it together when told
    /// (default false: each serves a generation as soon as it has pulled it).
    pub flip: Option<bool>,
    /// Object-store buckets kept in step with the tree after each successful run.
    pub targets: Option<Targets>,
    /// Pushes each file written or removed in the tree to the targets as it happens (default false).
    pub watch: Option<bool>,
    /// Projects whose each successful run is followed by a run of this one (trigger `dependency`).
    /// Each must exist; no cycle.
    pub depends_on: Option<DependsOn>,
    /// A small file of the upstream (relative to its module) that changes with every update
    /// (Debian's `project/trace/master`, Arch's `lastupdate`): fetched alone before each run, and
    /// when it is as the last successful run saw it, the run ends at once, `changed: false`, with
    /// no walk of the upstream. Default: none (`project/trace/master` with the `debian` stage profile).
    pub probe: Option<String>,
    /// The master nodes that may run it: one node's name (the machine that holds its tree), or a
    /// list of nodes sharing one mirror root (the first alive runs it). Default: any node (the
    /// leader runs it). See docs/cluster.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<crate::placement::Placement>,
    /// Why (stored with the change; or the `X-Comment` header).
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not the
    /// current one. For a removed project's id, the version of its removal.
    pub version: Option<i64>,
}

/// `POST /update_project/basic/`: every field but `id` optional.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProjectBasic {
    pub id: ProjectId,
    pub project: Option<String>,
    pub rsync_host: Option<Host>,
    pub rsync_module: Option<ModulePath>,
    pub dest: Option<String>,
    /// Absent: unchanged; `null` or `""`: removed.
    #[serde(default, deserialize_with = "present_or_null")]
    pub rsync_password: Option<Option<Secret>>,
    pub rsync_options: Option<RsyncOptionsInput>,
    /// Absent: unchanged; `null`: removed.
    #[serde(default, deserialize_with = "present_or_null")]
    pub rsync_user: Option<Option<Name>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub rsync_port: Option<Option<Port>>,
    #[serde(default, deserialize_with = "present_or_null")]
    pub timeout_secs: Option<Option<u64>>,
    pub catch_up: Option<bool>,
    /// Absent: unchanged; `null`: back to the master's `stale_after_secs`.
    #[serde(default, deserialize_with = "present_or_null")]
    pub max_age_secs: Option<Option<u64>>,
    pub trace: Option<bool>,
    /// Absent: unchanged; `null`: back to the master's `max_delete`.
    #[serde(default, deserialize_with = "present_or_null")]
    pub max_delete: Option<Option<MaxDelete>>,
    /// Absent: unchanged; `null`: one stage.
    #[serde(default, deserialize_with = "present_or_null")]
    pub stages: Option<Option<Stages>>,
    pub flip: Option<bool>,
    /// Replaces the whole list (`[]`: none).
    pub targets: Option<Targets>,
    pub watch: Option<bool>,
    /// Replaces the whole list (`[]`: none).
    pub depends_on: Option<DependsOn>,
    /// Absent: unchanged; `null` or `""`: none.
    #[serde(default, deserialize_with = "present_or_null")]
    pub probe: Option<Option<String>>,
    /// Absent: unchanged; `null`: any node.
    #[serde(default, deserialize_with = "present_or_null")]
    pub node: Option<Option<crate::placement::Placement>>,
    /// Why (stored with the change; or the `X-Comment` header).
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    pub version: Option<i64>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present_or_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `{"id": ...}`: remove, enable, disable, syncup.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectRef {
    pub id: ProjectId,
    /// Why (stored with the change; or the `X-Comment` header).
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`).
    pub version: Option<i64>,
}

/// `POST /add_slave/`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSlave {
    pub hostname: Host,
    /// Defaults to 7000, the slave's default port.
    pub port: Option<Port>,
    /// Why (kept with the change's version; or the `X-Comment` header).
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    pub version: Option<i64>,
}

/// `POST /remove_slave/`: `port` is needed only when several slaves share a hostname.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveSlave {
    pub hostname: Host,
    pub port: Option<Port>,
    /// Why (kept with the change's version; or the `X-Comment` header).
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    pub version: Option<i64>,
}

/// `POST /create_api_user/`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: Name,
    pub password: Secret,
    /// Defaults to `user`.
    pub role: Option<Role>,
    /// Why (kept with the change's version; or the `X-Comment` header).
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    pub version: Option<i64>,
}

/// `POST /update_api_user/`: a new password, a new role, or both. Either revokes the user's tokens.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub username: Name,
    pub password: Option<Secret>,
    /// The password being replaced: needed when users change their own password while logged in
    /// with a token (a token alone, stolen or left on a screen, must not take the account over).
    #[serde(default)]
    pub current_password: Option<Secret>,
    /// Only a root may change a role.
    pub role: Option<Role>,
    /// Why (kept with the change's version; or the `X-Comment` header).
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    pub version: Option<i64>,
}

/// `POST /rotate_slave_token/`: a new credential for a slave; the old one stops working at once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateSlaveToken {
    pub hostname: Host,
    pub port: Option<Port>,
    /// Why (kept with the change's version; or the `X-Comment` header).
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    pub version: Option<i64>,
}

/// `POST /remove_api_user/`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveUser {
    pub username: Name,
    /// Why (kept with the change's version; or the `X-Comment` header).
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    pub version: Option<i64>,
}

/// The rsync options as listed: the 2014 listing called the delete layer `delete_option`, so both
/// names are given.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RsyncOptionsView {
    pub defaults: Vec<String>,
    pub basic: Vec<String>,
    pub delete: Option<String>,
    pub delete_option: Option<String>,
}

impl From<&RsyncOptions> for RsyncOptionsView {
    fn from(o: &RsyncOptions) -> Self {
        RsyncOptionsView {
            defaults: o.defaults.clone(),
            basic: o.basic.clone(),
            delete: o.delete.clone(),
            delete_option: o.delete.clone(),
        }
    }
}

/// One entry of `GET /list_projects/`. Never carries a password.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectView {
    pub id: ProjectId,
    pub project: String,
    /// `null` for a project with a local source (its `dest` is written by something else).
    pub rsync_host: Option<Host>,
    pub rsync_module: Option<ModulePath>,
    pub dest: String,
    pub enabled: bool,
    /// `null` for a manual-only project.
    pub cron_options: Option<ScheduleSpec>,
    pub rsync_options: RsyncOptionsView,
    pub rsync_password_set: bool,
    pub rsync_user: Option<Name>,
    pub rsync_port: Option<u16>,
    pub timeout_secs: Option<u64>,
    pub catch_up: bool,
    /// The project's own staleness objective; `null`: the master's `stale_after_secs`.
    pub max_age_secs: Option<u64>,
    /// Writes a trace file (ftpsync's format) after each successful run.
    #[serde(default)]
    pub trace: bool,
    /// The project's own deletion limit; `null`: the master's `max_delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delete: Option<MaxDelete>,
    /// Two-stage sync; `null`: one stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Stages>,
    /// Slaves stage each generation and flip to it together.
    #[serde(default)]
    pub flip: bool,
    /// Object-store targets (their credentials are named, never shown).
    #[serde(default)]
    pub targets: Targets,
    /// Files written or removed in the tree are pushed to the targets as it happens.
    #[serde(default)]
    pub watch: bool,
    /// Each successful run of these projects is followed by a run of this one.
    #[serde(default, skip_serializing_if = "DependsOn::is_empty")]
    pub depends_on: DependsOn,
    /// The upstream file fetched alone before each run (see `AddProject.probe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// The nodes that may run it (see `AddProject.node`); absent: any node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<crate::placement::Placement>,
    /// The version of this configuration (its newest commit): send it back as `version` or
    /// `If-Match` to change it only if no one else did meanwhile.
    pub version: i64,
    /// The file of the master's `projects_dir` that declares it: edit that file and reload; API
    /// writes to the project are refused. `null`: managed through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_file: Option<String>,
    /// From this time on the project is `stale` unless a run succeeds first (its last success plus
    /// its objective); `null` when disabled or never synced.
    pub stale_after: Option<Timestamp>,
    /// Its last success is older than its objective (`stale_after` has passed).
    #[serde(default)]
    pub stale: bool,
    /// RFC 3339 UTC; `null` when disabled, manual-only, or the schedule has ended.
    pub next_run_time: Option<Timestamp>,
    /// `queued` or `running` while a run is under way, else the last run's status, or `never_run`.
    pub status: String,
    pub last_run: Option<RunView>,
    /// When the last successful run ended.
    pub last_success: Option<Timestamp>,
    /// The current generation (bumped by each successful run).
    pub generation: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One entry of `GET /list_projects/` for a caller who has not logged in: what a public mirror
/// status page shows (names, states, times, sizes, generations), no local path or account.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicProjectView {
    pub id: ProjectId,
    pub project: String,
    pub rsync_host: Option<Host>,
    pub rsync_module: Option<ModulePath>,
    pub enabled: bool,
    pub cron_options: Option<ScheduleSpec>,
    pub next_run_time: Option<Timestamp>,
    pub status: String,
    pub last_run: Option<RunView>,
    pub last_success: Option<Timestamp>,
    /// From this time on the project is `stale` unless a run succeeds first.
    pub stale_after: Option<Timestamp>,
    /// Its last success is older than its objective (`stale_after` has passed).
    #[serde(default)]
    pub stale: bool,
    /// The current generation (bumped by each successful run).
    pub generation: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl ProjectView {
    /// `host::module`, or `local` for a project with a local source.
    pub fn upstream(&self) -> String {
        match (&self.rsync_host, &self.rsync_module) {
            (Some(h), Some(m)) => format!("{h}::{m}"),
            _ => "local".to_owned(),
        }
    }
}

impl From<ProjectView> for PublicProjectView {
    fn from(v: ProjectView) -> Self {
        PublicProjectView {
            id: v.id,
            project: v.project,
            rsync_host: v.rsync_host,
            rsync_module: v.rsync_module,
            enabled: v.enabled,
            cron_options: v.cron_options,
            next_run_time: v.next_run_time,
            status: v.status,
            last_run: v.last_run.map(RunView::public),
            last_success: v.last_success,
            stale_after: v.stale_after,
            stale: v.stale,
            generation: v.generation,
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

/// `GET /projects/{id}`: one project as the listing shows it (`V` is [`ProjectView`], or
/// [`PublicProjectView`] without a login), its next fire times and its newest runs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectDetail<V> {
    #[serde(flatten)]
    pub project: V,
    /// The next fire times (RFC 3339 UTC), at most [`NEXT_FIRES`]; empty when disabled or manual.
    pub next_fire_times: Vec<Timestamp>,
    /// Newest first, at most [`RECENT_RUNS`], without output.
    pub recent_runs: Vec<RunView>,
}

/// How many fire times [`ProjectDetail`] lists.
pub const NEXT_FIRES: usize = 5;
/// How many runs [`ProjectDetail`] lists.
pub const RECENT_RUNS: i64 = 10;

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
    /// Items rsync itemized as changed (`--itemize-changes`: created, updated, deleted, or only
    /// their attributes changed); `0`: the run changed nothing. Not kept with the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<u64>,
}

/// Whether `line` is one of rsync's `--itemize-changes` lines (`>f+++++++++ path`,
/// `.f...p..... path`, `cL+++++++++ link -> target`, `*deleting   path`).
pub fn is_itemized(line: &str) -> bool {
    if line.starts_with("*deleting ") {
        return true;
    }
    let b = line.as_bytes();
    b.len() > 12
        && b"<>ch.".contains(&b[0])
        && b"fdLDS".contains(&b[1])
        && b[2..11].iter().all(|c| b".+ ?cstTpoguaxnbN".contains(c))
        && b[11] == b' '
}

impl RunStats {
    /// Reads one output line; lines that are not stats are ignored.
    pub fn absorb(&mut self, line: &str) {
        if is_itemized(line) {
            self.changes = Some(self.changes.unwrap_or(0) + 1);
            return;
        }
        let Some((key, value)) = line.split_once(':') else { return };
        if key.trim() == "Number of files" {
            // `1,234 (reg: 1,000, dir: 234)`; no `reg:` part: no regular file.
            let reg = value.split("reg: ").nth(1).and_then(|r| r.split(", ").next());
            self.regular_files = Some(reg.and_then(|r| parse_count(r.trim_end_matches(')'))).unwrap_or(0));
        }
        let slot = match key.trim() {
            "Number of files" => &mut self.files_total,
            "Number of regular files transferred" => &mut self.files_transferred,
            "Total file size" => &mut self.total_size,
            "Total transferred file size" => &mut self.bytes_transferred,
            "Total bytes received" => &mut self.bytes_received,
            "Number of created files" => &mut self.files_created,
            "Number of deleted files" => &mut self.files_deleted,
            _ => return,
        };
        if let Some(n) = parse_count(value) {
            *slot = Some(n);
        }
    }
}

/// `1,234,567`, `1.234.567`, `1234 bytes` or, with `-h`, `1.23M`.
fn parse_count(text: &str) -> Option<u64> {
    let word = text.split_whitespace().next()?;
    let (number, scale) = match word.char_indices().last()? {
        (i, 'K') => (&word[..i], 1e3),
        (i, 'M') => (&word[..i], 1e6),
        (i, 'G') => (&word[..i], 1e9),
        (i, 'T') => (&word[..i], 1e12),
        _ => (word, 1.0),
    };
    if scale > 1.0 {
        return number.replace(',', "").parse::<f64>().ok().map(|v| (v * scale).round() as u64);
    }
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
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
    pub stats: RunStats,
    /// The last 64 KiB of output; only in `GET /runs/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_tail: Option<String>,
    /// How far it has got, while it runs; only in `GET /runs/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RunProgress>,
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

impl RunProgress {
    /// Reads rsync's progress line (`  1,200,000  13%  3.44MB/s  0:00:00 (xfr#4, to-chk=26/31)`);
    /// `None` for any other line.
    pub fn parse(line: &str) -> Option<RunProgress> {
        let mut words = line.split_whitespace();
        let bytes = words.next()?;
        if !bytes.bytes().all(|b| b.is_ascii_digit() || b == b',') {
            return None;
        }
        let bytes = bytes.replace(',', "").parse().ok()?;
        let percent = words.next()?.strip_suffix('%')?.parse::<u8>().ok()?.min(100);
        let rate = words.next().filter(|r| r.ends_with("/s"))?.to_owned();
        let elapsed = words.next()?;
        if elapsed.split(':').count() != 3 {
            return None;
        }
        let mut progress = RunProgress { bytes, percent, rate, ..RunProgress::default() };
        let rest: String = words.collect::<Vec<_>>().join(" ");
        if let Some(inner) = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
            for part in inner.split(", ") {
                if let Some(n) = part.strip_prefix("xfr#") {
                    progress.files_transferred = n.parse().ok()?;
                } else if let Some(chk) = part.strip_prefix("to-chk=").or_else(|| part.strip_prefix("ir-chk=")) {
                    let (left, known) = chk.split_once('/')?;
                    progress.files_to_check = left.parse().ok();
                    progress.files_known = known.parse().ok();
                }
            }
        }
        Some(progress)
    }
}

impl RunView {
    /// Without what only a logged-in caller may read: rsync's messages and output name local
    /// paths, symlink targets and files.
    pub fn public(self) -> RunView {
        RunView { message: None, log_tail: None, progress: None, ..self }
    }
}

/// Every success body of the master: the 2014 API's `method` and `success`, then what the call
/// returns, flattened beside them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done<T> {
    pub method: String,
    pub success: bool,
    #[serde(flatten)]
    pub body: T,
}

impl<T> Done<T> {
    pub fn new(method: &str, body: T) -> Done<T> {
        Done { method: method.to_owned(), success: true, body }
    }
}

/// `add_project`: the name and the id it got.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectAdded {
    pub project: String,
    pub id: ProjectId,
}

/// `remove_project`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectRemoved {
    pub id: ProjectId,
}

/// `enable_project`, `disable_project`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectEnabled {
    pub id: ProjectId,
    pub enabled: bool,
}

/// `update_project_basic`: the id (it follows a new name when it was derived from it).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectUpdated {
    pub id: ProjectId,
    pub project: String,
}

/// `update_project_schedule`: the schedule as stored and its next fire.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleReplaced {
    pub id: ProjectId,
    pub cron_options: Option<ScheduleSpec>,
    pub next_run_time: Option<Timestamp>,
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

/// A body with nothing more than `method` and `success` (`slave_rsync_complete`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Nothing {}

/// `create_api_user`, `update_api_user`, `remove_api_user`: the user, and its role when it was set.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserChanged {
    pub username: Name,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

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

/// One entry of `GET /list_users/`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserView {
    pub username: Name,
    pub role: Role,
    pub created_at: Timestamp,
}

/// `POST /runs/{id}/stop`: the run is being stopped (it ends `stopped` once its rsync is gone).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStopping {
    pub run_id: i64,
    pub project: ProjectId,
}

/// `GET /get_token/`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub method: String,
    pub success: bool,
    pub token: String,
    /// Seconds the token is valid for, as the 2014 API's `duration`.
    pub duration: u64,
    pub expires_at: Timestamp,
    /// After a password login: a token that `POST /refresh_token/` exchanges for a new token
    /// until `refresh_expires_at` (a password change ends it). Never a login itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<Timestamp>,
}

/// `POST /refresh_token/`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshToken {
    pub refresh_token: String,
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

#[cfg(test)]
mod tests {
    use super::RunStats;

    #[test]
    fn stats_are_parsed() {
        let out = "Number of files: 1,235 (reg: 1,000, dir: 235)\nNumber of created files: 10\n\
                   Number of regular files transferred: 10\nTotal file size: 123,456,789 bytes\n\
                   Total transferred file size: 1,234 bytes\nTotal bytes received: 2.50K\n";
        let mut s = RunStats::default();
        out.lines().for_each(|l| s.absorb(l));
        assert_eq!(
            s,
            RunStats {
                files_total: Some(1235),
                regular_files: Some(1000),
                files_transferred: Some(10),
                total_size: Some(123_456_789),
                bytes_transferred: Some(1234),
                bytes_received: Some(2500),
                files_created: Some(10),
                files_deleted: None,
                changes: None,
            }
        );
        // Itemized changes are counted, whatever the kind; other lines are not.
        let mut c = RunStats::default();
        for l in [
            ">f+++++++++ pool/a.deb",
            ".f...p..... mode-only",
            "cL+++++++++ link -> target",
            "*deleting   gone.txt",
            ".d..t...... dists/",
            "hf+++++++++ b => a",
            "sending incremental file list",
            "Number of files: 3",
        ] {
            c.absorb(l);
        }
        assert_eq!(c.changes, Some(6));
        // An empty tree: its one directory, no regular file.
        let mut empty = RunStats::default();
        empty.absorb("Number of files: 1 (dir: 1)");
        assert_eq!((empty.files_total, empty.regular_files), (Some(1), Some(0)));
    }
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

/// One version of a configuration, as `GET /projects/{id}/history` lists it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitView {
    pub version: i64,
    /// Who made it (`null`: the master itself).
    pub author: Option<String>,
    pub comment: Option<String>,
    pub created_at: Timestamp,
    /// A tombstone: the key was removed (or renamed) by this version.
    pub removed: bool,
    /// The top-level fields that differ from the version before (`rsync_password` named, never shown).
    pub changed: Vec<String>,
}

/// `GET /projects/{id}/history`: newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    pub key: String,
    pub versions: Vec<CommitView>,
}

/// `GET /projects/{id}/versions/{n}`: one version with the whole configuration it recorded
/// (`null` for a removal; the password as `rsync_password_set`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionView {
    pub key: String,
    #[serde(flatten)]
    pub commit: CommitView,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub config: Option<serde_json::Value>,
}

/// `POST /projects/{id}/revert`: a new version with the configuration of `version`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revert {
    pub version: i64,
    /// Why (default: "revert to version N").
    pub comment: Option<String>,
    /// Versions keep no password, only whether one was set: reverting to a version that had one,
    /// on a project that has none now (or was removed), needs it given here. Otherwise the
    /// project's current password is kept.
    pub rsync_password: Option<crate::Secret>,
}

/// A project in an exported configuration document (`GET /export`, `POST /import`). `dest` is
/// relative to the mirror root (so the document moves between masters); a password shows as
/// `"set"`, and a document that says `"set"` (or nothing) keeps the password the project has.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectDoc {
    pub id: ProjectId,
    pub project: String,
    /// Absent (with `rsync_module`): a local source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync_host: Option<Host>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync_module: Option<ModulePath>,
    pub dest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync_user: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync_port: Option<Port>,
    /// `"set"` when the project has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub rsync_password: Option<PasswordField>,
    /// Absent: manual runs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub cron_options: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync_options: Option<RsyncOptionsInput>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    #[serde(default)]
    pub catch_up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub trace: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delete: Option<MaxDelete>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Stages>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub flip: bool,
    #[serde(default, skip_serializing_if = "Targets::is_empty")]
    pub targets: Targets,
    #[serde(default, skip_serializing_if = "is_false")]
    pub watch: bool,
    #[serde(default, skip_serializing_if = "DependsOn::is_empty")]
    pub depends_on: DependsOn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<crate::placement::Placement>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn yes() -> bool {
    true
}

/// A slave in a configuration document (its token never: an import issues a new one).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaveDoc {
    pub hostname: Host,
    pub port: u16,
}

/// `GET /export`, `POST /import`: the master's configuration. A kind that is absent is left alone
/// by an import (and never pruned).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<ProjectDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slaves: Option<Vec<SlaveDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserDoc>>,
}

/// An API user in a configuration document: its password shows as `"set"`; a new user needs one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserDoc {
    pub username: Name,
    pub role: Role,
    /// `"set"` on export; a new user needs its password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub password: Option<PasswordField>,
}

/// One change an import makes (or, with `dry_run`, would make).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportChange {
    /// `project`, `slave` or `user`.
    pub kind: String,
    pub key: String,
    /// `create`, `update` or `remove`.
    pub action: String,
    /// For an update: the fields that change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// What `POST /import` did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportReport {
    pub method: String,
    pub success: bool,
    pub dry_run: bool,
    pub changes: Vec<ImportChange>,
    /// Resources the document names that are as it says already.
    pub unchanged: usize,
    /// The tokens of the slaves it added (shown this once): each slave's `token` setting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slave_tokens: Vec<SlaveToken>,
}

/// A password in a configuration document: `"set"` (keep the one there is) or a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordField {
    Set,
    Value(crate::Secret),
}

impl Serialize for PasswordField {
    /// Only ever written as `"set"`: a document never carries a password out.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("set")
    }
}

impl<'de> Deserialize<'de> for PasswordField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(if s == "set" { PasswordField::Set } else { PasswordField::Value(crate::Secret::new(s)) })
    }
}
