//! The configuration document of `GET /export` and `POST /import`, and the import's report.

use serde::{Deserialize, Serialize};

use super::{
    DependsOn, Deserializer, Host, MaxDelete, ModulePath, Name, Port, ProjectId, Role, RsyncOptionsInput, SlaveToken,
    Stages, Targets,
};

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
    /// The other kind of schedule (APScheduler's `IntervalTrigger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_options: Option<crate::interval::IntervalOptions>,
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
    #[serde(default, skip_serializing_if = "is_false")]
    pub freshness: bool,
    #[serde(default, skip_serializing_if = "crate::project::RunHooks::is_empty")]
    pub hooks: crate::project::RunHooks,
    #[serde(default, skip_serializing_if = "crate::kinds::Kind::is_rsync")]
    pub kind: crate::kinds::Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_url: Option<crate::kinds::UpstreamUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Name>,
    #[serde(default, skip_serializing_if = "crate::kinds::Params::is_empty")]
    pub params: crate::kinds::Params,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<Name>,
    /// Every upstream, when there is more than one (then no `rsync_host`...); each password as
    /// `rsync_password` is (`"set"` out; a value, or `"set"` to keep it, in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<Vec<UpstreamDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_epoch_file: Option<String>,
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

/// One upstream of a document's project.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamDoc {
    pub host: super::Host,
    pub module: super::ModulePath,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<super::Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<super::Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub password: Option<PasswordField>,
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
