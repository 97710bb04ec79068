//! Request and response bodies of the master's HTTP API (the 2014 API's shapes, fixed), a file
//! per resource.

use serde::{Deserialize, Deserializer, Serialize};

use crate::Secret;
use crate::cron::{CronOptions, ScheduleSpec};
pub use crate::depends::DependsOn;
pub use crate::guards::MaxDelete;
pub use crate::names::{Dest, Host, MirrorPath, ModulePath, Name, Port, ProjectId, is_valid_host, is_valid_id};
pub use crate::project::ProjectConfig;
use crate::rsync_opts::{RsyncOptions, RsyncOptionsInput};
pub use crate::stages::Stages;
pub use crate::status::{DeliveryStatus, Role, RunStatus, SyncState, SyncStatus, Trigger};
pub use crate::targets::Targets;
pub use crate::time::Timestamp;

mod documents;
mod history;
mod master;
mod mirrorz;
mod projects;
mod runs;
mod slaves;
mod users;

pub use documents::*;
pub use history::*;
pub use master::*;
pub use mirrorz::*;
pub use projects::*;
pub use runs::*;
pub use slaves::*;
pub use users::*;

/// Every success body of the master: the 2014 API's `method` and `success`, then what the call
/// returns, flattened beside them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done<T> {
    pub method: String,
    pub success: bool,
    #[serde(flatten)]
    pub body: T,
}

impl<T> Done<T> {
    pub fn new(method: &str, body: T) -> Done<T> {
        Done { method: method.to_owned(), success: true, body }
    }
}

/// A body with nothing more than `method` and `success` (`slave_rsync_complete`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Nothing {}
