//! The one write path of a project: every change (add, update, schedule, enable, put, revert, an
//! import's entry, a `projects_dir` file) is applied by [`write`] and every removal by [`remove`],
//! inside the caller's transaction: the rules, the version and password rules, the commit. The
//! caller commits and then publishes what they return.

use mirror_common::names::ProjectId;
use mirror_common::project::ProjectConfig;

use super::KIND;
use super::rules::{check_hooks_role, check_source_role, check_targets_role, check_whole};
use crate::db::{self, Tx, projects::ProjectRow};
use crate::error::Error;
use crate::events::{Change, Committed};
use crate::service::history::{
    Meta, PASSWORD_REPLACED, StoredProject, carry_more_passwords, changed_fields, password_replaced,
};

/// Who writes: the API (refused on a project a file of `projects_dir` declares) or the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Api,
    Files,
}

/// What a write did.
#[derive(Debug)]
pub struct Written {
    /// The project as stored now.
    pub row: ProjectRow,
    /// `create`, `update`, or `None`: nothing changed, nothing written.
    pub action: Option<&'static str>,
    /// The configuration's fields that changed (`rsync_password` named, not shown).
    pub fields: Vec<String>,
    /// What to publish once the transaction is committed.
    pub changes: Vec<Change>,
}

fn not_found(id: &str) -> Error {
    Error::not_found("id", format!("no project with id '{}'", id.escape_debug()))
}

pub(super) fn store_error(e: sqlx::Error, id: &str) -> Error {
    if db::is_unique_violation(&e) {
        return Error::conflict("id", format!("a project with id '{id}' or the same dest already exists"));
    }
    e.into()
}

/// A project declared by a file of `projects_dir` is changed in its file, not through the API.
fn check_not_managed(p: &ProjectRow) -> Result<(), Error> {
    match &p.managed_file {
        Some(file) => Err(Error::conflict(
            "id",
            format!("project '{}' is declared by {file} in projects_dir: edit that file and reload", p.id),
        )),
        None => Ok(()),
    }
}

/// Refuses a dest that is, contains, or lies inside another project's.
async fn check_overlap(mut tx: &mut Tx, config: &ProjectConfig, own_id: Option<&str>) -> Result<(), Error> {
    let dest = config.dest.as_str();
    if let Some((id, _)) = db::projects::overlapping_dest(&mut tx, dest, own_id).await? {
        return Err(Error::conflict("dest", format!("{dest} overlaps the dest of project '{id}'")));
    }
    Ok(())
}

/// `depends_on` against the other projects, in the write's transaction: each it names exists and
/// is run (not a local source), and following them never leads back to this one.
async fn check_references(mut tx: &mut Tx, config: &ProjectConfig) -> Result<(), Error> {
    if config.depends_on.is_empty() {
        return Ok(());
    }
    let found = db::projects::kinds_of(&mut tx, &config.depends_on).await?;
    for (i, dep) in config.depends_on.iter().enumerate() {
        let why = match found.get(dep) {
            None => format!("no project with id '{dep}'"),
            Some(true) => format!("'{dep}' has a local source: it never runs, so nothing would follow it"),
            Some(false) => continue,
        };
        return Err(Error::field(format!("depends_on[{i}]"), why));
    }
    let mut graph = db::projects::dependency_graph(&mut tx).await?;
    graph.insert(config.id.clone(), config.depends_on.0.clone());
    if let Some(cycle) = mirror_common::depends::cycle_through(&graph, &config.id) {
        return Err(Error::field("depends_on", format!("would make a cycle: {cycle}")));
    }
    Ok(())
}

/// A project others depend on keeps its id: removing or renaming it is refused, naming them.
async fn check_no_dependents(mut tx: &mut Tx, id: &ProjectId, doing: &str) -> Result<(), Error> {
    let dependents = db::projects::dependents(&mut tx, id.as_str(), false).await?;
    if dependents.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = dependents.iter().map(|d| format!("'{d}'")).collect();
    Err(Error::conflict(
        "id",
        format!(
            "{} depend on '{id}': {doing} it would leave them naming nothing; change their depends_on first",
            names.join(", ")
        ),
    ))
}

