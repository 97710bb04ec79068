//! rsync options: the three layers of the 2014 API (`defaults`, `basic`, `delete`) and the allowlist
//! every option passes before it reaches an argv.
//!
//! The rule is an allowlist, not a blocklist: an option we do not know is refused. Nothing that runs a
//! program (`-e`, `--rsync-path`), reads or writes files outside the project (`--config`, `--log-file`,
//! `--*-from`, batch files, `--password-file`), changes rsync's role (`--daemon`, `--server`), or
//! needs or maps super-user powers (`--super`, `--devices`, `--chown`, `--usermap`) is known.
//!
//! Text checks cannot see where a path will lead once the upstream's symlinks have arrived, so the
//! options that name a path (`--backup-dir`, `--*-dest`, ...) and per-directory merge rules are
//! accepted only when runs are confined by the kernel (see `mirror-confine`).

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// The most options in one layer.
pub const MAX_OPTIONS: usize = 64;

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

/// Short flags that take no argument and are safe, checked letter by letter in `-avH`. `F` (a
/// per-directory merge rule) is checked apart; `D` (devices and specials) is not safe.
const SAFE_SHORT: &str = "avqcrRbulLkKHpEAXogtUNOJSnWxdmCzhiP468syI";

/// Always added after a project's own options: whoever runs rsync, a mirrored tree receives no
/// device node, no FIFO or socket, and no set-uid or set-gid bit.
pub const SAFETY_OPTIONS: [&str; 3] = ["--no-devices", "--no-specials", "--chmod=ug-s"];

/// Why an option that reads or writes through a path is refused when runs are not confined.
const NEEDS_CONFINEMENT: &str = "needs runs confined by the kernel (Landlock), which this host does not have: a symlink sent by the upstream could lead it outside the project";

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
    "times",
    "atimes",
    "open-noatime",
    "crtimes",
    "omit-dir-times",
    "omit-link-times",
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

/// `--no-X` forms of options that are not allowed themselves (turning them off is always safe).
const SAFE_NEGATIONS: &[&str] = &["no-devices", "no-specials", "no-D", "no-super"];

/// `rsync_options` as a client sends it. `delete_option` is the name the 2014 listing used.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RsyncOptionsInput {
    pub defaults: Option<Vec<String>>,
    pub basic: Option<Vec<String>>,
    #[serde(alias = "delete_option")]
    pub delete: Option<String>,
}

