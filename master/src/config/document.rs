//! Reading a YAML or JSON document off the async workers, within its limits and its time (see
//! [`mirror_common::document`]): a hostile document costs at most its own request.

use mirror_common::document::{DocError, Limits, read_yaml_or_json};

use crate::error::Error;

/// Reads `bytes` (YAML or JSON) on a blocking thread. The reader itself stops at its deadline;
/// the thread is waited for no longer than twice that.
pub async fn read(bytes: impl AsRef<[u8]> + Send + 'static, limits: Limits) -> Result<serde_json::Value, DocError> {
    if bytes.as_ref().len() > limits.max_bytes {
        return Err(DocError::TooLarge(limits.max_bytes));
    }
    let reading = tokio::task::spawn_blocking(move || read_yaml_or_json(bytes.as_ref(), &limits));
    match tokio::time::timeout(limits.max_time * 2, reading).await {
        Ok(Ok(read)) => read,
        Ok(Err(_)) | Err(_) => Err(DocError::Refused {
            place: None,
            message: format!("the document could not be read within {:?}", limits.max_time),
        }),
    }
}

impl From<DocError> for Error {
    fn from(e: DocError) -> Error {
        match e {
            DocError::TooLarge(n) => Error::TooLarge(n),
            DocError::Refused { place, message } => Error::BadJson { field: place, message },
        }
    }
}
