//! The projects service: the only place that applies the rules of a project (ids, names, hosts,
//! modules, dest, schedule, options), writes it in one transaction, and publishes the change. The
//! HTTP handlers parse, call one function here, and render. `rules.rs` turns what a request gives
//! into a checked [`ProjectConfig`]; `write.rs` is the one write path every change takes.

mod rules;

pub(in crate::service) use rules::more_passwords_of;
pub mod write;

use std::path::PathBuf;
use std::sync::Arc;

use mirror_common::Secret;
use mirror_common::api::{AddProject, UpdateProjectBasic};
use mirror_common::cron::CronOptions;
use mirror_common::names::ProjectId;

use crate::db::{self, Db, projects::ProjectRow};
use crate::error::Error;
use crate::events::Events;
use crate::service::history::{Meta, StoredProject, carried_password};
pub use write::{Scope, Written};

/// The kind of a project's commits.
pub const KIND: &str = "project";

/// What the projects service needs: the database, where trees may go, whether runs are confined
/// (which options are allowed), and whom to tell.
#[derive(Clone)]
pub struct Projects {
    pub db: Db,
    pub mirror_root: PathBuf,
    pub confined: bool,
    pub events: Arc<Events>,
    /// The `[[s3_credentials]]` entries: a target may name one only with an endpoint (and bucket)
    /// it lists.
    pub credentials: Arc<Vec<crate::config::S3Credentials>>,
    /// The `[[hooks]]` entries a project may name.
    pub hooks: Arc<Vec<crate::config::HookSettings>>,
    /// The `[[providers]]` entries a command project may name.
    pub providers: Arc<Vec<crate::config::ProviderSettings>>,
    /// The `[[git_ssh_keys]]` entries a git project may name.
    pub ssh_keys: Arc<Vec<crate::config::GitSshKey>>,
}

fn not_found(id: &str) -> Error {
    Error::not_found("id", format!("no project with id '{}'", id.escape_debug()))
}

/// A write transaction that takes the write lock at once, so that the checks it makes (an id
/// free, a dest not overlapping) still hold when it writes: no other write can come between.
pub(super) async fn begin(db: &Db) -> Result<crate::db::Tx, Error> {
    Ok(db.begin().await?)
}

impl Projects {
    /// Commits `tx` and tells who listens what `written` changed (`what`, for the log: "project
    /// added").
    async fn finish(&self, tx: crate::db::Tx, written: Written, what: &str) -> Result<ProjectRow, Error> {
        tx.commit().await?;
        if written.action.is_some() {
            tracing::info!(project.id = %written.row.id, fields = ?written.fields, "{what}");
        }
        for c in written.changes {
            self.events.publish(c);
        }
        Ok(written.row)
    }

