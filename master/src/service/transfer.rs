//! Configuration between masters (resourcesync): the whole configuration as one document
//! (`GET /export`), and an import (`POST /import`) that creates, updates and, with `prune`, removes
//! what the document does not name, all in one transaction, each change of a project a commit
//! authored by the importer. `dry_run` makes the same checks and returns the changes, then rolls
//! back.
//!
//! The kinds are applied slaves, users, then projects (none names another kind). Projects refer
//! to projects (`depends_on`): the document's are applied in dependency order, removals before
//! what they depend on, and a reference to a project that will not exist, or a cycle, refuses the
//! import, naming it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mirror_common::api::{ConfigDocument, ImportChange, PasswordField, ProjectDoc, SlaveDoc, SlaveToken, UserDoc};
use mirror_common::names::ProjectId;

use super::documents::{add_request, project_doc};
use super::history::{Meta, carried_password};
use super::projects::write::{self, Dependents, Scope};
use super::projects::{Projects, begin};
use crate::auth::new_token;
use crate::cluster::slave_name;
use crate::db::{self, projects::ProjectRow};
use crate::error::Error;
use crate::events::Change;

/// What a document names, of each kind it has: projects (with the file that declares each),
/// slaves, users (with the hash of the password each gives).
struct Wanted {
    projects: Option<Vec<(ProjectDoc, Option<String>)>>,
    slaves: Option<Vec<SlaveDoc>>,
    users: Option<Vec<(UserDoc, Option<String>)>>,
    /// Files whose projects stay as they are (skipped by a reload of `projects_dir`).
    keep_files: BTreeSet<String>,
}

/// What an import did (or would do).
#[derive(Debug, Default)]
pub struct Imported {
    pub changes: Vec<ImportChange>,
    pub unchanged: usize,
    pub slave_tokens: Vec<SlaveToken>,
}

impl Imported {
    /// The answer of `POST /import` (`method` "import") or `POST /reload`.
    pub fn report(self, method: &str, dry_run: bool) -> mirror_common::api::ImportReport {
        mirror_common::api::ImportReport {
            method: method.into(),
            success: true,
            dry_run,
            changes: self.changes,
            unchanged: self.unchanged,
            slave_tokens: self.slave_tokens,
        }
    }
}

fn change(kind: &str, key: &str, action: &str, fields: Vec<String>) -> ImportChange {
    ImportChange { kind: kind.into(), key: key.into(), action: action.into(), fields }
}

/// The references between projects once the import is applied: every `depends_on` names a project
/// that will exist and runs, and there is no cycle. Returns the order to apply the document's
/// projects in (each after what it depends on) and the removals in theirs (each before what it
/// depends on).
fn references<'a>(
    wanted: &[(ProjectRow, Option<PasswordField>)],
    existing: &BTreeMap<ProjectId, ProjectRow>,
    gone: Vec<&'a ProjectRow>,
) -> Result<(Vec<usize>, Vec<&'a ProjectRow>), Error> {
    let position: HashMap<&ProjectId, usize> = wanted.iter().enumerate().map(|(i, (r, _))| (&r.id, i)).collect();
    let gone_ids: BTreeSet<&ProjectId> = gone.iter().map(|r| &r.id).collect();
    // id -> (what it names, whether it has a local source), as it will be.
    let mut after: BTreeMap<&ProjectId, (&[ProjectId], bool)> = existing
        .values()
        .filter(|r| !gone_ids.contains(&r.id))
        .map(|r| (&r.id, (r.depends_on.as_slice(), r.rsync_host.is_none())))
        .collect();
    for (r, _) in wanted {
        after.insert(&r.id, (r.depends_on.as_slice(), r.rsync_host.is_none()));
    }
    for (id, (deps, _)) in &after {
        for (j, dep) in deps.iter().enumerate() {
            let why = match after.get(dep) {
                Some((_, false)) => continue,
                Some((_, true)) => format!("'{dep}' has a local source: it never runs"),
                None if gone_ids.contains(dep) => format!("'{dep}' is removed by this import"),
                None => format!("no project '{dep}' in the document or on this master"),
            };
            return Err(match position.get(id) {
                Some(i) => Error::field(format!("depends_on[{j}]"), why).in_entry("projects", *i, id),
                None => {
                    Error::conflict("projects", format!("'{id}' (not in the document, kept) depends on '{dep}': {why}"))
                }
            });
        }
    }
    let graph: mirror_common::depends::Graph =
        after.iter().map(|(id, (deps, _))| ((*id).clone(), deps.to_vec())).collect();
    let all = mirror_common::depends::dependency_order(&graph).map_err(|cycle| {
        let first = cycle.split(" -> ").filter_map(|n| position.iter().find(|(id, _)| id.as_str() == n)).next();
        let message = format!("a cycle: {cycle}");
        match first {
            Some((id, i)) => Error::field("depends_on", message).in_entry("projects", *i, id),
            None => Error::field("projects", message),
        }
    })?;
    let order = all.iter().filter_map(|id| position.get(id).copied()).collect();
    // Removals: dependents first.
    let gone_graph: mirror_common::depends::Graph =
        gone.iter().map(|r| (r.id.clone(), r.depends_on.0.clone())).collect();
    // (The stored projects have no cycle: each write checks it. Were there one, the order stays.)
    let Ok(mut gone_order) = mirror_common::depends::dependency_order(&gone_graph) else { return Ok((order, gone)) };
    gone_order.reverse();
    let by_id: HashMap<&ProjectId, &'a ProjectRow> = gone.iter().map(|r| (&r.id, *r)).collect();
    let gone = gone_order.iter().filter_map(|id| by_id.get(id).copied()).collect();
    Ok((order, gone))
}

