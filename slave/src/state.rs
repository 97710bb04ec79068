//! What this slave serves, kept across restarts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use mirror_common::api::{ProjectId, ServedProject};

use crate::{AppState, lock};

/// What a previous run of this slave served, as it kept it (nothing, the first time).
pub(crate) async fn load(state_file: &Path) -> anyhow::Result<BTreeMap<ProjectId, ServedProject>> {
    match tokio::fs::read(state_file).await {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).with_context(|| format!("state_file: {} is not valid", state_file.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("state_file: {}", state_file.display())),
    }
}

impl AppState {
    /// Keeps what is served across restarts (write to a temporary file, then rename).
    pub(crate) async fn save_served(&self) {
        let Ok(json) = serde_json::to_vec_pretty(&*lock(&self.served)) else { return };
        let path = self.settings.state_file.clone();
        let tmp = path.with_extension("tmp");
        let written = async {
            tokio::fs::write(&tmp, json).await?;
            tokio::fs::rename(&tmp, &path).await
        };
        if let Err(e) = written.await {
            tracing::error!(path = %path.display(), error = %e, "cannot save the served generations");
        }
    }
}
