//! File-system checks the master and the slave share: where a write would really land, and the
//! permissions a configuration file that holds secrets must have.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

/// A configuration file that sets secrets (`secret_keys`: the ones it sets) must be readable by its
/// owner only, as rsync demands of its password files. The error says which key and what to do.
pub fn refuse_secrets_in_shared_file(path: &Path, secret_keys: &[&str], env_prefix: &str) -> Result<(), String> {
    let Some(key) = secret_keys.first() else { return Ok(()) };
    let mode = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let var = format!("{env_prefix}__{}", key.replace('.', "__").to_uppercase());
    Err(format!(
        "{key}: {} holds it but is readable by others (mode {:o}): chmod 600 it, or set {var} in the environment",
        path.display(),
        mode & 0o777
    ))
}

/// The first line of a file that holds one secret and is readable by its owner only (as rsync
/// demands of its password files). The error says what is wrong, to be prefixed with the key.
pub async fn read_secret_file(path: &Path) -> Result<mirror_common::Secret, String> {
    let meta = tokio::fs::metadata(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!("{} must not be readable by others (chmod 600)", path.display()));
    }
    let text = tokio::fs::read_to_string(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
    let secret = text.lines().next().unwrap_or("");
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(mirror_common::Secret::new(secret))
}

/// Beneath a tree's root (so on the same filesystem: a finished file is renamed into place), one
/// directory per project where rsync writes the files it is receiving (`--temp-dir`). Emptied
/// before each run, so a run that was killed leaves no half-written file in the served tree.
pub const TEMP_DIR: &str = ".mirror-sync-tmp";

/// Whether rsync's own options already name a temporary directory (then ours is not added).
pub fn names_temp_dir(options: &[String]) -> bool {
    options.iter().any(|o| o == "-T" || o.starts_with("--temp-dir"))
}

/// Removes what a killed run left in `temp`, then makes it anew (empty).
pub async fn empty_dir(temp: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_dir_all(temp).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    tokio::fs::create_dir_all(temp).await
}