impl Projects {
    /// `GET /export`: every project and slave.
    pub async fn export(&self) -> Result<ConfigDocument, Error> {
        let rows = db::projects::list(&self.db).await?;
        let slaves = db::slaves::list(&self.db).await?;
        let projects = rows
            .iter()
            .map(|r| {
                let more: Vec<bool> = r.more_passwords.iter().map(Option::is_some).collect();
                project_doc(r, r.rsync_password.is_some(), &more, &self.mirror_root)
            })
            .collect();
        let slaves = slaves
            .into_iter()
            .filter_map(|s| Some(SlaveDoc { hostname: s.hostname, port: u16::try_from(s.port).ok()? }))
            .collect();
        let users = db::users::list(&self.db)
            .await?
            .into_iter()
            .map(|u| UserDoc { username: u.username, role: u.role, password: Some(PasswordField::Set) })
            .collect();
        Ok(ConfigDocument { projects: Some(projects), slaves: Some(slaves), users: Some(users) })
    }

    /// `POST /import`.
    /// `users`: the document's users, each with the hash of the password it gives (hashed by the
    /// caller, off the transaction).
    pub async fn import(
        &self,
        doc: ConfigDocument,
        users: Option<Vec<(UserDoc, Option<String>)>>,
        prune: bool,
        dry_run: bool,
        meta: &Meta,
    ) -> Result<Imported, Error> {
        let projects = doc.projects.map(|ps| ps.into_iter().map(|p| (p, None)).collect());
        self.apply(
            Wanted { projects, slaves: doc.slaves, users, keep_files: BTreeSet::new() },
            Scope::Api,
            prune,
            dry_run,
            meta,
        )
        .await
    }

    /// The projects of `projects_dir` (each with its file's name): the projects the files manage
    /// become exactly these.
    /// `keep`: files skipped (unreadable, or refused): the projects they declared stay as they
    /// are, neither changed nor pruned.
    pub async fn apply_files(
        &self,
        declared: Vec<(ProjectDoc, String)>,
        keep: BTreeSet<String>,
        meta: &Meta,
    ) -> Result<Imported, Error> {
        let projects = declared.into_iter().map(|(p, f)| (p, Some(f))).collect();
        let wanted = Wanted { projects: Some(projects), slaves: None, users: None, keep_files: keep };
        self.apply(wanted, Scope::Files, true, false, meta).await
    }

