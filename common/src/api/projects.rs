//! Projects: the 2014 request bodies, the listing's entries, one project's detail, and the answers to changes.

use serde::{Deserialize, Serialize};

use super::{
    CronOptions, DependsOn, Deserializer, Host, MaxDelete, ModulePath, Name, Port, ProjectId, RsyncOptions,
    RsyncOptionsInput, RunView, ScheduleSpec, Secret, Stages, Targets, Timestamp,
};

/// One upstream of `AddProject.upstreams`. Without `password`, a write keeps the password the
/// same upstream (host, port, user, module) had; `""` is none.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamInput {
    pub host: Host,
    pub module: ModulePath,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "crate::secret::reveal::option")]
    pub password: Option<Secret>,
}

/// One upstream of a project as listed (never its password).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamView {
    pub host: Host,
    pub module: ModulePath,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Name>,
    pub password_set: bool,
}

/// `POST /add_project/`
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddProject {
    pub project: String,
    /// Defaults to `project`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<ProjectId>,
    /// The upstream. A project without `rsync_host` and `rsync_module` has a local source: its
    /// `dest` is a tree written by something else (a build, an operator), pushed to its targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsync_host: Option<Host>,
    /// A module name, optionally followed by a path inside it: `fedora/linux/releases`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsync_module: Option<ModulePath>,
    /// The project's tree, under the mirror root (`source` is read too: a local source's tree).
    #[serde(alias = "source")]
    pub dest: String,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "crate::secret::reveal::option")]
    pub rsync_password: Option<Secret>,
    /// Absent (and no `interval_options`): manual runs only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron_options: Option<CronOptions>,
    /// Several upstreams in order of preference, in place of `rsync_host`, `rsync_module`,
    /// `rsync_port`, `rsync_user` and `rsync_password` (a list of one is those): a run uses the
    /// first that answers and is not staler than the others (by the probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<Vec<UpstreamInput>>,
    /// APScheduler's `IntervalTrigger`: the other kind of schedule (not with `cron_options`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_options: Option<crate::interval::IntervalOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsync_options: Option<RsyncOptionsInput>,
    /// Defaults to true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The rsync daemon user; without it, a project with a password logs in as its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsync_user: Option<Name>,
    /// Set: the source becomes `rsync://host:port/module`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsync_port: Option<Port>,
    /// Overrides the master's `run_timeout_secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// One run at start if a scheduled fire was missed while the master was down (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<bool>,
    /// Staleness objective: a project whose last success is older is `stale`. Default: the
    /// master's `stale_after_secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    /// Writes `project/trace/<mirror_name>` in ftpsync's format after each successful run
    /// (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<bool>,
    /// A run deletes at most this many files (`1000`, `"10%"`, `"off"`); at the limit it fails and
    /// what it deleted is put back from the previous generation's frozen copy. Default: the
    /// master's `max_delete`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delete: Option<MaxDelete>,
    /// Two-stage sync (ftpsync): `{"profile": "debian"}` and/or `{"stage1_exclude": [...]}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<Stages>,
    /// Slaves stage each generation beside the served tree and all flip to it together when told
    /// (default false: each serves a generation as soon as it has pulled it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flip: Option<bool>,
    /// Object-store buckets kept in step with the tree after each successful run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    /// Pushes each file written or removed in the tree to the targets as it happens (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<bool>,
    /// Projects whose each successful run is followed by a run of this one (trigger `dependency`).
    /// Each must exist; no cycle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<DependsOn>,
    /// A small file of the upstream (relative to its module) that changes with every update
    /// (Debian's `project/trace/master`, Arch's `lastupdate`): fetched alone before each run, and
    /// when it is as the last successful run saw it, the run ends at once, `changed: false`, with
    /// no walk of the upstream. Default: none (`project/trace/master` with the `debian` stage profile).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// Programs run after each run, by the names of the master's `[[hooks]]` (root only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks: Option<crate::project::RunHooks>,
    /// How the tree is brought: `rsync` (default: `rsync_host`, `rsync_module`), `git` (a bare
    /// mirror of `upstream_url`) or `command` (the master's `[[providers]]` entry named by
    /// `provider`). See docs/kinds.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<crate::kinds::Kind>,
    /// A git or command project's upstream: `https://`, `git://`, `ftp://`... (no password, only
    /// the characters of a plain URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_url: Option<crate::kinds::UpstreamUrl>,
    /// A command project's program, by the name of a `[[providers]]` entry of the master's
    /// configuration (root only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Name>,
    /// A command project's parameters (root only): each passed as the environment variable
    /// `MIRROR_PARAM_<NAME>`, and into the argv only where the provider has a `{params.NAME}` slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<crate::kinds::Params>,
    /// A git project's `ssh://` upstream: the `[[git_ssh_keys]]` name it logs in with (root only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<Name>,
    /// Writes Arch's freshness files at the top of the tree with each new generation: `lastupdate`
    /// (the Unix time of the newest file in the tree) and `lastsync` (when the run that made the
    /// generation ended). Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freshness: Option<bool>,
    /// A file, relative to the tree, written with each new generation with the Unix time the run
    /// that made it ended (a redirector's trace file, such as mirrorbits' `TraceFileLocation`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_epoch_file: Option<String>,
    /// The master nodes that may run it: one node's name (the machine that holds its tree), or a
    /// list of nodes sharing one mirror root (the first alive runs it). Default: any node (the
    /// leader runs it). See docs/cluster.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<crate::placement::Placement>,
    /// Why (stored with the change; or the `X-Comment` header).
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not the
    /// current one. For a removed project's id, the version of its removal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// `POST /update_project/basic/`: every field but `id` optional.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProjectBasic {
    pub id: ProjectId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsync_host: Option<Host>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsync_module: Option<ModulePath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest: Option<String>,
    /// Absent: unchanged; `null` or `""`: removed.
    #[serde(default, deserialize_with = "present_or_null")]
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "crate::secret::reveal::option_option")]
    pub rsync_password: Option<Option<Secret>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsync_options: Option<RsyncOptionsInput>,
    /// Absent: unchanged; `null`: removed.
    #[serde(default, deserialize_with = "present_or_null")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsync_user: Option<Option<Name>>,
    #[serde(default, deserialize_with = "present_or_null")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rsync_port: Option<Option<Port>>,
    #[serde(default, deserialize_with = "present_or_null")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<bool>,
    /// Absent: unchanged; `null`: back to the master's `stale_after_secs`.
    #[serde(default, deserialize_with = "present_or_null")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<bool>,
    /// Absent: unchanged; `null`: back to the master's `max_delete`.
    #[serde(default, deserialize_with = "present_or_null")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delete: Option<Option<MaxDelete>>,
    /// Absent: unchanged; `null`: one stage.
    #[serde(default, deserialize_with = "present_or_null")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<Option<Stages>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flip: Option<bool>,
    /// Replaces the whole list (`[]`: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<bool>,
    /// Replaces the whole list (`[]`: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<DependsOn>,
    /// Absent: unchanged; `null` or `""`: none.
    #[serde(default, deserialize_with = "present_or_null")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freshness: Option<bool>,
    /// Replaces the project's hooks (root only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hooks: Option<crate::project::RunHooks>,
    /// Absent: unchanged. How the tree is brought: `rsync` , `git` (a bare
    /// mirror of `upstream_url`) or `command` (the master's `[[providers]]` entry named by
    /// `provider`). See docs/kinds.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<crate::kinds::Kind>,
    /// A git or command project's upstream: `https://`, `git://`, `ftp://`... (no password, only
    /// the characters of a plain URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_url: Option<crate::kinds::UpstreamUrl>,
    /// A command project's program, by the name of a `[[providers]]` entry of the master's
    /// configuration (root only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Name>,
    /// A command project's parameters (root only): each passed as the environment variable
    /// `MIRROR_PARAM_<NAME>`, and into the argv only where the provider has a `{params.NAME}` slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<crate::kinds::Params>,
    /// A git project's `ssh://` upstream: the `[[git_ssh_keys]]` name it logs in with (root only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<Name>,
    /// Absent: unchanged; `null` or `""`: none.
    #[serde(default, deserialize_with = "present_or_null")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_epoch_file: Option<Option<String>>,
    /// Absent: unchanged; `null`: any node.
    #[serde(default, deserialize_with = "present_or_null")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Option<crate::placement::Placement>>,
    /// Why (stored with the change; or the `X-Comment` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`): refused with 409 if it is not current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// `POST /update_project/schedule/` as the API document shows it: the flat 2014 payload, `id`
