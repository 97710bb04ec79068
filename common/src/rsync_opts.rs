//! rsync options: the three layers of the 2014 API (`defaults`, `basic`, `delete`) and the allowlist
//! every option passes before it reaches an argv.
//!
//! The rule is an allowlist, not a blocklist: an option we do not know is refused. Nothing that runs a
//! program (`-e`, `--rsync-path`), reads or writes files outside the project (`--config`, `--log-file`,
//! `--*-from`, batch files, `--password-file`), or changes rsync's role (`--daemon`, `--server`) is known.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// What `defaults` is when a project does not say.
pub const DEFAULT_OPTIONS: [&str; 1] = ["-avH"];

/// The mutually exclusive delete options; at most one is used.
pub const DELETE_OPTIONS: [&str; 7] = [
    "--delete",
    "--del",
    "--delete-before",
    "--delete-during",
    "--delete-delay",
    "--delete-after",
    "--delete-excluded",
];

/// Short flags that take no argument and are safe, checked letter by letter in `-avH`.
const SAFE_SHORT: &str = "avqcrRbulLkKHpEAXogDtUNOJSnWxdmCzhiP468syIF";

/// Long options without a value.
const SAFE_FLAGS: &[&str] = &[
    "verbose",
    "quiet",
    "no-motd",
    "checksum",
    "archive",
    "recursive",
    "relative",
    "no-implied-dirs",
    "backup",
    "update",
    "inplace",
    "append",
    "append-verify",
    "dirs",
    "mkpath",
    "links",
    "copy-links",
    "copy-unsafe-links",
    "safe-links",
    "munge-links",
    "copy-dirlinks",
    "keep-dirlinks",
    "hard-links",
    "perms",
    "executability",
    "acls",
    "xattrs",
    "owner",
    "group",
    "devices",
    "specials",
    "times",
    "atimes",
    "open-noatime",
    "crtimes",
    "omit-dir-times",
    "omit-link-times",
    "super",
    "fake-super",
    "sparse",
    "preallocate",
    "dry-run",
    "whole-file",
    "one-file-system",
    "existing",
    "ignore-existing",
    "ignore-errors",
    "force",
    "delay-updates",
    "prune-empty-dirs",
    "numeric-ids",
    "ignore-times",
    "size-only",
    "fuzzy",
    "compress",
    "cvs-exclude",
    "from0",
    "secluded-args",
    "protect-args",
    "old-args",
    "trust-sender",
    "blocking-io",
    "stats",
    "8-bit-output",
    "human-readable",
    "progress",
    "itemize-changes",
    "partial",
    "list-only",
    "ipv4",
    "ipv6",
    "fsync",
    "ignore-missing-args",
    "delete-missing-args",
    "inc-recursive",
    "copy-devices",
];

/// Long options whose `=VALUE` is harmless whatever it is (no path, no command).
const SAFE_VALUED: &[&str] = &[
    "port",
    "bwlimit",
    "timeout",
    "contimeout",
    "max-size",
    "min-size",
    "max-delete",
    "max-alloc",
    "modify-window",
    "compress-level",
    "compress-choice",
    "zc",
    "zl",
    "checksum-choice",
    "cc",
    "block-size",
    "chmod",
    "chown",
    "usermap",
    "groupmap",
    "info",
    "debug",
    "out-format",
    "outbuf",
    "iconv",
    "suffix",
    "exclude",
    "include",
    "skip-compress",
    "stop-after",
    "stop-at",
    "checksum-seed",
];

/// Long options whose value is a path: allowed only inside the project (relative, no `..`) or under
/// the mirror root.
const PATH_VALUED: &[&str] = &["compare-dest", "copy-dest", "link-dest", "temp-dir", "partial-dir", "backup-dir"];

/// `rsync_options` as a client sends it. `delete_option` is the name the 2014 listing used.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RsyncOptionsInput {
    pub defaults: Option<Vec<String>>,
    pub basic: Option<Vec<String>>,
    #[serde(alias = "delete_option")]
    pub delete: Option<String>,
}

/// The stored, validated layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RsyncOptions {
    pub defaults: Vec<String>,
    pub basic: Vec<String>,
    /// One of [`DELETE_OPTIONS`], or none.
    pub delete: Option<String>,
}

impl Default for RsyncOptions {
    fn default() -> Self {
        RsyncOptions { defaults: DEFAULT_OPTIONS.iter().map(|s| s.to_string()).collect(), basic: vec![], delete: None }
    }
}

