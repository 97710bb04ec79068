//! Object-store targets of a project (the autosync seed): where a project's tree is also
//! published, which part of it, and the record of each push. The rules here are pure; the master
//! does the requests.

use serde::{Deserialize, Serialize};

use crate::names::Name;
use crate::time::Timestamp;

/// At most this many targets per project.
pub const MAX_TARGETS: usize = 8;
/// A filter regex is at most this long, and compiles to at most [`REGEX_SIZE_LIMIT`] bytes.
pub const MAX_REGEX_LEN: usize = 1024;
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One target: an S3-compatible bucket (or prefix of one) kept in step with the project's tree.
/// Credentials are never here: `credentials` names a `[[s3_credentials]]` entry of the master's
/// configuration, which reads them from its environment or a 0600 file.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Unique within the project: `POST /targets/sync?id=P&target=NAME`, metrics, records.
    pub name: Name,
    /// The kind of store; `s3` (any S3-compatible server).
    #[serde(default)]
    pub kind: TargetKind,
    /// `http://` or `https://` base URL of the S3 endpoint (`https://s3.eu-west-1.amazonaws.com`).
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    /// Keys are written under this prefix (`debian/`); empty: the bucket's root.
    #[serde(default, alias = "prefix", skip_serializing_if = "String::is_empty")]
    pub target_prefix: String,
    /// Only the part of the tree under this relative directory is published, without it in the key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_prefix: String,
    /// Only relative paths this regex matches (searched, not anchored) are published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_filter: Option<String>,
    /// Relative paths this regex matches are not published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_exclude: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), as MinIO and most local servers want
    /// (default true); false: virtual-hosted style (`bucket.endpoint/key`).
    #[serde(default = "yes")]
    pub path_style: bool,
    /// The `[[s3_credentials]]` entry of the master's configuration to sign with.
    pub credentials: Name,
    /// Objects whose file is gone are kept (default false: deleted).
    #[serde(default)]
    pub keep_deleted: bool,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn yes() -> bool {
    true
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    #[default]
    S3,
}

/// A project's targets, as one JSON column.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Targets(pub Vec<TargetSpec>);

impl std::ops::Deref for Targets {
    type Target = Vec<TargetSpec>;
    fn deref(&self) -> &Vec<TargetSpec> {
        &self.0
    }
}

/// A relative prefix: no leading `/`, no `.` or `..` segment, no empty segment but a trailing one.
fn check_prefix(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Ok(());
    }
    if p.len() > 512 || p.starts_with('/') || p.chars().any(|c| c.is_control() || c == '\\') {
        return Err("must be a relative path of at most 512 characters, without control characters".into());
    }
    let body = p.strip_suffix('/').unwrap_or(p);
    if body.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err("must not have empty, '.' or '..' segments".into());
    }
    Ok(())
}

/// S3's bucket naming rules (3-63 of lowercase letters, digits, `.` and `-`, starting and ending
/// with a letter or digit).
fn check_bucket(b: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok { Ok(()) } else { Err("must be 3 to 63 lowercase letters, digits, '.' or '-'".into()) }
}

pub fn check_endpoint(e: &str) -> Result<(), String> {
    let rest = e.strip_prefix("https://").or_else(|| e.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && e.len() <= 1024 && !r.contains(['@', ' ', '?', '#']) => Ok(()),
        _ => Err("must be an http:// or https:// URL without credentials, query or fragment".into()),
    }
}

/// Compiles a filter regex within the size bounds.
pub fn compile_filter(re: &str) -> Result<regex::Regex, String> {
    if re.len() > MAX_REGEX_LEN {
        return Err(format!("is longer than {MAX_REGEX_LEN} characters"));
    }
    regex::RegexBuilder::new(re).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| format!("is not a regex: {e}"))
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every rule but the credentials' existence (the master's configuration knows them). The
    /// error names the field: `targets[1].bucket`.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.0.len() > MAX_TARGETS {
            return Err(("targets".into(), format!("at most {MAX_TARGETS} targets per project")));
        }
        for (i, t) in self.0.iter().enumerate() {
            let field = |f: &str| format!("targets[{i}].{f}");
            if self.0[..i].iter().any(|o| o.name == t.name) {
                return Err((field("name"), format!("'{}' is used twice", t.name)));
            }
            check_endpoint(&t.endpoint).map_err(|m| (field("endpoint"), m))?;
            check_bucket(&t.bucket).map_err(|m| (field("bucket"), m))?;
            if t.region.is_empty()
                || t.region.len() > 64
                || !t.region.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            {
                return Err((field("region"), "must be a region name such as us-east-1".into()));
            }
            check_prefix(&t.target_prefix).map_err(|m| (field("target_prefix"), m))?;
            check_prefix(&t.source_prefix).map_err(|m| (field("source_prefix"), m))?;
            for (name, re) in [("source_filter", &t.source_filter), ("source_exclude", &t.source_exclude)] {
                if let Some(re) = re {
                    compile_filter(re).map_err(|m| (field(name), m))?;
                }
            }
        }
        Ok(())
    }
}