/// (and `comment`, `version`) beside the schedule's fields, in one object (the handler reads it
/// field by field). `CronOptions` takes no other field, so it is extended, not combined.
#[cfg(feature = "openapi")]
pub struct ScheduleRequest;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ScheduleRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
        let mut schema = <CronOptions as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(o)) = &mut schema {
            o.properties.insert("id".into(), <ProjectId as utoipa::PartialSchema>::schema());
            let text = ObjectBuilder::new().schema_type(Type::String).description(Some("why (stored with the change)"));
            o.properties.insert("comment".into(), text.into());
            let version = ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some("the version this change is based on (409 if it is not current)"));
            o.properties.insert("version".into(), version.into());
            o.required.push("id".into());
        }
        schema
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ScheduleRequest {}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present_or_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `{"id": ...}`: remove, enable, disable, syncup.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectRef {
    pub id: ProjectId,
    /// Why (stored with the change; or the `X-Comment` header).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The version this change is based on (or `If-Match`).
    #[serde(skip_serializing_if = "Option::is_none")]
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
    /// `null` for a manual-only project (or one with `interval_options`).
    pub cron_options: Option<ScheduleSpec>,
    /// The other kind of schedule, with its `start_date` (set when it was given none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_options: Option<crate::interval::IntervalSpec>,
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
    /// Arch's `lastupdate` and `lastsync` (see `AddProject.freshness`).
    #[serde(default)]
    pub freshness: bool,
    /// Programs run after each run (`[[hooks]]` names).
    #[serde(default, skip_serializing_if = "crate::project::RunHooks::is_empty")]
    pub hooks: crate::project::RunHooks,
    /// `rsync`, `git` or `command`.
    #[serde(default)]
    pub kind: crate::kinds::Kind,
    /// A git or command project's upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_url: Option<crate::kinds::UpstreamUrl>,
    /// A command project's `[[providers]]` name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Name>,
    /// A command project's parameters.
    #[serde(default, skip_serializing_if = "crate::kinds::Params::is_empty")]
    pub params: crate::kinds::Params,
    /// A git project's `[[git_ssh_keys]]` name (`ssh://` upstreams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<Name>,
    /// Every upstream in order of preference, when it has more than one (the first is
    /// `rsync_host`...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<UpstreamView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_epoch_file: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_options: Option<crate::interval::IntervalSpec>,
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
        if let Some(url) = &self.upstream_url {
            return url.to_string();
        }
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
            interval_options: v.interval_options,
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

#[cfg(test)]
mod tests {
    use super::UpdateProjectBasic;

    /// A client's update body says only what it changes: an absent field stays absent, a removal
    /// is `null`, and the password it sets is written out (only in a request body).
    #[test]
    fn an_update_body_round_trips() {
        let sent = r#"{"id":"debian","rsync_password":null,"rsync_port":873,"probe":"x"}"#;
        let update: UpdateProjectBasic = serde_json::from_str(sent).unwrap();
        assert_eq!(serde_json::to_string(&update).unwrap(), sent);
        let set = r#"{"id":"debian","rsync_password":"hunter2"}"#;
        let update: UpdateProjectBasic = serde_json::from_str(set).unwrap();
        assert_eq!(serde_json::to_string(&update).unwrap(), set);
        assert!(!format!("{update:?}").contains("hunter2"));
    }
}
