//! `GET /mirrorz.json`: the site and its mirrors in mirrorz's format, version 1.7 (the aggregated
//! status of the CERNET mirror sites; the format is the "Data Format" section of
//! github.com/mirrorz-org/mirrorz's README).

use serde::{Deserialize, Serialize};

/// The whole document.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mirrorz {
    /// `1.7`.
    pub version: f64,
    pub site: MirrorzSite,
    /// The category view (ISO images and the like): always empty here.
    pub info: Vec<MirrorzInfo>,
    pub mirrors: Vec<MirrorzMirror>,
}

/// The mirror site, as the master's configuration file's `[site]` table describes it. Only `url`
/// and `abbr` are required.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorzSite {
    /// The site's address, without a trailing `/`; each mirror's `url` is relative to it.
    pub url: String,
    pub abbr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_darkmode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A large file for speed tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub big: Option<String>,
    /// The whole site is out of service.
    #[serde(default)]
    pub disable: bool,
}

/// One entry of the category view.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MirrorzInfo {
    pub category: String,
    pub distro: String,
    pub urls: Vec<MirrorzUrl>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MirrorzUrl {
    pub name: String,
    pub url: String,
}

/// One project.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MirrorzMirror {
    /// The project id.
    pub cname: String,
    /// The project's name.
    pub desc: String,
    /// `/<dest>`: where the site serves its tree.
    pub url: String,
    /// mirrorz's compact code: one of `S` (success), `Y` (syncing), `F` (failed), `P` (paused:
    /// disabled, or its last run stopped by an operator), `D` (pending: never run) or `U`
    /// (unknown: a local tree, which never runs), each followed by the Unix time it applies to;
    /// then `X<next run>`, `O<last success>` while syncing or failing, `N<added>` for a project
    /// that has not succeeded yet.
    pub status: String,
    /// `rsync://host[:port]/module/`; absent for a local tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The tree's size at the last run that measured it (`1.23G`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    pub disable: bool,
}