impl RsyncOptions {
    /// Validates client input against the allowlist. Absent layers take their defaults.
    /// `mirror_root` bounds the absolute paths that `--*-dest` and friends may name.
    pub fn from_input(input: &RsyncOptionsInput, mirror_root: &Path) -> Result<RsyncOptions, FieldError> {
        let base = RsyncOptions::default();
        let defaults = input.defaults.clone().unwrap_or(base.defaults);
        let basic = input.basic.clone().unwrap_or_default();
        let delete = input.delete.clone().filter(|d| !d.trim().is_empty());
        for (i, opt) in defaults.iter().enumerate() {
            check_option(opt, mirror_root).map_err(|m| FieldError::new(format!("rsync_options.defaults[{i}]"), m))?;
        }
        for (i, opt) in basic.iter().enumerate() {
            check_option(opt, mirror_root).map_err(|m| FieldError::new(format!("rsync_options.basic[{i}]"), m))?;
        }
        if let Some(d) = &delete
            && !DELETE_OPTIONS.contains(&d.as_str())
        {
            return Err(FieldError::new(
                "rsync_options.delete",
                format!("'{}' is not a delete option; use one of {}", printable(d), DELETE_OPTIONS.join(", ")),
            ));
        }
        let all: Vec<&String> = defaults.iter().chain(&basic).collect();
        if let Some(d) = all.iter().find(|o| is_delete_option(o)) {
            return Err(FieldError::new(
                "rsync_options",
                format!("'{d}' belongs in rsync_options.delete, which holds the one delete option"),
            ));
        }
        Ok(RsyncOptions { defaults, basic, delete })
    }

    /// The options in their fixed order: defaults, then basic, then the delete option.
    pub fn layered(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.defaults.len() + self.basic.len() + 1);
        out.extend(self.defaults.iter().cloned());
        out.extend(self.basic.iter().cloned());
        out.extend(self.delete.iter().cloned());
        out
    }

    /// The `--port=N` an option sets, if any (the last one wins, as in rsync).
    pub fn port(&self) -> Option<u16> {
        self.defaults.iter().chain(&self.basic).rev().find_map(|o| o.strip_prefix("--port=")?.parse().ok())
    }
}

fn is_delete_option(opt: &str) -> bool {
    DELETE_OPTIONS.contains(&opt)
}

/// Shows an option in an error without control characters.
fn printable(s: &str) -> String {
    s.escape_debug().to_string()
}

/// Checks one option; the error says why it is refused.
pub fn check_option(opt: &str, mirror_root: &Path) -> Result<(), String> {
    if opt.chars().any(|c| c.is_control()) {
        return Err(format!("'{}' contains a control character (newline, NUL...)", printable(opt)));
    }
    if opt.len() > 1024 {
        return Err("option is longer than 1024 characters".into());
    }
    if let Some(long) = opt.strip_prefix("--") {
        let (name, value) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (long, None),
        };
        // `--no-X` turns off an allowed flag X.
        let base = name.strip_prefix("no-").filter(|b| SAFE_FLAGS.contains(b)).unwrap_or(name);
        if is_delete_option(opt) {
            return Ok(());
        }
        if SAFE_FLAGS.contains(&base) {
            return match value {
                None => Ok(()),
                Some(_) => Err(format!("'--{name}' takes no value")),
            };
        }
        if SAFE_VALUED.contains(&name) {
            return match value {
                Some(v) if !v.is_empty() => check_value(name, v),
                _ => Err(format!("'--{name}' needs a value in the same item: '--{name}=VALUE'")),
            };
        }
        if name == "filter" {
            return match value {
                Some(rule) if !rule.is_empty() => check_filter_rule(rule),
                _ => Err("'--filter' needs a value in the same item: '--filter=RULE'".into()),
            };
        }
        if PATH_VALUED.contains(&name) {
            return match value {
                Some(p) if !p.is_empty() => check_inside(name, p, mirror_root),
                _ => Err(format!("'--{name}' needs a value in the same item: '--{name}=PATH'")),
            };
        }
        return Err(format!("'--{name}' is not an allowed rsync option"));
    }
    if let Some(flags) = opt.strip_prefix('-') {
        if flags.is_empty() {
            return Err("'-' alone is not an option".into());
        }
        for c in flags.chars() {
            if !SAFE_SHORT.contains(c) {
                return Err(match c {
                    'e' => "'-e' (remote shell) runs a program and is not allowed".to_string(),
                    'f' | 'T' | 'B' | 'M' => {
                        format!("'-{c}' takes a value; use its long form with '='")
                    }
                    _ => format!("'-{c}' in '{opt}' is not an allowed rsync option"),
                });
            }
        }
        return Ok(());
    }
    Err(format!("'{opt}' is not an option (a bare word would be read as an extra source)"))
}

fn check_value(name: &str, value: &str) -> Result<(), String> {
    if name == "suffix" && value.contains('/') {
        return Err("'--suffix' must not contain '/'".into());
    }
    if name == "port" && value.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("'--port={value}' is not a port number"));
    }
    Ok(())
}

/// Filter rules that merge rules from a file read that file: only per-directory merges inside the
/// tree (`dir-merge`, `:`) are allowed, and only with a plain file name.
fn check_filter_rule(rule: &str) -> Result<(), String> {
    let (head, arg) = match rule.split_once([' ', '_']) {
        Some((h, a)) => (h, a.trim()),
        None => (rule, ""),
    };
    let kind = head.split(',').next().unwrap_or("");
    let is_merge = kind == "merge" || kind.starts_with('.');
    let is_dir_merge = kind == "dir-merge" || kind.starts_with(':');
    if is_merge {
        return Err(format!("filter rule '{rule}' reads a file outside the project"));
    }
    if is_dir_merge && (arg.contains('/') || arg.is_empty()) {
        return Err(format!("filter rule '{rule}': a per-directory merge file must be a plain file name"));
    }
    Ok(())
}

