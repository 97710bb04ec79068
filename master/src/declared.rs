//! Declarative projects: `projects_dir` names a directory of YAML (or JSON) files, one project
//! each (the layout of `mirrorctl export DIR/`'s `projects/`). The master applies them at start and
//! again on SIGHUP, `POST /reload` or `mirrorctl reload` (tunasync's reload): an import with prune
//! of the projects the files manage. A project a file declares is changed in its file; the API
//! refuses writes to it.

use std::path::Path;

use mirror_common::api::{Name, ProjectDoc};

use crate::error::Error;
use crate::service::history::Meta;
use crate::service::transfer::Imported;
use crate::state::AppState;

/// The largest project file read.
const MAX_FILE: u64 = 1024 * 1024;
/// The most files read.
const MAX_FILES: usize = 100_000;

/// Every project file of `dir`, in name order, with its file name.
pub async fn read(dir: &Path) -> Result<Vec<(ProjectDoc, String)>, Error> {
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
        let path = dir.join(&name);
        let bad = |m: String| Error::field(format!("projects_dir: {name}"), m);
        let size = tokio::fs::metadata(&path).await.map_err(|e| bad(e.to_string()))?.len();
        if size > MAX_FILE {
            return Err(bad(format!("is larger than {MAX_FILE} bytes")));
        }
        let text = tokio::fs::read(&path).await.map_err(|e| bad(e.to_string()))?;
        let value: serde_json::Value =
            serde_norway::from_slice(&text).map_err(|e| bad(format!("not YAML or JSON: {e}")))?;
        let doc: ProjectDoc = mirror_common::from_json_value(value).map_err(|e| match e.field {
            Some(f) => bad(format!("{f}: {}", e.message)),
            None => bad(e.message),
        })?;
        out.push((doc, name));
    }
    Ok(out)
}

/// Applies `projects_dir` (when it is set): what the files declare, exactly. Errors name the file.
pub async fn reload(state: &AppState, author: Option<&Name>, why: &str) -> Result<Option<Imported>, Error> {
    let Some(dir) = &state.settings.projects_dir else { return Ok(None) };
    let declared = read(dir).await?;
    let files: Vec<String> = declared.iter().map(|(_, f)| f.clone()).collect();
    let meta = Meta { author: author.cloned(), comment: Some(why.to_owned()), based_on: None };
    let done = state.projects.apply_files(declared, &meta).await.map_err(|e| name_file(e, &files))?;
    tracing::info!(changes = done.changes.len(), unchanged = done.unchanged, "projects_dir applied");
    Ok(Some(done))
}

/// `projects[3].dest` becomes `projects_dir: debian.yaml: dest`.
fn name_file(e: Error, files: &[String]) -> Error {
    let of = |text: &str| -> Option<(String, String)> {
        let rest = text.strip_prefix("projects[")?;
        let (i, rest) = rest.split_once(']')?;
        let file = files.get(i.parse::<usize>().ok()?)?;
        Some((file.clone(), rest.trim_start_matches(['.', ' ']).to_owned()))
    };
    match e {
        Error::Field(mut f) => {
            if let Some((file, field)) = of(&f.field) {
                f.field = format!("projects_dir: {file}: {field}");
            }
            Error::Field(f)
        }
        Error::Conflict { field, message } => match of(&message) {
            Some((file, rest)) => Error::Conflict { field, message: format!("projects_dir: {file}: {rest}") },
            None => Error::Conflict { field, message },
        },
        other => other,
    }
}
