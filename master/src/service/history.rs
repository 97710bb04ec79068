//! What a configuration commit holds, who made it and why, and the version a write was based on
//! (Rainer's optimistic concurrency).

use mirror_common::api::Name;
use mirror_common::project::ProjectConfig;
use serde::{Deserialize, Serialize};

use crate::db::projects::ProjectRow;
use crate::error::Error;

/// Who changes something, why, and on which version of it they based the change.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// The logged-in user; `None`: the master itself (the first root from the environment).
    pub author: Option<Name>,
    /// A `comment` field or the `X-Comment` header.
    pub comment: Option<String>,
    /// A `version` field or `If-Match`: the write is refused (409) unless it is the current one.
    pub based_on: Option<i64>,
    /// Whether the writer has the root role (or is the master's own configuration): only then
    /// may a project's object-store targets change (they name where the master sends files).
    pub root: bool,
}

/// At most this long: a commit's comment.
pub const MAX_COMMENT: usize = 1024;

impl Meta {
    /// Refuses the write when it was based on another version than `current`.
    pub fn check(&self, key: &str, current: i64) -> Result<(), Error> {
        match self.based_on {
            Some(v) if v != current => {
                Err(Error::VersionConflict { key: key.to_owned(), expected: current, provided: v })
            }
            _ => Ok(()),
        }
    }

    /// The same, with `note` (what the version does that its content does not show: "password
    /// changed", "renamed to x") put before the comment: `note: comment`.
    pub fn noting(&self, note: &str) -> Meta {
        let comment = Some(self.comment.as_ref().map_or_else(|| note.to_owned(), |c| format!("{note}: {c}")));
        Meta { comment, ..self.clone() }
    }

    /// A comment given in the body wins over the header's; a version in the body over If-Match.
    pub fn with_body(mut self, comment: Option<String>, version: Option<i64>) -> Result<Meta, Error> {
        if let Some(c) = comment {
            self.comment = Some(c);
        }
        if let Some(v) = version {
            self.based_on = Some(v);
        }
        if let Some(c) = &self.comment
            && (c.len() > MAX_COMMENT || c.chars().any(|ch| ch.is_control() && ch != '\n'))
        {
            return Err(Error::field("comment", "is over 1024 bytes or contains a control character"));
        }
        Ok(self)
    }
}

/// Appends the next version of `key` (its content, or `None`: removed) in `tx`: what is stored for
/// a user (name and role, never a password) or a slave (host and port, never its token).
pub async fn record(
    mut tx: &mut crate::db::Tx,
    kind: &'static str,
    key: &str,
    meta: &Meta,
    content: Option<serde_json::Value>,
) -> Result<crate::events::Committed, Error> {
    let latest = crate::db::commits::latest_version(&mut tx, kind, key).await?;
    // The change is already made in `tx`: refusing here rolls it back.
    meta.check(key, latest)?;
    let version = latest + 1;
    let text = content.map(|c| c.to_string());
    let c = crate::db::commits::NewCommit {
        kind,
        key,
        version,
        author: meta.author.as_ref().map(|a| a.as_str()),
        comment: meta.comment.as_deref(),
        content: text.as_deref(),
    };
    crate::db::commits::append(&mut tx, &c).await?;
    Ok(crate::events::Committed {
        kind,
        key: key.to_owned(),
        version,
        author: meta.author.as_ref().map(|a| a.to_string()),
        comment: meta.comment.clone(),
        removed: c.content.is_none(),
    })
}

/// A project's whole configuration as a commit stores it, but for its password: only whether it
/// had one (a password changed because it leaked must not live on in the history).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredProject {
    #[serde(flatten)]
    pub config: ProjectConfig,
    #[serde(default)]
    pub rsync_password_set: bool,
}

/// A password replaced by another: a change no version's content shows (it says only whether
/// there is one).
pub fn password_replaced(old: &ProjectRow, new: &ProjectRow) -> bool {
    (old.rsync_password.is_some() && new.rsync_password.is_some() && old.rsync_password != new.rsync_password)
        || (old.more_upstreams == new.more_upstreams && old.more_passwords != new.more_passwords)
}

/// The passwords of a write's more upstreams: one given is kept (`""`: none); one not given is
/// the one the same upstream (host, port, user, module) had before, as `rsync_password` is
/// carried.
pub fn carry_more_passwords(old: Option<&ProjectRow>, new: &mut ProjectRow) {
    let n = new.config.more_upstreams.len();
    new.more_passwords.resize(n, None);
    for i in 0..n {
        if new.more_passwords[i].is_none() {
            let u = &new.config.more_upstreams[i];
            new.more_passwords[i] = old.and_then(|o| {
                let j = o.more_upstreams.iter().position(|x| x == u)?;
                o.more_passwords.get(j).cloned().flatten()
            });
        }
        if new.more_passwords[i].as_ref().is_some_and(|s| s.expose().is_empty()) {
            new.more_passwords[i] = None;
        }
    }
}

/// The password a changed project keeps when the change gives none: the one it had, but only
/// while it goes to the same upstream (host, port, user, module). A password follows its project to
/// no other daemon: one a `user` points the project at would get the challenge response, which
/// can be cracked offline. A change of upstream needs the password again.
pub fn carried_password(old: &ProjectRow, new: &ProjectConfig) -> Option<mirror_common::Secret> {
    let same_upstream = old.same_upstream(new);
    if !same_upstream && old.rsync_password.is_some() {
        tracing::info!(project.id = %new.id, "rsync_password dropped: the upstream changed and the change gave none");
    }
    if same_upstream { old.rsync_password.clone() } else { None }
}

/// The note a version gets when its password was replaced.
pub const PASSWORD_REPLACED: &str = "rsync_password changed";

impl From<&ProjectRow> for StoredProject {
    fn from(r: &ProjectRow) -> Self {
        StoredProject { config: r.config.clone(), rsync_password_set: r.rsync_password.is_some() }
    }
}

impl StoredProject {
    /// As a response shows it (it holds no secret).
    pub fn public_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The top-level fields whose values differ between two configurations (`rsync_password` is
/// named, not shown).
pub fn changed_fields(old: Option<&serde_json::Value>, new: Option<&serde_json::Value>) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (old.and_then(|v| v.as_object()).unwrap_or(&empty), new.and_then(|v| v.as_object()).unwrap_or(&empty));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
}
