//! Versions of a configuration: history, one version, revert.

use serde::{Deserialize, Serialize};

use super::Timestamp;

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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revert {
    pub version: i64,
    /// Why (default: "revert to version N").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Versions keep no password, only whether one was set: reverting to a version that had one,
    /// on a project that has none now (or was removed), needs it given here. Otherwise the
    /// project's current password is kept.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "crate::secret::reveal::option")]
    pub rsync_password: Option<crate::Secret>,
}
