//! Publishing a staged generation: one symlink swap, so that a reader sees the old tree or the new
//! one, never a mix; the generations no reader can be in are removed.

use std::path::{Path, PathBuf};

use mirror_common::time::Timestamp;

use crate::now;

/// Points `link` at `target` by renaming a new symlink over it; then removes the generations
/// older than the one it pointed at before (readers may still be in that one).
pub(crate) async fn flip(link: &Path, target: &Path, gens: &Path, generation: i64) -> std::io::Result<Timestamp> {
    let parent = link.parent().ok_or_else(|| std::io::Error::other("no parent directory"))?;
    tokio::fs::create_dir_all(parent).await?;
    let name = link.file_name().ok_or_else(|| std::io::Error::other("no name"))?.to_string_lossy();
    let tmp = parent.join(format!(".{name}.flip-{generation}"));
    let _ = tokio::fs::remove_file(&tmp).await;
    tokio::fs::symlink(target, &tmp).await?;
    let previous = match tokio::fs::symlink_metadata(link).await {
        Ok(m) if m.is_symlink() => {
            let previous = tokio::fs::read_link(link).await.ok();
            tokio::fs::rename(&tmp, link).await?;
            previous
        }
        // A tree served before this project flipped: the link and the tree swap places in one
        // step, then the tree is kept as the previous generation.
        Ok(m) if m.is_dir() => {
            let aside = gens.join("0");
            let _ = tokio::fs::remove_dir_all(&aside).await;
            match exchange(&tmp, link).await {
                Ok(()) => tokio::fs::rename(&tmp, &aside).await?,
                // A file system (or kernel) without RENAME_EXCHANGE: moved aside first, the one moment
                // without a tree, once per project.
                Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EINVAL | nix::libc::ENOSYS)) => {
                    tokio::fs::rename(link, &aside).await?;
                    tokio::fs::rename(&tmp, link).await?;
                }
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(e);
                }
            }
            Some(aside)
        }
        _ => {
            tokio::fs::rename(&tmp, link).await?;
            None
        }
    };
    let flipped_at = now();
    let (gens, keep) = (gens.to_owned(), [Some(target.to_owned()), previous]);
    tokio::task::spawn_blocking(move || {
        for entry in std::fs::read_dir(&gens).into_iter().flatten().flatten() {
            let p = entry.path();
            // A newer generation, staged or being pulled (`<n>.partial`), is not ours to remove.
            let number = p.file_name().and_then(|n| n.to_str()).map(|n| n.trim_end_matches(".partial"));
            let staged_later = number.and_then(|n| n.parse::<i64>().ok()).is_some_and(|n| n > generation);
            if !keep.iter().flatten().any(|k| *k == p) && !staged_later {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    });
    Ok(flipped_at)
}

/// Swaps what two paths name in one step (`renameat2(RENAME_EXCHANGE)`): a reader of either
/// sees the one or the other, never nothing.
async fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let (a, b) = (a.to_owned(), b.to_owned());
    tokio::task::spawn_blocking(move || {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        renameat2(AT_FDCWD, &a, AT_FDCWD, &b, RenameFlags::RENAME_EXCHANGE).map_err(std::io::Error::from)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The generation directory `link` (a project's path) points at, when it is one of `gens`.
pub(crate) async fn served_generation_dir(link: &Path, gens: &Path) -> Option<PathBuf> {
    let target = tokio::fs::read_link(link).await.ok()?;
    (target.starts_with(gens) && tokio::fs::metadata(&target).await.is_ok_and(|m| m.is_dir())).then_some(target)
}
