//! The local side of a push: which files of a project's tree a target gets, under which keys.
//! The tree is written by an upstream: symlinks and special files are never followed or sent
//! (a symlink to `/etc/shadow` must not become a public object), names that cannot be keys are
//! skipped and reported.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use regex::Regex;
use sha2::{Digest, Sha256};

use mirror_common::targets::{TargetSpec, compile_filter};

/// A tree holds at most this many files for a push; a larger one fails the push, saying so.
pub const MAX_FILES: usize = 10_000_000;
/// At most this many skipped names are reported in a push's message.
const REPORTED: usize = 5;

/// A target's view of the tree: its prefixes (as directory prefixes) and filters.
pub struct Selection {
    pub source_prefix: String,
    pub target_prefix: String,
    filter: Option<Regex>,
    exclude: Option<Regex>,
}

fn as_dir(p: &str) -> String {
    if p.is_empty() || p.ends_with('/') { p.to_owned() } else { format!("{p}/") }
}

impl Selection {
    pub fn of(spec: &TargetSpec) -> Result<Selection, String> {
        let compile = |re: &Option<String>| re.as_deref().map(compile_filter).transpose();
        Ok(Selection {
            source_prefix: as_dir(&spec.source_prefix),
            target_prefix: as_dir(&spec.target_prefix),
            filter: compile(&spec.source_filter)?,
            exclude: compile(&spec.source_exclude)?,
        })
    }

    /// The key of a file at `rel` (relative to the tree), `None` when the target does not get it.
    pub fn key_of(&self, rel: &str) -> Option<String> {
        let inside = rel.strip_prefix(self.source_prefix.as_str())?;
        if self.filter.as_ref().is_some_and(|f| !f.is_match(rel))
            || self.exclude.as_ref().is_some_and(|x| x.is_match(rel))
        {
            return None;
        }
        Some(format!("{}{inside}", self.target_prefix))
    }
}

/// A file the target gets.
#[derive(Debug, Clone)]
pub struct Local {
    pub key: String,
    /// The tree it is in, and its path relative to it.
    pub root: Arc<Path>,
    pub rel: String,
    pub size: u64,
    /// The inode the walk saw: the file read must be that one.
    pub ino: u64,
    /// size:inode:ctime: any write to the file changes it.
    pub stamp: String,
}

impl Local {
    pub fn new(root: &Arc<Path>, rel: String, key: String, meta: &std::fs::Metadata) -> Local {
        Local { key, root: Arc::clone(root), rel, size: meta.len(), ino: meta.ino(), stamp: stamp(meta) }
    }

    /// Opens the file for reading (blocking) as the walk saw it, or fails: beneath its tree only,
    /// following no symlink on the way (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), a
    /// regular file, and the same inode. An upstream (or a local writer) that swaps a file or a
    /// directory for a symlink between the walk and the read gets an error, never the target
    /// of the symlink (`/etc/shadow` must not become a public object).
    pub fn open(&self) -> std::io::Result<std::fs::File> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let dir = rustix::fs::open(&*self.root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        let fd = rustix::fs::openat2(
            &dir,
            self.rel.as_str(),
            // NONBLOCK: a FIFO put in the file's place must not stall the push on its open.
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )?;
        let file = std::fs::File::from(fd);
        let meta = file.metadata()?;
        if !meta.is_file() || meta.ino() != self.ino {
            return Err(std::io::Error::other("it was replaced since the tree was walked: not read"));
        }
        Ok(file)
    }
}

pub fn stamp(m: &std::fs::Metadata) -> String {
    format!("{}:{}:{}.{}", m.len(), m.ino(), m.ctime(), m.ctime_nsec())
}

#[derive(Debug, Default)]
pub struct Walked {
    pub files: Vec<Local>,
    pub skipped: u64,
    pub skipped_names: Vec<String>,
}

impl Walked {
    fn skip(&mut self, what: String) {
        self.skipped += 1;
        if self.skipped_names.len() < REPORTED {
            self.skipped_names.push(what);
        }
    }
}

/// A key must be valid UTF-8 without control characters (S3 and its clients mangle them).
fn usable(name: &std::ffi::OsStr) -> Option<&str> {
    name.to_str().filter(|s| !s.chars().any(char::is_control))
}

/// Walks `root` (blocking: run it off the async workers). A missing root is an empty tree.
pub fn walk(root: &Path, sel: &Selection) -> Result<Walked, String> {
    let mut out = Walked::default();
    let tree: Arc<Path> = Arc::from(root);
    let mut dirs = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel_dir)) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && rel_dir.is_empty() => return Ok(out),
            Err(e) => return Err(format!("reading {}: {e}", dir.display())),
        };
        for entry in entries {
            let entry = entry.map_err(|e| format!("reading {}: {e}", dir.display()))?;
            let name = entry.file_name();
            let Some(name) = usable(&name) else {
                out.skip(format!("{rel_dir}{} (not a usable key)", name.to_string_lossy().escape_debug()));
                continue;
            };
            let rel = format!("{rel_dir}{name}");
            // Not followed: the entry itself.
            let meta = match entry.path().symlink_metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("reading {rel}: {e}")),
            };
            if meta.is_dir() {
                dirs.push((entry.path(), format!("{rel}/")));
            } else if meta.is_file() {
                if let Some(key) = sel.key_of(&rel) {
                    if out.files.len() >= MAX_FILES {
                        return Err(format!("the tree has more than {MAX_FILES} files"));
                    }
                    out.files.push(Local::new(&tree, rel, key, &meta));
                }
            } else if sel.key_of(&rel).is_some() {
                out.skip(format!("{rel} (a symlink or special file)"));
            }
        }
    }
    out.files.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Lowercase hex of `bytes` (a SHA-256 as S3 metadata and the master's memory keep it).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The file's SHA-256 (hex) and its stamp read before hashing (blocking), read as
/// [`Local::open`] opens it.
pub fn hash(local: &Local) -> std::io::Result<(String, String)> {
    let mut file = local.open()?;
    let meta = file.metadata()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok((hex(&hasher.finalize()), stamp(&meta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> TargetSpec {
        let mut base = serde_json::json!({"name": "t", "endpoint": "http://h", "bucket": "bkt", "credentials": "c"});
        if let (Some(b), Some(v)) = (base.as_object_mut(), v.as_object()) {
            b.extend(v.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn prefixes_and_filters_map_paths_to_keys() {
        let s = Selection::of(&spec(serde_json::json!({
            "source_prefix": "pool", "target_prefix": "debian", "source_filter": "\\.deb$", "source_exclude": "/old/"
        })))
        .unwrap();
        assert_eq!(s.key_of("pool/main/a.deb").as_deref(), Some("debian/main/a.deb"));
        assert_eq!(s.key_of("pool/main/a.dsc"), None);
        assert_eq!(s.key_of("pool/old/a.deb"), None);
        assert_eq!(s.key_of("dists/a.deb"), None);
        assert_eq!(s.key_of("poolside/a.deb"), None);
        let s = Selection::of(&spec(serde_json::json!({}))).unwrap();
        assert_eq!(s.key_of("a b/ü.txt").as_deref(), Some("a b/ü.txt"));
    }

    #[test]
    fn symlinks_are_never_followed_and_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d/e")).unwrap();
        std::fs::write(dir.path().join("d/e/f.txt"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("leak")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("etc")).unwrap();
        let w = walk(dir.path(), &Selection::of(&spec(serde_json::json!({}))).unwrap()).unwrap();
        let keys: Vec<&str> = w.files.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["d/e/f.txt"]);
        assert_eq!(w.skipped, 2);
    }
}