    /// Reads `id` in `tx`, applies `change` to its configuration and password, and writes it.
    async fn change(
        &self,
        id: &ProjectId,
        meta: &Meta,
        what: &str,
        change: impl FnOnce(&mut ProjectRow),
    ) -> Result<ProjectRow, Error> {
        let mut tx = begin(&self.db).await?;
        let old = db::projects::get(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
        let mut row = old.clone();
        change(&mut row);
        let written = write::write(&mut tx, Some(&old), row, meta, Scope::Api).await?;
        self.finish(tx, written, what).await
    }

    /// `POST /add_project/`: the new project as stored.
    pub async fn add(&self, req: AddProject, meta: &Meta) -> Result<ProjectRow, Error> {
        let more_passwords = rules::more_passwords_of(&req);
        let (config, password) = self.config_from(req).await?;
        let mut tx = begin(&self.db).await?;
        let row = ProjectRow { more_passwords, ..ProjectRow::new(config, password) };
        let written = write::write(&mut tx, None, row, meta, Scope::Api).await?;
        self.finish(tx, written, "project added").await
    }

    /// `PUT /projects/{id}`: the whole configuration of `id`, created when there is none. Without
    /// `rsync_password` the password it has is kept (`""` removes it). Returns the row and
    /// whether it was created.
    pub async fn put(&self, id: &ProjectId, mut req: AddProject, meta: &Meta) -> Result<(ProjectRow, bool), Error> {
        if req.id.as_ref().is_some_and(|given| given != id) {
            return Err(Error::field("id", format!("the body names another project than the path ({id})")));
        }
        req.id = Some(id.clone());
        let keep_password = match &req.upstreams {
            Some(list) => list.first().is_none_or(|u| u.password.is_none()),
            None => req.rsync_password.is_none(),
        };
        let more_passwords = rules::more_passwords_of(&req);
        let (mut config, password) = self.config_from(req).await?;
        let mut tx = begin(&self.db).await?;
        let old = db::projects::get(&mut tx, id).await?;
        let mut row = ProjectRow::new(config.clone(), password);
        if let Some(old) = &old {
            config.id_derived = old.id_derived;
            let password = if keep_password { carried_password(old, &config) } else { row.rsync_password };
            row = ProjectRow { managed_file: old.managed_file.clone(), ..ProjectRow::new(config, password) };
        }
        row.more_passwords = more_passwords;
        let written = write::write(&mut tx, old.as_ref(), row, meta, Scope::Api).await?;
        let created = written.action == Some("create");
        let what = if created { "project added" } else { "project replaced" };
        Ok((self.finish(tx, written, what).await?, created))
    }

    /// `POST /update_project/basic/`: the project as stored after the change (its id may have
    /// followed a new name).
    pub async fn update_basic(&self, req: UpdateProjectBasic, meta: &Meta) -> Result<ProjectRow, Error> {
        let id = req.id.clone();
        let mut tx = begin(&self.db).await?;
        let old = db::projects::get(&mut tx, &id).await?.ok_or_else(|| not_found(&id))?;
        let mut config = old.config.clone();
        let password = self.updated(req, &mut config).await?;
        // As the 2014 API documents: an id derived from the name follows a new name.
        if old.id_derived && config.project != old.project {
            let new_id = rules::derived_id(
                &config.project,
                "cannot serve as the id ([A-Za-z0-9._-]+) this project's id follows",
            )?;
            if db::projects::get(&mut tx, &new_id).await?.is_some() {
                return Err(Error::conflict(
                    "project",
                    format!("renaming would change the id to '{}', which exists", config.project),
                ));
            }
            config.id = new_id;
        }
        let password = match password {
            Some(p) => p,
            None => carried_password(&old, &config),
        };
        let row = ProjectRow { config, rsync_password: password, ..old.clone() };
        let written = write::write(&mut tx, Some(&old), row, meta, Scope::Api).await?;
        self.finish(tx, written, "project updated").await
    }

    /// `POST /update_project/schedule/`: replaces the whole schedule (none: manual runs only).
    /// Field errors name the fields as the flat 2014 payload does (`minute`, not
    /// `cron_options.minute`).
    pub async fn replace_schedule(&self, id: &ProjectId, opts: CronOptions, meta: &Meta) -> Result<ProjectRow, Error> {
        let spec = rules::schedule_from(Some(opts)).await.map_err(|e| match e {
            Error::Field(mut f) => {
                f.field = f.field.strip_prefix("cron_options.").map(str::to_owned).unwrap_or(f.field);
                Error::Field(f)
            }
            other => other,
        })?;
        // The 2014 call knows cron only: it replaces an interval schedule too.
        self.change(id, meta, "schedule replaced", |row| {
            row.schedule = spec;
            row.interval = None;
        })
        .await
    }

    /// `enable_project` / `disable_project`.
    pub async fn set_enabled(&self, id: &ProjectId, enabled: bool, meta: &Meta) -> Result<ProjectRow, Error> {
        let what = if enabled { "project enabled" } else { "project disabled" };
        self.change(id, meta, what, |row| {
            row.enabled = enabled;
        })
        .await
    }

    /// `POST /remove_project/`: the project, its history and its live schedule go; a run of it
    /// that is going is stopped.
    pub async fn remove(&self, id: &ProjectId, meta: &Meta) -> Result<(), Error> {
        let mut tx = begin(&self.db).await?;
        let old = db::projects::get(&mut tx, id).await?.ok_or_else(|| not_found(id))?;
        let changes = write::remove(&mut tx, &old, meta, Scope::Api, write::Dependents::Refuse).await?;
        tx.commit().await?;
        tracing::info!(project.id = %id, "project removed");
        for c in changes {
            self.events.publish(c);
        }
        Ok(())
    }

    /// `POST /projects/{id}/revert`: a new version of `id` with the configuration of `version`; a
    /// removed project comes back (its runs and generations do not).
    pub async fn revert(
        &self,
        id: &ProjectId,
        version: i64,
        password: Option<Secret>,
        meta: &Meta,
    ) -> Result<ProjectRow, Error> {
        let password = rules::check_password(password)?;
        let mut meta = meta.clone();
        meta.comment.get_or_insert_with(|| format!("revert to version {version}"));
        let mut tx = begin(&self.db).await?;
        let target = db::commits::get(&mut tx, KIND, id.as_str(), version)
            .await?
            .ok_or_else(|| Error::not_found("version", format!("{id} has no version {version}")))?;
        let content = target
            .content
            .ok_or_else(|| Error::field("version", format!("version {version} of {id} is its removal")))?;
        let stored: StoredProject = serde_json::from_str(&content).map_err(anyhow::Error::from)?;
        let mut config = stored.config;
        // The tree's place is checked again: the mirror root may have changed since.
        config.dest = self.dest(config.dest.as_str()).await?;
        config.id = id.clone();
        let old = db::projects::get(&mut tx, id).await?;
        // A version keeps no password: the one given, else the project's own, if the version had one.
        let password = match (stored.rsync_password_set, password) {
            (false, _) => None,
            (true, Some(p)) => Some(p),
            (true, None) => Some(old.as_ref().and_then(|o| carried_password(o, &config)).ok_or_else(|| {
                Error::field(
                    "rsync_password",
                    format!("version {version} had an rsync_password, which versions do not keep: give it"),
                )
            })?),
        };
        let row = match &old {
            Some(o) => ProjectRow { config, rsync_password: password, ..o.clone() },
            None => ProjectRow::new(config, password),
        };
        let written = write::write(&mut tx, old.as_ref(), row, &meta, Scope::Api).await?;
        self.finish(tx, written, &format!("project reverted to version {version}")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Change, Listener};
    use std::sync::Mutex;

    /// Remembers every change it hears.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Listener for Recorder {
        fn changed(&self, change: &Change) {
            let text = match change {
                Change::ProjectSaved(row) => format!("saved {} enabled={}", row.id, row.enabled),
                Change::ProjectRemoved { id } => format!("removed {id}"),
                Change::ProjectRenamed { from, to } => format!("renamed {from} {to}"),
                // Commits have their own tests (tests/tests/history.rs).
                Change::Committed(_) => return,
                other => format!("{other:?}"),
            };
            self.0.lock().unwrap().push(text);
        }
    }

    async fn service(dir: &std::path::Path) -> (Projects, Arc<Recorder>) {
        let db = crate::db::connect(&dir.join("t.db")).await.unwrap();
        let root = dir.join("mirror");
        std::fs::create_dir_all(&root).unwrap();
        let events = Arc::new(Events::default());
        let recorder = Arc::new(Recorder::default());
        events.subscribe(recorder.clone());
        let root = std::fs::canonicalize(root).unwrap();
        (
            Projects {
                db,
                mirror_root: root,
                confined: true,
                events,
                credentials: Default::default(),
                hooks: Default::default(),
                providers: Default::default(),
                ssh_keys: Default::default(),
            },
            recorder,
        )
    }

    fn add(name: &str, dest: &str) -> AddProject {
        serde_json::from_value(serde_json::json!({
            "project": name, "rsync_host": "rsync.example.org", "rsync_module": "m", "dest": dest,
            "cron_options": {"minute": "*/5"},
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn writes_are_checked_in_their_transaction_and_published_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (projects, heard) = service(dir.path()).await;
        let row = projects.add(add("fedora", "fedora"), &Meta::default()).await.unwrap();
        assert_eq!(row.dest, projects.mirror_root.join("fedora").to_str().unwrap());
        assert!(matches!(
            projects.add(add("fedora", "other"), &Meta::default()).await,
            Err(Error::Conflict { field: Some("id"), .. })
        ));
        assert!(matches!(
            projects.add(add("inner", "fedora/x"), &Meta::default()).await,
            Err(Error::Conflict { field: Some("dest"), .. })
        ));
        // Two adds of the same id at once: exactly one wins.
        let none = Meta::default();
        let (a, b) =
            tokio::join!(projects.add(add("twin", "twin-a"), &none), projects.add(add("twin", "twin-b"), &none));
        assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1);
        projects.set_enabled(&ProjectId::from_static("fedora"), false, &Meta::default()).await.unwrap();
        let rename: UpdateProjectBasic =
            serde_json::from_value(serde_json::json!({"id": "fedora", "project": "fedora2"})).unwrap();
        assert_eq!(projects.update_basic(rename, &Meta::default()).await.unwrap().id, "fedora2");
        projects.remove(&ProjectId::from_static("fedora2"), &Meta::default()).await.unwrap();
        assert!(matches!(
            projects.remove(&ProjectId::from_static("fedora2"), &Meta::default()).await,
            Err(Error::NotFound { .. })
        ));
        let heard = heard.0.lock().unwrap().clone();
        assert_eq!(
            heard,
            [
                "saved fedora enabled=true",
                "saved twin enabled=true",
                "saved fedora enabled=false",
                "renamed fedora fedora2",
                "saved fedora2 enabled=false",
                "removed fedora2",
            ]
        );
    }

    #[tokio::test]
    async fn a_schedule_error_names_the_flat_field() {
        let dir = tempfile::tempdir().unwrap();
        let (projects, _) = service(dir.path()).await;
        projects.add(add("debian", "debian"), &Meta::default()).await.unwrap();
        let opts: CronOptions = serde_json::from_value(serde_json::json!({"minute": "99"})).unwrap();
        match projects.replace_schedule(&ProjectId::from_static("debian"), opts, &Meta::default()).await {
            Err(Error::Field(f)) => assert_eq!(f.field, "minute"),
            other => panic!("{other:?}"),
        }
        let none: CronOptions = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(
            projects
                .replace_schedule(&ProjectId::from_static("debian"), none, &Meta::default())
                .await
                .unwrap()
                .schedule,
            None
        );
    }
}
