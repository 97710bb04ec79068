//! The one error shape every mirror-sync service answers with.

use serde::{Deserialize, Serialize};

/// A validation failure tied to one request field (`dest`, `cron_options.minute`, `rsync_options.basic[2]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

/// The JSON body of every error response:
/// `{"method": "add_project", "success": false, "error": "invalid_field", "message": "...", "field": "dest"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The endpoint that answered (`add_project`), as in the 2014 API's bodies; absent for unknown paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    pub success: bool,
    /// A stable machine-readable code: `invalid_field`, `bad_json`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `method_not_allowed`, `internal`.
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
