//! Where a project's files may go: under the mirror root, after `..` and symlinks are resolved.

use std::path::{Path, PathBuf};

use mirror_common::FieldError;
use mirror_common::rsync_opts::normalize_lexically;
use mirror_runtime::fs::resolve_symlinks;

/// Resolves `dest` (absolute, or relative to the mirror root) to the absolute path rsync will
/// write to, and checks it lies strictly under `root` (itself already canonical). The longest
/// existing prefix is canonicalised, so a symlink inside the root that points out of it is caught.
pub async fn resolve_dest(root: &Path, dest: &str) -> Result<PathBuf, FieldError> {
    let err = |m: String| FieldError::new("dest", m);
    if dest.trim().is_empty() {
        return Err(err("must not be empty".into()));
    }
    if dest.chars().any(char::is_control) || dest.len() > 4096 {
        return Err(err("contains a control character or is too long".into()));
    }
    let joined = if Path::new(dest).is_absolute() { PathBuf::from(dest) } else { root.join(dest) };
    let normal = normalize_lexically(&joined).ok_or_else(|| err(format!("'{dest}' climbs above /")))?;
    let full = resolve_symlinks(&normal).await.ok_or_else(|| err(format!("'{dest}' has no existing parent")))?;
    if !full.starts_with(root) || full == root {
        return Err(err(format!(
            "'{dest}' resolves to {}, which is not inside the mirror root {}",
            full.display(),
            root.display()
        )));
    }
    let first = full.strip_prefix(root).ok().and_then(|rel| rel.components().next()).map(|c| c.as_os_str());
    if first.is_some_and(|c| c == mirror_runtime::fs::TEMP_DIR) {
        return Err(err(format!("{} holds the files runs are receiving", mirror_runtime::fs::TEMP_DIR)));
    }
    if first.is_some_and(|c| c == crate::cluster::snapshots::SNAPSHOT_DIR) {
        return Err(err(format!("{} holds the generations slaves pull", crate::cluster::snapshots::SNAPSHOT_DIR)));
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dest_stays_out_of_the_masters_own_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        assert_eq!(resolve_dest(&root, "pub/debian").await.unwrap(), root.join("pub/debian"));
        for own in [mirror_runtime::fs::TEMP_DIR, crate::cluster::snapshots::SNAPSHOT_DIR] {
            let e = resolve_dest(&root, &format!("{own}/debian")).await.unwrap_err();
            assert_eq!(e.field, "dest");
            assert!(e.message.contains(own), "{}", e.message);
        }
        assert!(resolve_dest(&root, "../elsewhere").await.is_err());
    }
}
