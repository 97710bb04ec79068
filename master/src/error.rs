//! The one error type of the master's services, auth included: what went wrong, in terms of the
//! request. The HTTP layer (`http::error`) renders it; internal detail is logged there, never sent.

use mirror_common::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Field(#[from] FieldError),
    #[error("{message}")]
    BadJson { field: Option<String>, message: String },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{message}")]
    NotFound { field: Option<&'static str>, message: String },
    #[error("{message}")]
    Conflict { field: Option<&'static str>, message: String },
    /// A write based on another version than the current one (Rainer's answer).
    #[error("{key} is at version {expected}, the change was based on version {provided}")]
    VersionConflict { key: String, expected: i64, provided: i64 },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Unavailable(String),
    /// Too many streams open (of this caller, or in all): 429 with `Retry-After`.
    #[error("{0}")]
    TooMany(String),
    /// An error about one entry of a document's list (`projects[3]`, the project `key`).
    #[error("{list}[{index}] ({key}): {error}")]
    InEntry { list: &'static str, index: usize, key: String, error: Box<Error> },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Internal(e.into())
    }
}

impl Error {
    pub fn not_found(field: &'static str, message: impl Into<String>) -> Self {
        Error::NotFound { field: Some(field), message: message.into() }
    }

    pub fn conflict(field: &'static str, message: impl Into<String>) -> Self {
        Error::Conflict { field: Some(field), message: message.into() }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Field(FieldError::new(field, message))
    }

    /// The same error, about entry `index` (key `key`) of the document's `list`.
    pub fn in_entry(self, list: &'static str, index: usize, key: &str) -> Self {
        match self {
            located @ Error::InEntry { .. } => located,
            error => Error::InEntry { list, index, key: key.to_owned(), error: Box::new(error) },
        }
    }

    /// As the one error body shows it: a field error names `list[i].field`, a conflict's message
    /// starts with `list[i] (key): `; other errors are the entry's own.
    pub fn flattened(self) -> Self {
        match self {
            Error::InEntry { list, index, key, error } => match error.flattened() {
                Error::Field(mut f) => {
                    f.field = format!("{list}[{index}].{}", f.field);
                    Error::Field(f)
                }
                Error::Conflict { field, message } => {
                    Error::Conflict { field, message: format!("{list}[{index}] ({key}): {message}") }
                }
                other => other,
            },
            other => other,
        }
    }
}
