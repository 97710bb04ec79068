//! A project's configuration as an operator writes it in the console (YAML), read as
//! `PUT /projects/{id}` takes it, and a refusal of it as one line for the form.

use mirror_common::api::{AddProject, ProjectId};
use mirror_common::document::Limits;
use serde_json::Value;

use super::UiError;
use crate::error::Error;

/// A failure as one line for a form: the field, then what is wrong.
pub fn message_of(e: &Error) -> String {
    match e {
        Error::Field(f) => format!("{}: {}", f.field, f.message),
        Error::BadJson { field: Some(f), message } => format!("{f}: {message}"),
        other => other.to_string(),
    }
}

/// A configuration written in the console, as `PUT /projects/{id}` takes it.
pub async fn parse_config(id: &ProjectId, text: &str) -> Result<AddProject, UiError> {
    let value = crate::config::document::read(text.as_bytes().to_vec(), Limits::PROJECT_FILE)
        .await
        .map_err(|e| Error::field("config", e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(UiError::Failed(Error::field("config", "must be a mapping of the project's fields")));
    };
    map.entry("project").or_insert_with(|| Value::String(id.as_str().to_owned()));
    Ok(crate::http::extract::add_project_from(map)?)
}