/// A path option must stay inside the project (relative, without `..` climbing out) or lie under the
/// mirror root.
fn check_inside(name: &str, value: &str, mirror_root: &Path) -> Result<(), String> {
    let path = Path::new(value);
    if path.is_absolute() {
        let normal = normalize_lexically(path).ok_or_else(|| format!("'--{name}={value}' climbs above /"))?;
        if normal.starts_with(mirror_root) && normal != mirror_root {
            return Ok(());
        }
        return Err(format!("'--{name}={value}' is outside the mirror root {}", mirror_root.display()));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("'--{name}={value}' must not contain '..'"));
    }
    Ok(())
}

/// Resolves `.` and `..` without touching the file system. `None` when `..` climbs above the root.
pub fn normalize_lexically(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() || out.as_os_str().is_empty() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    Some(out)
}

/// Where a write to `path` (absolute, already normalised) would land: its longest existing prefix
/// with symlinks resolved, then the rest as given. `None` when not even `/` resolves.
pub async fn resolve_symlinks(path: &Path) -> Option<PathBuf> {
    let mut existing = path;
    let mut rest = Vec::new();
    let resolved = loop {
        match tokio::fs::canonicalize(existing).await {
            Ok(c) => break c,
            Err(_) => {
                rest.push(existing.file_name()?.to_owned());
                existing = existing.parent()?;
            }
        }
    };
    Some(rest.iter().rev().fold(resolved, |p, c| p.join(c)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn root() -> &'static Path {
        Path::new("/srv/mirror")
    }

    #[test]
    fn allowed_options_pass() {
        for o in [
            "-avH",
            "-a",
            "--delete",
            "--exclude=*.iso",
            "--bwlimit=1000",
            "--no-motd",
            "--link-dest=prev",
            "--link-dest=/srv/mirror/prev",
            "--partial-dir=.rsync-partial",
            "--filter=dir-merge .rsync-filter",
            "--filter=- *.tmp",
            "--port=8873",
            "--no-perms",
            "--chmod=Du=rwx",
            "-zP",
        ] {
            assert!(check_option(o, root()).is_ok(), "{o}: {:?}", check_option(o, root()));
        }
    }

    #[test]
    fn hostile_options_are_refused() {
        for o in [
            "-e",
            "-avHe",
            "-e ssh",
            "--rsh=ssh",
            "--rsync-path=sudo rsync",
            "--config=/etc/rsyncd.conf",
            "--daemon",
            "--server",
            "--sender",
            "--write-batch=/tmp/x",
            "--read-batch=x",
            "--only-write-batch=x",
            "--log-file=/tmp/l",
            "--password-file=/etc/shadow",
            "--files-from=/etc/passwd",
            "--exclude-from=/etc/x",
            "--include-from=x",
            "--temp-dir=/tmp",
            "--backup-dir=/etc",
            "--compare-dest=../../etc",
            "--partial-dir=/var/tmp",
            "--link-dest=/srv/mirror/../etc",
            "--remove-source-files",
            "--remote-option=--x",
            "-M--x",
            "--filter=merge /etc/rules",
            "--filter=. /etc/rules",
            "--filter=: /etc/rules",
            "/etc/passwd",
            "host::module",
            "--exclude\n=x",
            "--ex\0",
            "--suffix=/x",
            "--port=0",
            "--exclude",
            "--bwlimit",
            "-",
            "--verbose=3",
            "--write-devices",
            "--dparam=x",
            "--sockopts=x",
            "--address=1.2.3.4",
        ] {
            assert!(check_option(o, root()).is_err(), "{o:?} should be refused");
        }
    }

    #[test]
    fn layers_keep_their_order_and_defaults() {
        let input = RsyncOptionsInput {
            defaults: None,
            basic: Some(vec!["--no-motd".into()]),
            delete: Some("--delete-after".into()),
        };
        let o = RsyncOptions::from_input(&input, root()).unwrap();
        assert_eq!(o.layered(), vec!["-avH", "--no-motd", "--delete-after"]);
        let input = RsyncOptionsInput { defaults: Some(vec![]), basic: None, delete: Some(String::new()) };
        assert!(RsyncOptions::from_input(&input, root()).unwrap().layered().is_empty());
    }

    #[test]
    fn layer_errors_name_the_item() {
        let input = RsyncOptionsInput { defaults: None, basic: Some(vec!["-a".into(), "-e".into()]), delete: None };
        assert_eq!(RsyncOptions::from_input(&input, root()).unwrap_err().field, "rsync_options.basic[1]");
        let input = RsyncOptionsInput { defaults: None, basic: None, delete: Some("--rsh=x".into()) };
        assert_eq!(RsyncOptions::from_input(&input, root()).unwrap_err().field, "rsync_options.delete");
        let input = RsyncOptionsInput { defaults: None, basic: Some(vec!["--delete".into()]), delete: None };
        assert_eq!(RsyncOptions::from_input(&input, root()).unwrap_err().field, "rsync_options");
    }
}