    /// A project's document as a checked row (as `/add_project/` checks it).
    async fn wanted_row(&self, i: usize, p: &ProjectDoc, file: Option<&String>) -> Result<ProjectRow, Error> {
        let req = add_request(p).map_err(|e| e.in_entry("projects", i, &p.id))?;
        let more_passwords = super::projects::more_passwords_of(&req);
        let (config, password) = self.config_from(req).await.map_err(|e| e.in_entry("projects", i, &p.id))?;
        Ok(ProjectRow { managed_file: file.cloned(), more_passwords, ..ProjectRow::new(config, password) })
    }

    async fn apply(
        &self,
        Wanted { projects, slaves, users, keep_files }: Wanted,
        scope: Scope,
        prune: bool,
        dry_run: bool,
        meta: &Meta,
    ) -> Result<Imported, Error> {
        // Every project checked first, outside the transaction (paths, schedules: CPU and I/O).
        let mut wanted: Vec<(ProjectRow, Option<PasswordField>)> = Vec::new();
        let mut seen = BTreeSet::new();
        let has_projects = projects.is_some();
        for (i, (p, file)) in projects.iter().flatten().enumerate() {
            if !seen.insert(p.id.clone()) {
                return Err(Error::field("id", format!("'{}' is named twice", p.id)).in_entry("projects", i, &p.id));
            }
            // With `upstreams`, the first one's password stands for `rsync_password`.
            let first = p.upstreams.as_ref().and_then(|u| u.first()).map(|u| u.password.clone());
            let password = first.unwrap_or_else(|| p.rsync_password.clone());
            wanted.push((self.wanted_row(i, p, file.as_ref()).await?, password));
        }
        let mut slaves_wanted = BTreeSet::new();
        for (i, s) in slaves.iter().flatten().enumerate() {
            if s.port == 0 {
                return Err(Error::field(format!("slaves[{i}].port"), "must be 1-65535"));
            }
            if !slaves_wanted.insert((s.hostname.to_string(), s.port)) {
                return Err(Error::field(format!("slaves[{i}]"), format!("{}:{} is named twice", s.hostname, s.port)));
            }
        }

        let mut tx = begin(&self.db).await?;
        let mut out = Imported::default();
        let mut published: Vec<Change> = Vec::new();

        // Slaves.
        if slaves.is_some() {
            let existing: BTreeSet<(String, u16)> = db::transfer::slave_addresses(&mut tx)
                .await?
                .into_iter()
                .filter_map(|(h, p)| Some((h, u16::try_from(p).ok()?)))
                .collect();
            for (host, port) in slaves_wanted.difference(&existing) {
                let token = new_token();
                db::slaves::insert(&mut tx, host, *port, &token).await?;
                out.changes.push(change("slave", &slave_name(host, i64::from(*port)), "create", vec![]));
                if let Ok(hostname) = mirror_common::api::Host::parse(host.as_str()) {
                    out.slave_tokens.push(SlaveToken { hostname, port: *port, token: token.expose().to_owned() });
                }
            }
            out.unchanged += slaves_wanted.intersection(&existing).count();
            if prune {
                for (host, port) in existing.difference(&slaves_wanted) {
                    db::slaves::remove(&mut tx, host, *port).await?;
                    out.changes.push(change("slave", &slave_name(host, i64::from(*port)), "remove", vec![]));
                }
            }
        }

        // Users: created (with the password the document gives), their role set, and with prune
        // removed; never the importer, never the last root.
        if let Some(users) = &users {
            let existing: BTreeMap<String, mirror_common::api::Role> =
                db::transfer::user_roles(&mut tx).await?.into_iter().collect();
            let mut named = BTreeSet::new();
            for (i, (u, hash)) in users.iter().enumerate() {
                let name = u.username.as_str();
                if !named.insert(name.to_owned()) {
                    return Err(Error::field(format!("users[{i}].username"), format!("'{name}' is named twice")));
                }
                let content = serde_json::json!({"username": u.username, "role": u.role});
                let (action, fields, comment) = match existing.get(name) {
                    None => {
                        let hash = hash.as_deref().ok_or_else(|| {
                            Error::field(format!("users[{i}].password"), "a new user needs a password (not \"set\")")
                        })?;
                        db::users::insert(&mut tx, &u.username, hash, u.role).await?;
                        ("create", vec![], None)
                    }
                    Some(role) => {
                        let new_role = (*role != u.role).then_some(u.role);
                        if new_role.is_none() && hash.is_none() {
                            out.unchanged += 1;
                            continue;
                        }
                        match db::users::update(&mut tx, name, hash.as_deref(), new_role).await? {
                            db::users::UpdateOutcome::Updated => {}
                            _ => return Err(Error::conflict("role", format!("users[{i}]: '{name}' is the last root"))),
                        }
                        let mut fields: Vec<String> = new_role.map(|_| "role".to_owned()).into_iter().collect();
                        if hash.is_some() {
                            fields.push("password".into());
                        }
                        ("update", fields, hash.as_ref().map(|_| "password changed"))
                    }
                };
                let m = Meta { based_on: None, ..comment.map_or_else(|| meta.clone(), |c| meta.noting(c)) };
                let c = super::history::record(&mut tx, super::users::KIND, name, &m, Some(content)).await?;
                out.changes.push(change("user", name, action, fields));
                published.push(Change::UserChanged { username: u.username.clone() });
                published.push(Change::Committed(c));
            }
            if prune {
                for name in existing.keys().filter(|n| !named.contains(*n)) {
                    if meta.author.as_ref().is_some_and(|a| a.as_str() == name) {
                        return Err(Error::conflict("users", format!("the import would remove its own user '{name}'")));
                    }
                    match db::users::remove(&mut tx, name).await? {
                        db::users::RemoveOutcome::Removed => {}
                        _ => return Err(Error::conflict("users", format!("'{name}' is the last root: not removed"))),
                    }
                    let m = Meta { based_on: None, ..meta.clone() };
                    let c = super::history::record(&mut tx, super::users::KIND, name, &m, None).await?;
                    out.changes.push(change("user", name, "remove", vec![]));
                    if let Ok(n) = mirror_common::api::Name::parse(name.as_str()) {
                        published.push(Change::UserChanged { username: n });
                    }
                    published.push(Change::Committed(c));
                }
            }
        }

        // Projects.
        if has_projects {
            let existing: BTreeMap<ProjectId, ProjectRow> =
                db::projects::list_in(&mut tx).await?.into_iter().map(|r| (r.id.clone(), r)).collect();
            // Each side prunes only its own: the API's import leaves the files' projects alone,
            // the files leave alone what was made through the API.
            let ours = |r: &ProjectRow| {
                (scope == Scope::Files) == r.managed_file.is_some()
                    && !r.managed_file.as_ref().is_some_and(|f| keep_files.contains(f))
            };
            let gone: Vec<&ProjectRow> =
                if prune { existing.values().filter(|r| ours(r) && !seen.contains(&r.id)).collect() } else { vec![] };
            let (order, gone) = references(&wanted, &existing, gone)?;
            // The document is one change: each write is checked against it, not against a
            // version a header named.
            let meta = &Meta { based_on: None, ..meta.clone() };
            for old in gone {
                published.extend(write::remove(&mut tx, old, meta, scope, Dependents::Checked).await?);
                out.changes.push(change("project", old.id.as_str(), "remove", vec![]));
            }
            let mut wanted: Vec<Option<(ProjectRow, Option<PasswordField>)>> = wanted.into_iter().map(Some).collect();
            for i in order {
                let Some((mut row, password)) = wanted.get_mut(i).and_then(Option::take) else { continue };
                let id = row.id.clone();
                let old = existing.get(&id);
                if let Some(old) = old {
                    row.id_derived = old.id_derived;
                    if !matches!(password, Some(PasswordField::Value(_))) {
                        row.rsync_password = carried_password(old, &row.config);
                    }
                }
                let written =
                    write::write(&mut tx, old, row, meta, scope).await.map_err(|e| e.in_entry("projects", i, &id))?;
                match written.action {
                    None => out.unchanged += 1,
                    Some(action) => out.changes.push(change("project", id.as_str(), action, written.fields)),
                }
                published.extend(written.changes);
            }
        }

        if dry_run {
            tx.rollback().await?;
            out.slave_tokens.clear();
            return Ok(out);
        }
        tx.commit().await?;
        tracing::info!(changes = out.changes.len(), unchanged = out.unchanged, prune, "configuration imported");
        for c in published {
            self.events.publish(c);
        }
        Ok(out)
    }
}