/// Writes `new` (a whole configuration, its password, and the file that declares it) over `old`
/// (as read in `tx`; `None`: a new project, or one removed coming back). The change must be based
/// on the current version (`meta`); a write that changes nothing makes no new version and writes
/// nothing. A rename ends the old id's chain of versions with a tombstone.
pub async fn write(
    mut tx: &mut Tx,
    old: Option<&ProjectRow>,
    mut new: ProjectRow,
    meta: &Meta,
    scope: Scope,
) -> Result<Written, Error> {
    check_whole(&new.config, new.rsync_password.as_ref())?;
    check_targets_role(meta, old.map(|o| &o.targets), &new.targets)?;
    check_hooks_role(meta, old.map(|o| &o.hooks), &new.hooks)?;
    check_source_role(meta, old.map(|o| &o.source), &new.source)?;
    if let Some(fresh) = new.interval.as_mut() {
        if let Some(kept) = old.and_then(|o| o.interval.as_ref()) {
            fresh.keep_start_of(kept);
        }
        fresh.start_from_now = false;
    }
    carry_more_passwords(old, &mut new);
    let Some(old) = old else { return create(tx, new, meta).await };
    if scope == Scope::Api {
        check_not_managed(old)?;
    }
    meta.check(old.id.as_str(), old.version)?;
    // What the runs keep stays.
    new.created_at = old.created_at;
    new.last_fire_at = old.last_fire_at;
    new.generation = old.generation;
    new.version = old.version;
    let renamed = new.id != old.id;
    let replaced = password_replaced(old, &new);
    let (before, after) = (StoredProject::from(old), StoredProject::from(&new));
    if before == after && !replaced && new.managed_file == old.managed_file {
        return Ok(Written { row: old.clone(), action: None, fields: vec![], changes: vec![] });
    }
    if renamed {
        check_no_dependents(tx, &old.id, "renaming").await?;
    }
    if new.dest != old.dest {
        check_overlap(tx, &new.config, Some(old.id.as_str())).await?;
    }
    if renamed || new.depends_on != old.depends_on {
        check_references(tx, &new.config).await?;
    }
    let changed = before != after || replaced;
    if renamed {
        new.version = db::commits::latest_version(&mut tx, KIND, new.id.as_str()).await? + 1;
    } else if changed {
        new.version = old.version + 1;
    }
    if !db::projects::update(&mut tx, &old.id, &new).await.map_err(|e| store_error(e, &new.id))? {
        return Err(not_found(&old.id));
    }
    let mut committed = Vec::new();
    if renamed {
        let ended = meta.noting(&format!("renamed to {}", new.id));
        committed.push(commit(tx, &old.id, old.version + 1, &ended, None).await?);
    }
    if changed || renamed {
        let noted = if replaced { meta.noting(PASSWORD_REPLACED) } else { meta.clone() };
        committed.push(commit(tx, &new.id, new.version, &noted, Some(&new)).await?);
    }
    let mut fields = changed_fields(Some(&before.public_json()), Some(&after.public_json()));
    if replaced {
        fields.push("rsync_password".into());
    }
    if !changed {
        fields.push("managed_file".into());
    }
    let row = db::projects::get(&mut tx, &new.id).await?.ok_or_else(|| not_found(&new.id))?;
    let mut changes = Vec::new();
    if renamed {
        changes.push(Change::ProjectRenamed { from: old.id.clone(), to: row.id.clone() });
    }
    // The saved row before its commits: whoever hears a commit finds the project as it now is.
    changes.push(Change::ProjectSaved(row.clone()));
    changes.extend(committed.into_iter().map(Change::Committed));
    Ok(Written { row, action: Some("update"), fields, changes })
}

/// Writes a new project, or one removed coming back (its id continues its chain of versions).
async fn create(mut tx: &mut Tx, mut new: ProjectRow, meta: &Meta) -> Result<Written, Error> {
    if db::projects::get(&mut tx, &new.id).await?.is_some() {
        return Err(Error::conflict("id", format!("a project with id '{}' already exists", new.id)));
    }
    check_overlap(tx, &new.config, None).await?;
    check_references(tx, &new.config).await?;
    let latest = db::commits::latest_version(&mut tx, KIND, new.id.as_str()).await?;
    meta.check(new.id.as_str(), latest)?;
    new.version = latest + 1;
    db::projects::insert(&mut tx, &new).await.map_err(|e| store_error(e, &new.id))?;
    let committed = commit(tx, &new.id, new.version, meta, Some(&new)).await?;
    let changes = vec![Change::ProjectSaved(new.clone()), Change::Committed(committed)];
    Ok(Written { row: new, action: Some("create"), fields: vec![], changes })
}

/// Whether a removal checks that no project depends on the one removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependents {
    /// Refused while one does.
    Refuse,
    /// The caller has checked the references of the state it leads to (an import: what depends
    /// on the project now may not once the document is applied).
    Checked,
}

/// Removes `old` (as read in `tx`). Returns what to publish.
pub async fn remove(
    mut tx: &mut Tx,
    old: &ProjectRow,
    meta: &Meta,
    scope: Scope,
    dependents: Dependents,
) -> Result<Vec<Change>, Error> {
    if scope == Scope::Api {
        check_not_managed(old)?;
    }
    meta.check(old.id.as_str(), old.version)?;
    if dependents == Dependents::Refuse {
        check_no_dependents(tx, &old.id, "removing").await?;
    }
    db::projects::remove(&mut tx, &old.id).await?;
    let committed = commit(tx, &old.id, old.version + 1, meta, None).await?;
    Ok(vec![Change::ProjectRemoved { id: old.id.clone() }, Change::Committed(committed)])
}

/// Appends version `version` of project `id` (its configuration, or `None`: removed).
async fn commit(
    tx: &mut Tx,
    id: &ProjectId,
    version: i64,
    meta: &Meta,
    row: Option<&ProjectRow>,
) -> Result<Committed, Error> {
    let content =
        row.map(|r| serde_json::to_string(&StoredProject::from(r))).transpose().map_err(anyhow::Error::from)?;
    let c = db::commits::NewCommit {
        kind: KIND,
        key: id.as_str(),
        version,
        author: meta.author.as_ref().map(|a| a.as_str()),
        comment: meta.comment.as_deref(),
        content: content.as_deref(),
    };
    db::commits::append(&mut *tx, &c).await?;
    Ok(Committed {
        kind: KIND,
        key: id.to_string(),
        version,
        author: meta.author.as_ref().map(|a| a.to_string()),
        comment: meta.comment.clone(),
        removed: row.is_none(),
    })
}