/// The stored, validated layers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// `confined`: runs are confined by the kernel, so options that name paths are allowed.
    pub fn from_input(input: &RsyncOptionsInput, confined: bool) -> Result<RsyncOptions, FieldError> {
        let base = RsyncOptions::default();
        let defaults = input.defaults.clone().unwrap_or(base.defaults);
        let basic = input.basic.clone().unwrap_or_default();
        let delete = input.delete.clone().filter(|d| !d.trim().is_empty());
        for (name, layer) in [("defaults", &defaults), ("basic", &basic)] {
            if layer.len() > MAX_OPTIONS {
                return Err(FieldError::new(
                    format!("rsync_options.{name}"),
                    format!("holds {} options; at most {MAX_OPTIONS}", layer.len()),
                ));
            }
        }
        for (i, opt) in defaults.iter().enumerate() {
            check_option(opt, confined).map_err(|m| FieldError::new(format!("rsync_options.defaults[{i}]"), m))?;
        }
        for (i, opt) in basic.iter().enumerate() {
            check_option(opt, confined).map_err(|m| FieldError::new(format!("rsync_options.basic[{i}]"), m))?;
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

    /// Checks stored options again (the rules may have changed since they were stored, or the host
    /// may have lost its confinement): the first refused option and why.
    pub fn recheck(&self, confined: bool) -> Result<(), String> {
        for opt in self.layered() {
            check_option(&opt, confined).map_err(|m| format!("option '{}': {m}", printable(&opt)))?;
        }
        Ok(())
    }
}

fn is_delete_option(opt: &str) -> bool {
    DELETE_OPTIONS.contains(&opt)
}

/// Shows an option in an error without control characters.
fn printable(s: &str) -> String {
    s.escape_debug().to_string()
}

/// An rsync daemon's source, the one form the master's pulls and the slaves' share:
/// `rsync://[user@]host:port/module/[path/]` with a port, else `[user@]host::module/[path/]`.
/// The host and module are typed by their callers and a user is a checked name: none can begin
/// with `-`.
pub fn daemon_source(
    user: Option<&str>,
    host: &crate::names::Host,
    port: Option<u16>,
    module: &str,
    path: Option<&Path>,
) -> String {
    let user = user.map(|u| format!("{u}@")).unwrap_or_default();
    let host = host.bracketed();
    let module = module.trim_end_matches('/');
    let path = path.map(|p| format!("{}/", p.display())).unwrap_or_default();
    match port {
        Some(port) => format!("rsync://{user}{host}:{port}/{module}/{path}"),
        None => format!("{user}{host}::{module}/{path}"),
    }
}

/// The whole argv after the program: the options, the [`SAFETY_OPTIONS`], `--stats`, then `--` so
/// that nothing after it (source, destination) can be read as an option.
pub fn rsync_argv(options: impl IntoIterator<Item = String>, source: String, dest: String) -> Vec<String> {
    let mut args: Vec<String> = options.into_iter().collect();
    args.extend(SAFETY_OPTIONS.iter().map(|s| (*s).to_owned()));
    args.push("--stats".into());
    args.push("--".into());
    args.push(source);
    args.push(dest);
    args
}

/// Checks one option; the error says why it is refused. `confined`: as for
/// [`RsyncOptions::from_input`].
pub fn check_option(opt: &str, confined: bool) -> Result<(), String> {
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
        if is_delete_option(opt) || (value.is_none() && SAFE_NEGATIONS.contains(&name)) {
            return Ok(());
        }
        if let Some(why) = privileged(name) {
            return Err(format!("'--{name}' {why}"));
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
                Some(rule) if !rule.is_empty() => check_filter_rule(rule, confined),
                _ => Err("'--filter' needs a value in the same item: '--filter=RULE'".into()),
            };
        }
        if PATH_VALUED.contains(&name) {
            return match value {
                Some(_) if !confined => Err(format!("'--{name}' {NEEDS_CONFINEMENT}")),
                Some(p) if !p.is_empty() => check_inside(name, p),
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
            if c == 'F' && confined {
                continue;
            }
            if !SAFE_SHORT.contains(c) {
                return Err(match c {
                    'e' => "'-e' (remote shell) runs a program and is not allowed".to_string(),
                    'F' => format!("'-F' (per-directory merge rules) {NEEDS_CONFINEMENT}"),
                    'D' => "'-D' would create device nodes and special files in the mirror".to_string(),
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

/// Options that give rsync powers over owners or devices: never for a mirror.
fn privileged(name: &str) -> Option<&'static str> {
    match name {
        "super" => Some("needs super-user powers and is not allowed"),
        "devices" | "specials" | "copy-devices" | "write-devices" => {
            Some("would put device nodes or special files in the mirror and is not allowed")
        }
        "chown" | "usermap" | "groupmap" => Some("maps file owners and is not allowed"),
        _ => None,
    }
}

/// `--chmod` may take permissions away or add ordinary ones, never set-uid or set-gid bits.
fn check_chmod(value: &str) -> Result<(), String> {
    for clause in value.split(',') {
        let clause = clause.trim_start_matches(['D', 'F']);
        let sets_special = match clause.find(['+', '=']) {
            Some(i) => clause[i..].contains('s'),
            // An octal mode: 4000 (set-uid) and 2000 (set-gid).
            None => u32::from_str_radix(clause, 8).is_ok_and(|m| m & 0o6000 != 0),
        };
        if sets_special {
            return Err(format!("'--chmod={value}' sets a set-uid or set-gid bit, which a mirror never receives"));
        }
    }
    Ok(())
}

fn check_value(name: &str, value: &str) -> Result<(), String> {
    if name == "chmod" {
        return check_chmod(value);
    }
    if name == "suffix" && value.contains('/') {
        return Err("'--suffix' must not contain '/'".into());
    }
    if name == "port" && value.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("'--port={value}' is not a port number"));
    }
    Ok(())
}

/// Filter rules that merge rules from a file read that file: only per-directory merges inside the
/// tree (`dir-merge`, `:`) are allowed, only with a plain file name, and only when runs are
/// confined (the merge file may be a symlink the upstream sent).
fn check_filter_rule(rule: &str, confined: bool) -> Result<(), String> {
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
    if is_dir_merge && !confined {
        return Err(format!("filter rule '{rule}' {NEEDS_CONFINEMENT}"));
    }
    Ok(())
}

/// A path option must stay inside the project: relative (to the project's dest), without `..`.
/// Confinement stops a run from writing anywhere else in any case; this refuses at once what could
/// only fail.
fn check_inside(name: &str, value: &str) -> Result<(), String> {
    let path = Path::new(value);
    if path.is_absolute() {
        return Err(format!("'--{name}={value}' must be a path relative to the project's dest"));
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

#[cfg(test)]
mod tests {
    use super::*;

    const CONFINED: bool = true;

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
            "--backup-dir=.old",
            "-avHF",
            "--no-devices",
            "--no-D",
            "--chmod=Du=rwx,go-w",
            "--chmod=ug-s",
            "--chmod=0644",
            "--partial-dir=.rsync-partial",
            "--filter=dir-merge .rsync-filter",
            "--filter=- *.tmp",
            "--port=8873",
            "--no-perms",
            "--chmod=Du=rwx",
            "-zP",
        ] {
            assert!(check_option(o, CONFINED).is_ok(), "{o}: {:?}", check_option(o, CONFINED));
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
            "--link-dest=/srv/mirror/prev",
            "--backup-dir=/srv/mirror/other/x",
            "--super",
            "--devices",
            "--specials",
            "--copy-devices",
            "-D",
            "-avD",
            "--chown=root:root",
            "--usermap=*:root",
            "--groupmap=*:0",
            "--chmod=u+s",
            "--chmod=Fg=rxs",
            "--chmod=4755",
            "--chmod=go-w,u+s",
        ] {
            assert!(check_option(o, CONFINED).is_err(), "{o:?} should be refused");
        }
    }

    #[test]
    fn path_options_and_merge_rules_need_confinement() {
        for o in [
            "--backup-dir=bk",
            "--temp-dir=.tmp",
            "--partial-dir=.p",
            "--copy-dest=cd",
            "-F",
            "-avHF",
            "--filter=dir-merge .rsync-filter",
            "--filter=: .f",
        ] {
            assert!(check_option(o, CONFINED).is_ok(), "{o}");
            let e = check_option(o, false).unwrap_err();
            assert!(e.contains("Landlock"), "{o}: {e}");
        }
        assert!(check_option("--exclude=*.iso", false).is_ok());
    }

    #[test]
    fn the_argv_ends_options_before_the_operands() {
        let argv = rsync_argv(vec!["-avH".to_owned()], "-e@host::m/".into(), "/srv/d/".into());
        assert_eq!(
            argv,
            ["-avH", "--no-devices", "--no-specials", "--chmod=ug-s", "--stats", "--", "-e@host::m/", "/srv/d/"]
        );
    }

    #[test]
    fn layers_keep_their_order_and_defaults() {
        let input = RsyncOptionsInput {
            defaults: None,
            basic: Some(vec!["--no-motd".into()]),
            delete: Some("--delete-after".into()),
        };
        let o = RsyncOptions::from_input(&input, CONFINED).unwrap();
        assert_eq!(o.layered(), vec!["-avH", "--no-motd", "--delete-after"]);
        let input = RsyncOptionsInput { defaults: Some(vec![]), basic: None, delete: Some(String::new()) };
        assert!(RsyncOptions::from_input(&input, CONFINED).unwrap().layered().is_empty());
    }

    #[test]
    fn layer_errors_name_the_item() {
        let input = RsyncOptionsInput { defaults: None, basic: Some(vec!["-a".into(), "-e".into()]), delete: None };
        assert_eq!(RsyncOptions::from_input(&input, CONFINED).unwrap_err().field, "rsync_options.basic[1]");
        let input = RsyncOptionsInput { defaults: None, basic: None, delete: Some("--rsh=x".into()) };
        assert_eq!(RsyncOptions::from_input(&input, CONFINED).unwrap_err().field, "rsync_options.delete");
        let input = RsyncOptionsInput { defaults: None, basic: Some(vec!["--delete".into()]), delete: None };
        assert_eq!(RsyncOptions::from_input(&input, CONFINED).unwrap_err().field, "rsync_options");
        let input = RsyncOptionsInput { defaults: None, basic: Some(vec!["-a".into(); MAX_OPTIONS + 1]), delete: None };
        assert_eq!(RsyncOptions::from_input(&input, CONFINED).unwrap_err().field, "rsync_options.basic");
    }
}
