//! Runs of projects that are not rsync: a git project's `clone --mirror` or pruning fetch, a
//! command project's provider with its slots filled, the variables each gets, and the tree as it
//! was before and after (the figures rsync would have told, for the guards and the generation).

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use mirror_common::api::RunStats;
use mirror_common::kinds::{Params, Piece, Slot, pieces};

use crate::config::ProviderSettings;
use crate::db::projects::ProjectRow;

/// What a git run reads besides the system's libraries: its templates (a clone copies them) and
/// the certificates an https upstream is checked against.
const GIT_READ: &[&str] = &["/usr/share/git-core", "/etc/ssl/certs", "/usr/share/ca-certificates"];

/// [`GIT_READ`], and where this git keeps its helper programs and templates when it is not
/// Debian's (`git --exec-path`, and the `share/git-core` beside it): asked once, at start.
pub fn git_reads(git: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = GIT_READ.iter().map(PathBuf::from).collect();
    let asked = std::process::Command::new(git)
        .arg("--exec-path")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    if let Some(o) = asked.ok().filter(|o| o.status.success()) {
        let exec = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if exec.is_absolute() {
            out.extend(exec.parent().and_then(Path::parent).map(|prefix| prefix.join("share/git-core")));
            out.push(exec);
        }
    }
    out
}

/// git's own settings for every run, given on its command line so that no file of the system's
/// or of the tree can change them: only the network transports a git project may name (never
/// `file://`, `ext::` or a helper the tree names, not even through a redirect or a submodule), no
/// hooks, no `FETCH_HEAD` (the tree changes only with the upstream).
fn git_settings() -> Vec<String> {
    let mut out = Vec::new();
    for setting in [
        "protocol.allow=never",
        "protocol.http.allow=always",
        "protocol.https.allow=always",
        "protocol.git.allow=always",
        // Only with a key of the master's configuration (the project's `ssh_key`).
        "protocol.ssh.allow=always",
        "core.hooksPath=/dev/null",
        "core.fsmonitor=false",
        "credential.helper=",
        "gc.auto=0",
    ] {
        out.push("-c".to_owned());
        out.push(setting.to_owned());
    }
    out
}

/// The argv (after `git`) of a git project's run: `clone --mirror` into its empty tree the first
/// time (no `HEAD` yet), then a fetch of every reference that forces and prunes, so that a
/// force-push and a deleted branch are mirrored. The URL is given each time (the tree keeps none
/// that a change of `upstream_url` would leave behind) and always after `--`.
pub async fn git_argv(project: &ProjectRow) -> Option<Vec<String>> {
    let url = project.source.upstream_url.as_ref()?.to_string();
    let dest = project.dest.as_path();
    let mut args = git_settings();
    if tokio::fs::symlink_metadata(dest.join("HEAD")).await.is_err() {
        args.extend(["clone", "--mirror", "--progress", "--no-hardlinks", "--"].map(String::from));
        args.push(url);
        args.push(dest.display().to_string());
    } else {
        args.push(format!("--git-dir={}", dest.display()));
        let fetch = ["fetch", "--prune", "--force", "--verbose", "--progress", "--no-write-fetch-head", "--"];
        args.extend(fetch.map(String::from));
        args.push(url);
        args.push("+refs/*:refs/*".to_owned());
    }
    Some(args)
}

/// `GIT_SSH_COMMAND` for an `ssh://` upstream: ssh with no configuration file but these options,
/// the key alone, no prompt, and only the hosts `known_hosts` lists. git runs it through `sh -c`:
/// the paths (from the master's configuration, checked to hold no `'`) are single-quoted.
pub fn ssh_command(ssh: &Path, key: &crate::config::GitSshKey) -> String {
    format!(
        "'{}' -F /dev/null -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
         -o 'UserKnownHostsFile={}' -o GlobalKnownHostsFile=/dev/null",
        ssh.display(),
        key.key_file.display(),
        key.known_hosts.display()
    )
}

/// The variables of a git run: no terminal to ask a password on, no system or user settings.
pub fn git_env() -> Vec<(String, String)> {
    [("GIT_TERMINAL_PROMPT", "0"), ("GIT_CONFIG_NOSYSTEM", "1"), ("GIT_CONFIG_GLOBAL", "/dev/null")]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec()
}

