//! Two-stage sync (Debian's ftpsync): stage 1 brings everything but the index files and deletes
//! nothing; stage 2 brings the rest with `--delay-updates` and the deletions (`--delete-delay`).
//! A mirror's users never see an index that names a file not there yet.

use serde::{Deserialize, Serialize};

/// At most this many custom stage-1 patterns, each at most [`MAX_PATTERN`] bytes.
pub const MAX_PATTERNS: usize = 100;
pub const MAX_PATTERN: usize = 256;

/// The `Archive-Update-in-Progress-*` files an archive shows while it is being updated.
pub const LOCK_PREFIX: &str = "Archive-Update-in-Progress-";

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageProfile {
    /// ftpsync's stage-1 excludes, with tunasync's additions.
    Debian,
}

/// `stages` of a project: present, the project syncs in two stages.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stages {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<StageProfile>,
    /// More rsync exclude patterns for stage 1 (`"*.db"`, `"/indices/"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage1_exclude: Vec<String>,
}

impl Stages {
    /// The rsync filter options of stage 1, in order (an include before the exclude it limits).
    pub fn stage1_filters(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.profile == Some(StageProfile::Debian) {
            out.extend(
                [
                    "--include=i18n/by-hash/**",
                    "--exclude=Packages*",
                    "--exclude=Sources*",
                    "--exclude=Release*",
                    "--exclude=InRelease",
                    "--exclude=i18n/*",
                    "--exclude=ls-lR*",
                    "--exclude=*.diff/Index",
                    "--exclude=Contents*",
                    "--exclude=dep11/*",
                    "--exclude=installer-*/current",
                ]
                .map(str::to_owned),
            );
        }
        out.extend(self.stage1_exclude.iter().map(|p| format!("--exclude={p}")));
        out
    }

    /// Field errors name `stages.stage1_exclude[i]`.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.profile.is_none() && self.stage1_exclude.is_empty() {
            return Err(("stages".into(), "give a profile (debian) or stage1_exclude patterns".into()));
        }
        if self.stage1_exclude.len() > MAX_PATTERNS {
            return Err(("stages.stage1_exclude".into(), format!("at most {MAX_PATTERNS} patterns")));
        }
        for (i, p) in self.stage1_exclude.iter().enumerate() {
            if p.is_empty() || p.len() > MAX_PATTERN || p.chars().any(char::is_control) {
                return Err((
                    format!("stages.stage1_exclude[{i}]"),
                    format!("must be 1 to {MAX_PATTERN} characters without control characters"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debian_profile_keeps_by_hash_and_custom_patterns_follow() {
        let s = Stages { profile: Some(StageProfile::Debian), stage1_exclude: vec!["*.db".into()] };
        let f = s.stage1_filters();
        assert_eq!(f[0], "--include=i18n/by-hash/**");
        assert!(f.contains(&"--exclude=Packages*".to_owned()) && f.contains(&"--exclude=InRelease".to_owned()));
        assert_eq!(f.last().map(String::as_str), Some("--exclude=*.db"));
        assert!(s.check().is_ok());
        assert_eq!(Stages::default().check().unwrap_err().0, "stages");
        let bad = Stages { profile: None, stage1_exclude: vec!["a\nb".into()] };
        assert_eq!(bad.check().unwrap_err().0, "stages.stage1_exclude[0]");
    }
}
