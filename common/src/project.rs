//! A project's configuration: the one shape every write produces and every reader takes. The
//! 2014 request bodies (`AddProject`, `UpdateProjectBasic`) and the export document convert into it
//! once, where they enter; the master's database row is this plus what runs keep (version,
//! generation, times), and a version in its history is this plus whether a password was set.

use serde::{Deserialize, Serialize};

use crate::cron::ScheduleSpec;
use crate::depends::DependsOn;
use crate::guards::MaxDelete;
use crate::interval::IntervalSpec;
use crate::kinds::{Kind, SourceSpec};
use crate::names::{Dest, Host, ModulePath, Name, Port, ProjectId};
use crate::placement::Placement;
use crate::rsync_opts::RsyncOptions;
use crate::stages::Stages;
use crate::targets::Targets;

/// Everything that says what a project mirrors and how, but its password (a secret, kept beside
/// it) and its state. Serialized as a version of its history stores it (`cron_options` is the
/// compiled schedule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectConfig {
    pub id: ProjectId,
    pub project: String,
    /// The id was derived from `project` and follows it when it is renamed.
    pub id_derived: bool,
    /// `None` with `rsync_module`: a local source (its `dest` is written by something else).
    #[serde(default)]
    pub rsync_host: Option<Host>,
    #[serde(default)]
    pub rsync_module: Option<ModulePath>,
    pub dest: Dest,
    #[serde(default)]
    pub rsync_user: Option<Name>,
    #[serde(default)]
    pub rsync_port: Option<Port>,
    /// `None`: manual runs only.
    #[serde(rename = "cron_options", default)]
    pub schedule: Option<ScheduleSpec>,
    /// The other kind of schedule (at most one of the two is set).
    #[serde(rename = "interval_options", default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<IntervalSpec>,
    pub rsync_options: RsyncOptions,
    pub enabled: bool,
    /// `None`: the master's `run_timeout_secs`.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    #[serde(default)]
    pub catch_up: bool,
    /// `None`: the master's `stale_after_secs`.
    #[serde(default)]
    pub max_age_secs: Option<u64>,
    #[serde(default)]
    pub trace: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delete: Option<MaxDelete>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Stages>,
    #[serde(default)]
    pub flip: bool,
    #[serde(default, skip_serializing_if = "Targets::is_empty")]
    pub targets: Targets,
    #[serde(default)]
    pub watch: bool,
    #[serde(default, skip_serializing_if = "DependsOn::is_empty")]
    pub depends_on: DependsOn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// Arch's `lastupdate` and `lastsync` at the top of the tree, written with each generation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freshness: bool,
    /// A file (relative to the tree) holding the Unix time of the generation, for redirectors
    /// such as mirrorbits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_epoch_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Placement>,
    /// Upstreams after the first (`rsync_host`...), in order of preference: a run moves to the
    /// next when one is down, refuses, or serves an older tree than another (by the probe).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_upstreams: Vec<UpstreamConfig>,
    /// Programs run after a run (tunasync's `exec_on_success`/`exec_on_failure`), each named from
    /// the master's configuration's `[[hooks]]`.
    #[serde(default, skip_serializing_if = "RunHooks::is_empty")]
    pub hooks: RunHooks,
    /// Its kind (rsync, git, command), and what git and command projects pull from.
    #[serde(flatten)]
    pub source: SourceSpec,
}

/// A shape of a project built from its configuration (the API's `ProjectView`, the export
/// document's `ProjectDoc`): the fields each shape takes from the configuration as they are, listed
/// once here, then the shape's own, given after the configuration:
/// `from_config!(ProjectDoc, &row.config, { dest, rsync_host: ..., })`.
#[macro_export]
macro_rules! from_config {
    ($shape:ident, $config:expr, { $($own:tt)* }) => {{
        let config: &$crate::project::ProjectConfig = $config;
        $shape {
            id: config.id.clone(),
            project: config.project.clone(),
            interval_options: config.interval.clone(),
            enabled: config.enabled,
            timeout_secs: config.timeout_secs,
            catch_up: config.catch_up,
            max_age_secs: config.max_age_secs,
            trace: config.trace,
            targets: config.targets.clone(),
            watch: config.watch,
            max_delete: config.max_delete,
            stages: config.stages.clone(),
            flip: config.flip,
            depends_on: config.depends_on.clone(),
            probe: config.probe.clone(),
            freshness: config.freshness,
            hooks: config.hooks.clone(),
            kind: config.source.kind,
            upstream_url: config.source.upstream_url.clone(),
            provider: config.source.provider.clone(),
            params: config.source.params.clone(),
            ssh_key: config.source.ssh_key.clone(),
            trace_epoch_file: config.trace_epoch_file.clone(),
            node: config.node.clone(),
            $($own)*
        }
    }};
}

/// The hooks of a project, by name: a program is only ever declared in the master's
/// configuration file.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunHooks {
    /// After a run that succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_success: Vec<Name>,
    /// After a run that failed or timed out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<Name>,
}

impl RunHooks {
    pub fn is_empty(&self) -> bool {
        self.on_success.is_empty() && self.on_failure.is_empty()
    }
}

/// One more upstream of a project (its password is kept beside the configuration, as the first
/// one's is).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub host: Host,
    pub module: ModulePath,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Name>,
}

/// The most upstreams a project may list.
pub const MAX_UPSTREAMS: usize = 8;

impl ProjectConfig {
    /// Whether the project has a local source (no upstream: it never runs).
    pub fn is_local(&self) -> bool {
        self.source.kind == Kind::Rsync && self.rsync_host.is_none()
    }

    /// `host::module`, a git or command project's `upstream_url`, or `local` for a project with a
    /// local source.
    pub fn upstream(&self) -> String {
        if let Some(url) = &self.source.upstream_url {
            return url.to_string();
        }
        match (&self.rsync_host, &self.rsync_module) {
            (Some(h), Some(m)) => format!("{h}::{m}"),
            _ => "local".to_owned(),
        }
    }

    /// Whether a password given for `other` may stay with this configuration: the same daemon,
    /// login and module. A password follows its project to no other upstream.
    pub fn same_upstream(&self, other: &ProjectConfig) -> bool {
        self.rsync_host == other.rsync_host
            && self.rsync_port == other.rsync_port
            && self.rsync_user == other.rsync_user
            && self.rsync_module == other.rsync_module
    }

    /// Its upstreams in order of preference: the first (`rsync_host`...) and the others.
    pub fn upstreams(&self) -> Vec<UpstreamConfig> {
        let first = match (&self.rsync_host, &self.rsync_module) {
            (Some(host), Some(module)) => Some(UpstreamConfig {
                host: host.clone(),
                module: module.clone(),
                port: self.rsync_port,
                user: self.rsync_user.clone(),
            }),
            _ => None,
        };
        first.into_iter().chain(self.more_upstreams.iter().cloned()).collect()
    }

    /// This configuration with upstream `u` as its first (what a run pulls from when it uses it).
    pub fn using(&self, u: &UpstreamConfig) -> ProjectConfig {
        ProjectConfig {
            rsync_host: Some(u.host.clone()),
            rsync_module: Some(u.module.clone()),
            rsync_port: u.port,
            rsync_user: u.user.clone(),
            ..self.clone()
        }
    }

    /// The timeout of its runs, given the master's default.
    pub fn timeout(&self, default: std::time::Duration) -> std::time::Duration {
        self.timeout_secs.map_or(default, std::time::Duration::from_secs)
    }
}
