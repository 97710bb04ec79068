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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// A write based on another version than the current one: which key, its version, and the
    /// one the write was based on (Rainer's answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<VersionConflict>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionConflict {
    pub key: String,
    pub expected_version: i64,
    pub provided_version: i64,
}

/// Why a JSON body was refused: `field` is the path of the value at fault (`cron_options.minute`,
/// `options[2]`) when there is one; `invalid_value` says the document had the right shape but a
/// value broke a rule of its type (a host that is not one, a port out of range), which the API
/// reports as `invalid_field` rather than `bad_json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonRejection {
    pub field: Option<String>,
    pub message: String,
    pub invalid_value: bool,
}

/// Parses a JSON request body into `T` through the bounded reader ([`crate::document`], with
/// [`Limits::REQUEST`](crate::document::Limits::REQUEST): no duplicate key, bounded depth and
/// size), naming the field at fault when it is refused.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonRejection> {
    let value = crate::document::read_json(bytes, &crate::document::Limits::REQUEST).map_err(JsonRejection::from)?;
    from_json_value(value)
}

impl From<crate::document::DocError> for JsonRejection {
    fn from(e: crate::document::DocError) -> JsonRejection {
        JsonRejection { field: e.place().map(str::to_owned), message: e.to_string(), invalid_value: false }
    }
}

/// As [`parse_json`], from a parsed value.
pub fn from_json_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, JsonRejection> {
    serde_path_to_error::deserialize(value).map_err(rejection)
}

/// serde's own messages for a document of the wrong shape; any other data error was raised by a
/// type's rule.
const SHAPE_ERRORS: &[&str] = &[
    "invalid type",
    "invalid length",
    "unknown variant",
    "missing field",
    "unknown field",
    "duplicate field",
    "expected ",
    "EOF ",
    "trailing ",
    "key must be",
];

fn rejection(e: serde_path_to_error::Error<serde_json::Error>) -> JsonRejection {
    let path = e.path().to_string();
    let data = e.inner().classify() == serde_json::error::Category::Data;
    let message = strip_position(&e.inner().to_string());
    // serde names a missing or unknown field only in its message.
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned);
    let field = match (path.as_str(), named) {
        ("." | "?", Some(n)) => Some(n),
        ("." | "?", None) => None,
        (p, Some(n)) if !p.ends_with(&n) => Some(format!("{p}.{n}")),
        (p, _) => Some(p.to_owned()),
    };
    let invalid_value = data && field.is_some() && !SHAPE_ERRORS.iter().any(|s| message.starts_with(s));
    JsonRejection { field, message, invalid_value }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AddProject;

    fn rejected(body: &str) -> JsonRejection {
        match parse_json::<AddProject>(body.as_bytes()) {
            Err(r) => r,
            Ok(_) => panic!("{body} was accepted"),
        }
    }

    #[test]
    fn rejections_name_the_field() {
        let base = r#""project":"a","rsync_host":"h","rsync_module":"m","dest":"d""#;
        assert_eq!(rejected(r#"{"project":"a","rsync_host":"h","rsync_module":"m"}"#).field.as_deref(), Some("dest"));
        assert_eq!(rejected(&format!(r#"{{{base},"colour":1}}"#)).field.as_deref(), Some("colour"));
        assert_eq!(rejected(r#"{"project":5}"#).field.as_deref(), Some("project"));
        let minute = rejected(&format!(r#"{{{base},"cron_options":{{"minute":[1]}}}}"#));
        assert_eq!((minute.field.as_deref(), minute.invalid_value), (Some("cron_options.minute"), false));
        assert_eq!(
            rejected(&format!(r#"{{{base},"cron_options":{{"minit":1}}}}"#)).field.as_deref(),
            Some("cron_options.minit")
        );
        assert_eq!(rejected(r#"{"project":"a""#).field, None);
        assert_eq!(rejected(r#""hello""#).field, None);
    }

    #[test]
    fn a_value_that_breaks_its_rule_is_an_invalid_field() {
        let host = rejected(r#"{"project":"a","rsync_host":"-e","rsync_module":"m","dest":"d"}"#);
        assert_eq!((host.field.as_deref(), host.invalid_value), (Some("rsync_host"), true));
        assert!(host.message.contains("not a host name"), "{}", host.message);
        let port = rejected(r#"{"project":"a","rsync_host":"h","rsync_module":"m","dest":"d","rsync_port":70000}"#);
        assert_eq!((port.field.as_deref(), port.invalid_value), (Some("rsync_port"), true));
        let id = rejected(r#"{"project":"a","id":"../x","rsync_host":"h","rsync_module":"m","dest":"d"}"#);
        assert_eq!((id.field.as_deref(), id.invalid_value), (Some("id"), true));
        let shape = rejected(r#"{"project":"a","rsync_host":7,"rsync_module":"m","dest":"d"}"#);
        assert_eq!((shape.field.as_deref(), shape.invalid_value), (Some("rsync_host"), false));
    }
}
