//! The users service: names and passwords checked, argon2 hashes made off the async workers
//! (at most as many at once as the limiter lets), the last root kept, and every change published so
//! that cached logins and tokens of the user stop working.

use std::sync::Arc;

use mirror_common::Secret;
use mirror_common::api::{Name, Role, UpdateUser, UserView};

use crate::auth::{Principal, hash_password};
use crate::db::{self, Db, users::RemoveOutcome, users::UpdateOutcome};
use crate::error::Error;
use crate::events::{Change, Events};
use crate::service::history::{Meta, record};

/// The kind of a user's commits: its name and role (never its password).
pub const KIND: &str = "user";

fn content(username: &Name, role: Role) -> serde_json::Value {
    serde_json::json!({"username": username, "role": role})
}

pub struct Users {
    pub db: Db,
    /// Caps concurrent argon2 work (shared with the logins' verifications).
    pub hasher: Arc<crate::auth::Hashers>,
    pub events: Arc<Events>,
}

pub(crate) fn check_password(password: &Secret) -> Result<(), Error> {
    let p = password.expose();
    if p.is_empty() || p.len() > 1024 || p.contains('\0') {
        return Err(Error::field("password", "must be 1 to 1024 bytes, without NUL"));
    }
    Ok(())
}

fn no_user(username: &str) -> Error {
    Error::not_found("username", format!("no user '{}'", username.escape_debug()))
}

impl Users {
    /// Creates a user; a duplicate name is a conflict.
    pub async fn create(&self, username: &Name, password: Secret, role: Role, meta: &Meta) -> Result<(), Error> {
        check_password(&password)?;
        let hash = hash_password(&password, &self.hasher).await?;
        let mut tx = self.db.begin().await?;
        db::users::insert(&mut tx, username, &hash, role).await.map_err(|e| {
            if db::is_unique_violation(&e) {
                Error::conflict("username", format!("user '{username}' already exists"))
            } else {
                e.into()
            }
        })?;
        let committed = record(&mut tx, KIND, username.as_str(), meta, Some(content(username, role))).await?;
        tx.commit().await?;
        // A user of the same name removed earlier may still have a cached login.
        self.events.publish(Change::UserChanged { username: username.clone() });
        self.events.publish(Change::Committed(committed));
        tracing::info!(user.name = %username, user.role = role.as_str(), "user created");
        Ok(())
    }

    /// A root changes anyone's password or role; a user changes its own password. Either way the
    /// user's tokens and cached logins stop working.
    pub async fn update(&self, caller: &Principal, req: &UpdateUser, meta: &Meta) -> Result<(), Error> {
        if caller.role != Role::Root {
            if req.username != caller.username {
                return Err(Error::Forbidden("a user may change only its own password"));
            }
            if req.role.is_some() {
                return Err(Error::Forbidden("changing a role needs the root role"));
            }
        }
        if req.password.is_none() && req.role.is_none() {
            return Err(Error::field("password", "give a new password, a new role, or both"));
        }
        // Logged in with Basic, the caller has just given the password; with a token, it must.
        if req.password.is_some() && req.username == caller.username && caller.token_expires.is_some() {
            self.check_current(&req.username, req.current_password.as_ref()).await?;
        }
        let hash = match &req.password {
            Some(p) => {
                check_password(p)?;
                Some(hash_password(p, &self.hasher).await?)
            }
            None => None,
        };
        let mut tx = self.db.begin().await?;
        match db::users::update(&mut tx, &req.username, hash.as_deref(), req.role).await? {
            UpdateOutcome::Updated => {}
            UpdateOutcome::NotFound => return Err(no_user(&req.username)),
            UpdateOutcome::LastRoot => {
                return Err(Error::conflict("role", "this is the last root user; make another root first"));
            }
        }
        let role = db::users::role_of(&mut tx, &req.username).await?.ok_or_else(|| no_user(&req.username))?;
        // A new password is a change worth a version (who, when), never the password itself.
        let meta = if req.password.is_some() { meta.noting("password changed") } else { meta.clone() };
        let committed = record(&mut tx, KIND, req.username.as_str(), &meta, Some(content(&req.username, role))).await?;
        tx.commit().await?;
        self.events.publish(Change::UserChanged { username: req.username.clone() });
        self.events.publish(Change::Committed(committed));
        tracing::info!(user.name = %req.username, password_changed = req.password.is_some(), role = ?req.role, "user updated; its tokens are revoked");
        Ok(())
    }

    /// The current password of `username`, as a token-holder changing it must give it.
    async fn check_current(&self, username: &Name, given: Option<&Secret>) -> Result<(), Error> {
        let Some(given) = given else {
            return Err(Error::field(
                "current_password",
                "changing your own password with a token needs the current password (current_password), \
                 or log in with the password",
            ));
        };
        let user = db::users::get(&self.db, username.as_str()).await?.ok_or_else(|| no_user(username))?;
        let ok = crate::auth::verify_password(given.expose().to_owned(), user.password_hash, &self.hasher).await?;
        if !ok {
            return Err(Error::Forbidden("current_password is not the current password"));
        }
        Ok(())
    }

    /// Removes a user (never the last root); its logins and tokens stop working at once.
    pub async fn remove(&self, username: &Name, meta: &Meta) -> Result<(), Error> {
        let mut tx = self.db.begin().await?;
        match db::users::remove(&mut tx, username).await? {
            RemoveOutcome::Removed => {}
            RemoveOutcome::NotFound => return Err(no_user(username)),
            RemoveOutcome::LastRoot => {
                return Err(Error::conflict("username", "this is the last root user; create another root first"));
            }
        }
        let committed = record(&mut tx, KIND, username.as_str(), meta, None).await?;
        tx.commit().await?;
        self.events.publish(Change::UserChanged { username: username.clone() });
        self.events.publish(Change::Committed(committed));
        tracing::info!(user.name = %username, "user removed");
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<UserView>, Error> {
        Ok(db::users::list(&self.db)
            .await?
            .into_iter()
            .map(|r| UserView { username: r.username, role: r.role, created_at: r.created_at })
            .collect())
    }
}
