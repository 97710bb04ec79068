//! Declarative projects: `projects_dir` names a directory of YAML (or JSON) files, one project
//! each (the layout of `mirrorctl export DIR/`'s `projects/`). The master applies them at start and
//! again on SIGHUP, `POST /reload` or `mirrorctl reload` (tunasync's reload): an import with prune
//! of the projects the files manage. A project a file declares is changed in its file; the API
//! refuses writes to it.

use std::path::Path;

use mirror_common::api::{Name, ProjectDoc};
use mirror_common::document::Limits;

use crate::error::Error;
use crate::service::history::Meta;
use crate::service::transfer::Imported;
use crate::state::AppState;

/// The largest project file read.
const MAX_FILE: u64 = Limits::PROJECT_FILE.max_bytes as u64;
/// The most files read.
const MAX_FILES: usize = 100_000;

/// Every project file of `dir`, in name order: its name, and its document or why it was refused.
/// Only a directory that cannot be read is an error of the whole.
pub async fn read(dir: &Path) -> Result<Vec<(String, Result<ProjectDoc, Error>)>, Error> {
    let unreadable = |e: std::io::Error| Error::field("projects_dir", format!("{}: {e}", dir.display()));
    let mut entries = tokio::fs::read_dir(dir).await.map_err(unreadable)?;
    let mut files = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(unreadable)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let wanted = [".yaml", ".yml", ".json"].iter().any(|ext| name.ends_with(ext)) && !name.starts_with('.');
        if wanted && entry.file_type().await.is_ok_and(|t| t.is_file()) {
            files.push(name);
        }
        if files.len() > MAX_FILES {
            return Err(Error::field("projects_dir", format!("{} has more than {MAX_FILES} files", dir.display())));
        }
    }
    files.sort();
    let mut out = Vec::with_capacity(files.len());
    for name in files {
        let doc = read_file(&dir.join(&name), &name).await;
        out.push((name, doc));
    }
    Ok(out)
}

async fn read_file(path: &Path, name: &str) -> Result<ProjectDoc, Error> {
    let bad = |m: String| Error::field(format!("projects_dir: {name}"), m);
    let size = tokio::fs::metadata(path).await.map_err(|e| bad(e.to_string()))?.len();
    if size > MAX_FILE {
        return Err(bad(format!("is larger than {MAX_FILE} bytes (a project's file is a few kilobytes)")));
    }
    let text = tokio::fs::read(path).await.map_err(|e| bad(e.to_string()))?;
    let value = crate::config::document::read(text, Limits::PROJECT_FILE).await.map_err(|e| match e.place() {
        Some(place) => Error::field(format!("projects_dir: {name}: {place}"), e.to_string()),
        None => bad(e.to_string()),
    })?;
    mirror_common::from_json_value(value).map_err(|e| match e.field {
        Some(f) => Error::field(format!("projects_dir: {name}: {f}"), e.message),
        None => bad(e.message),
    })
}

/// What a file that cannot be applied does to the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBadFile {
    /// Nothing is applied; the error names the file (`POST /reload`: the operator is there to read it).
    Refuse,
    /// The file is skipped, named in the log, and the projects it declared stay as they were; the
    /// others are applied (at start and on SIGHUP: one mistake in a file must not stop every
    /// mirror, nor the master from starting).
    Skip,
}

/// Applies `projects_dir` (when it is set): what the files declare, exactly. Errors name the file.
pub async fn reload(
    state: &AppState,
    author: Option<&Name>,
    why: &str,
    on_bad: OnBadFile,
) -> Result<Option<Imported>, Error> {
    let Some(dir) = &state.settings.projects_dir else { return Ok(None) };
    let mut good = Vec::new();
    let mut skipped: Vec<(String, Error)> = Vec::new();
    for (name, doc) in read(dir).await? {
        match doc {
            Ok(doc) => good.push((doc, name)),
            Err(e) if on_bad == OnBadFile::Skip => skipped.push((name, e)),
            Err(e) => return Err(e),
        }
    }
    // The files are the master's own configuration: they may name targets.
    let meta = Meta { author: author.cloned(), comment: Some(why.to_owned()), based_on: None, root: true };
    // A file the projects refuse as a whole (a dest another project holds) is skipped in turn and
    // the rest tried again: at most once per file.
    loop {
        let files: Vec<String> = good.iter().map(|(_, f)| f.clone()).collect();
        let keep = skipped.iter().map(|(f, _)| f.clone()).collect();
        match state.projects.apply_files(good.clone(), keep, &meta).await {
            Ok(done) => {
                for (file, e) in &skipped {
                    tracing::error!(
                        file = %file, error = %e,
                        "projects_dir: this file is skipped; the projects it declared stay as they were"
                    );
                }
                tracing::info!(
                    changes = done.changes.len(),
                    unchanged = done.unchanged,
                    skipped = skipped.len(),
                    "projects_dir applied"
                );
                return Ok(Some(done));
            }
            Err(e) => {
                let (index, e) = name_file(e, &files);
                match index {
                    Some(i) if on_bad == OnBadFile::Skip && i < good.len() => {
                        let (_, file) = good.remove(i);
                        skipped.push((file, e));
                    }
                    _ => return Err(e),
                }
            }
        }
    }
}

/// An error about the `i`th project names its file: `projects_dir: debian.yaml: dest`; with the
/// index of the file.
fn name_file(e: Error, files: &[String]) -> (Option<usize>, Error) {
    let Error::InEntry { list: "projects", index, key, error } = e else { return (None, e.flattened()) };
    let Some(file) = files.get(index) else {
        return (None, Error::InEntry { list: "projects", index, key, error }.flattened());
    };
    let named = match *error {
        Error::Field(mut f) => {
            f.field = format!("projects_dir: {file}: {}", f.field);
            Error::Field(f)
        }
        Error::Conflict { field, message } => {
            Error::Conflict { field, message: format!("projects_dir: {file}: ({key}): {message}") }
        }
        other => other,
    };
    (Some(index), named)
}