/// What a run of a command project is given, besides its argv.
pub struct Given<'a> {
    pub project: &'a ProjectRow,
    pub log_file: &'a Path,
}

impl Given<'_> {
    fn slot(&self, slot: &Slot) -> Result<String, String> {
        let p = self.project;
        Ok(match slot {
            Slot::UpstreamUrl => p.source.upstream_url.as_ref().map(ToString::to_string).unwrap_or_default(),
            Slot::WorkingDir => p.dest.as_path().display().to_string(),
            Slot::MirrorName => p.id.to_string(),
            Slot::LogFile => self.log_file.display().to_string(),
            Slot::Param(name) => p
                .source
                .params
                .get(name)
                .ok_or_else(|| format!("the provider's slot {{params.{name}}} has no value: set params.{name}"))?
                .to_owned(),
        })
    }
}

/// The provider's argv (after its program) with each slot filled: a value goes into the one item
/// that holds its slot, whatever it holds (spaces, quotes, `;`), and never splits it. A value
/// that begins an item may not begin with `-` (it would read as an option).
pub fn provider_argv(provider: &ProviderSettings, given: &Given<'_>) -> Result<Vec<String>, String> {
    let mut argv = Vec::with_capacity(provider.command.len().saturating_sub(1));
    for item in provider.command.iter().skip(1) {
        let mut out = String::new();
        for (i, piece) in pieces(item)?.iter().enumerate() {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Slot(slot) => {
                    let value = given.slot(slot)?;
                    if i == 0 && value.starts_with('-') {
                        return Err(format!("a value for {slot:?} begins an argument with '-': refused"));
                    }
                    out.push_str(&value);
                }
            }
        }
        argv.push(out);
    }
    Ok(argv)
}

/// tunasync's variables of a run of `p` logging to `log_file`, for its provider and its hooks
/// alike: the scripts written for tunasync read them.
pub fn tunasync_env(p: &ProjectRow, log_file: &Path) -> Vec<(String, String)> {
    let log_dir = log_file.parent().unwrap_or(Path::new("/"));
    vec![
        ("TUNASYNC_MIRROR_NAME".to_owned(), p.id.to_string()),
        ("TUNASYNC_WORKING_DIR".to_owned(), p.dest.as_path().display().to_string()),
        ("TUNASYNC_UPSTREAM_URL".to_owned(), crate::read::views::upstream(p)),
        ("TUNASYNC_LOG_DIR".to_owned(), log_dir.display().to_string()),
        ("TUNASYNC_LOG_FILE".to_owned(), log_file.display().to_string()),
    ]
}