/// How a push ended (or that it is going).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushStatus {
    Running,
    /// The target holds the tree.
    Success,
    /// Some requests failed (after their retries): the next push does what is left.
    Failed,
    /// The master stopped during the push.
    Interrupted,
}

impl PushStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PushStatus::Running => "running",
            PushStatus::Success => "success",
            PushStatus::Failed => "failed",
            PushStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<PushStatus> {
        [PushStatus::Running, PushStatus::Success, PushStatus::Failed, PushStatus::Interrupted]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// One push of a project's tree to one target: `GET /targets/pushes/{id}`, `GET /targets?id=`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushView {
    pub id: i64,
    pub project: String,
    pub target: String,
    /// `run` (after a successful run), `manual` (`POST /targets/sync`), `watch` (files changed
    /// in a watched tree), `start` (the merge when the master starts).
    pub trigger: String,
    pub status: PushStatus,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Files the push considered (after the filters).
    pub files: u64,
    pub uploaded: u64,
    pub deleted: u64,
    pub unchanged: u64,
    /// Not published: symlinks, special files, names that cannot be keys.
    pub skipped: u64,
    pub bytes_uploaded: u64,
    /// Requests that failed after their retries.
    pub errors: u64,
    /// The first errors (bounded), or what was skipped and why.
    pub message: String,
}

/// `GET /targets?id=`: a project's targets with their last push.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetView {
    pub target: TargetSpec,
    pub last_push: Option<PushView>,
    pub last_success: Option<Timestamp>,
}

/// `POST /targets/sync?id=`: the pushes started (or joined: a push already going does one
/// more pass after it).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushStarted {
    pub project: String,
    pub targets: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TargetSpec {
        serde_json::from_value(serde_json::json!({
            "name": "cdn", "endpoint": "http://127.0.0.1:9000", "bucket": "mirror", "credentials": "local"
        }))
        .unwrap()
    }

    #[test]
    fn defaults_and_the_prefix_alias() {
        let t = spec();
        assert_eq!((t.region.as_str(), t.path_style, t.keep_deleted), ("us-east-1", true, false));
        let t: TargetSpec = serde_json::from_value(serde_json::json!({
            "name": "cdn", "endpoint": "https://s3.example", "bucket": "mirror", "credentials": "c", "prefix": "debian/"
        }))
        .unwrap();
        assert_eq!(t.target_prefix, "debian/");
    }

    #[test]
    fn bad_fields_are_named() {
        let bad = |f: fn(&mut TargetSpec)| {
            let mut t = spec();
            f(&mut t);
            Targets(vec![t]).check().unwrap_err().0
        };
        assert_eq!(bad(|t| t.endpoint = "file:///etc".into()), "targets[0].endpoint");
        assert_eq!(bad(|t| t.endpoint = "http://user:pw@host".into()), "targets[0].endpoint");
        assert_eq!(bad(|t| t.bucket = "Bad_Bucket".into()), "targets[0].bucket");
        assert_eq!(bad(|t| t.target_prefix = "../up".into()), "targets[0].target_prefix");
        assert_eq!(bad(|t| t.source_prefix = "/abs".into()), "targets[0].source_prefix");
        assert_eq!(bad(|t| t.source_filter = Some("(".into())), "targets[0].source_filter");
        assert_eq!(bad(|t| t.source_exclude = Some("a".repeat(2000))), "targets[0].source_exclude");
        assert_eq!(Targets(vec![spec(), spec()]).check().unwrap_err().0, "targets[1].name");
        assert!(Targets(vec![spec()]).check().is_ok());
    }
}