/// The variables of a command run: tunasync's (so that its scripts run unchanged), each parameter
/// as `MIRROR_PARAM_<NAME>`, and the provider's own.
pub fn provider_env(provider: &ProviderSettings, given: &Given<'_>) -> Vec<(String, String)> {
    let p = given.project;
    let mut env = tunasync_env(p, given.log_file);
    env.extend(p.source.params.iter().map(|(k, v)| (Params::env_name(k), v.to_owned())));
    env.extend(provider.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// One entry of a tree: its size, its modification time, and whether it is a regular file
/// (a directory has no size, and one whose time alone moved has not changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    size: u64,
    mtime_ns: i128,
    file: bool,
    dir: bool,
}

/// Every entry of a tree by its path below it (nothing followed).
#[derive(Debug, Default)]
pub struct Manifest(HashMap<OsString, Entry>);

impl Manifest {
    /// The tree beneath `root` (blocking). Unreadable directories are left out.
    pub fn of(root: &Path) -> Manifest {
        let mut entries = HashMap::new();
        let mut pending: Vec<PathBuf> = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let Ok(read) = std::fs::read_dir(&dir) else { continue };
            for entry in read.flatten() {
                let path = entry.path();
                let Ok(m) = std::fs::symlink_metadata(&path) else { continue };
                if m.is_dir() {
                    pending.push(path.clone());
                }
                let rel = path.strip_prefix(root).map(|r| r.as_os_str().to_owned()).unwrap_or_default();
                let mtime_ns = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
                let (file, dir) = (m.is_file(), m.is_dir());
                entries.insert(rel, Entry { size: if dir { 0 } else { m.len() }, mtime_ns, file, dir });
            }
        }
        Manifest(entries)
    }

    /// The figures rsync would have told of the change from `self` to `after`: the tree's
    /// entries, regular files and size; what was created, deleted, changed; the files written and
    /// their bytes.
    pub fn compare(&self, after: &Manifest) -> RunStats {
        let (mut created, mut written, mut bytes, mut changed) = (0u64, 0u64, 0u64, 0u64);
        for (path, now) in &after.0 {
            match self.0.get(path) {
                None => created += 1,
                // A directory's own time moves with every lock file made and removed in it.
                Some(was) if was == now || (now.dir && was.dir) => continue,
                Some(_) => changed += 1,
            }
            if now.file {
                written += 1;
                bytes += now.size;
            }
        }
        let deleted = self.0.keys().filter(|p| !after.0.contains_key(*p)).count() as u64;
        let files = after.0.values().filter(|e| e.file);
        RunStats {
            files_total: Some(after.0.len() as u64),
            regular_files: Some(files.clone().count() as u64),
            total_size: Some(files.map(|e| e.size).sum()),
            files_transferred: Some(written),
            bytes_transferred: Some(bytes),
            files_created: Some(created),
            files_deleted: Some(deleted),
            changes: Some(created + deleted + changed),
            ..RunStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn gits_own_directories_are_readable() {
        let reads = git_reads(Path::new("git"));
        assert!(reads.len() > GIT_READ.len(), "git --exec-path: {reads:?}");
    }

    fn provider(command: &[&str]) -> ProviderSettings {
        ProviderSettings {
            name: mirror_common::api::Name::from_static("p"),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            read: vec![],
            env: BTreeMap::new(),
        }
    }

    fn project(params: &[(&str, &str)]) -> ProjectRow {
        let mut p = crate::db::projects::sample();
        p.config.source.kind = mirror_common::kinds::Kind::Command;
        p.config.source.upstream_url = Some(mirror_common::kinds::UpstreamUrl::parse("https://h/x").unwrap());
        let map = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        p.config.source.params = Params::new(map).unwrap();
        p
    }

    #[test]
    fn each_slot_fills_one_item_and_never_splits_it() {
        let p = project(&[("depth", "1; rm -rf / 'q' \"q\""), ("flag", "-x")]);
        let given = Given { project: &p, log_file: Path::new("/l/1.log") };
        let argv = provider_argv(
            &provider(&["/usr/bin/lftp", "-c", "mirror {upstream_url} .", "--depth={params.depth}", "{mirror_name}"]),
            &given,
        )
        .unwrap();
        assert_eq!(argv, ["-c", "mirror https://h/x .", "--depth=1; rm -rf / 'q' \"q\"", "fedora"]);
        // A value that would begin an argument with '-' is refused; inside an item it is text.
        assert!(provider_argv(&provider(&["/bin/p", "{params.flag}"]), &given).is_err());
        assert_eq!(provider_argv(&provider(&["/bin/p", "v={params.flag}"]), &given).unwrap(), ["v=-x"]);
        assert!(provider_argv(&provider(&["/bin/p", "{params.none}"]), &given).is_err());
        let env = provider_env(&provider(&["/bin/p"]), &given);
        assert!(env.contains(&("MIRROR_PARAM_DEPTH".into(), "1; rm -rf / 'q' \"q\"".into())));
        assert!(env.contains(&("TUNASYNC_LOG_DIR".into(), "/l".into())));
    }

    #[test]
    fn a_tree_compared_before_and_after() {
        let dir = std::env::temp_dir().join(format!("mirror-manifest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("a"), b"12345").unwrap();
        std::fs::write(dir.join("d/b"), b"1").unwrap();
        let before = Manifest::of(&dir);
        assert_eq!(before.compare(&Manifest::of(&dir)).changes, Some(0));
        std::fs::remove_file(dir.join("d/b")).unwrap();
        std::fs::write(dir.join("c"), b"123").unwrap();
        let stats = before.compare(&Manifest::of(&dir));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!((stats.files_created, stats.files_deleted, stats.files_total), (Some(1), Some(1), Some(3)));
        assert_eq!((stats.regular_files, stats.total_size, stats.bytes_transferred), (Some(2), Some(8), Some(3)));
    }
}
