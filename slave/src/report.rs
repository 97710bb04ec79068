//! Telling the master: each pull's report, and that this slave has (re)started.

use std::time::Duration;

use mirror_common::api::{CompletionReport, RunStats, SyncRequest, SyncStatus};

use crate::{AppState, lock, now};

impl AppState {
    pub(crate) fn report_for_served(&self, req: &SyncRequest, generation: i64) -> CompletionReport {
        let served = lock(&self.served).get(&req.project).cloned().unwrap_or_default();
        CompletionReport {
            slave: req.slave.clone(),
            project: req.project.clone(),
            generation,
            status: SyncStatus::Success,
            exit_code: Some(0),
            message: "already serving this generation".into(),
            stats: RunStats::default(),
            started_at: None,
            ended_at: served.synced_at.unwrap_or_else(now),
        }
    }

    /// Posts `body` to the master's `path` with our token, retrying with backoff (0.25 s doubling
    /// up to 32 s) while the master does not answer, `attempts` times at most or until shutdown.
    /// A refusal (4xx) is not retried. True once the master has taken it.
    async fn tell_master(&self, path: &str, body: &impl serde::Serialize, what: &str, attempts: u32) -> bool {
        let Some(token) = &self.token else { return false };
        let url = format!("{}{path}", self.settings.master_url.trim_end_matches('/'));
        let mut stop = self.stop.subscribe();
        for attempt in 0..attempts {
            match self.http.post(&url).bearer_auth(token.expose()).json(body).send().await {
                Ok(r) if r.status().is_success() => return true,
                Ok(r) if r.status().is_client_error() => {
                    tracing::warn!(status = %r.status(), "the master refused the {what}");
                    return false;
                }
                Ok(r) => tracing::warn!(status = %r.status(), attempt, "{what} not taken, retrying"),
                Err(e) => tracing::warn!(error = %e, attempt, "master unreachable, retrying the {what}"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250 << attempt.min(7))) => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
        }
        false
    }

    /// Sends the report; if the master never takes it, its reconciler asks again and the report is
    /// sent anew.
    pub(crate) async fn send_report(&self, report: CompletionReport) {
        self.tell_master("/slave_rsync_complete/", &report, "report", 6).await;
    }

    /// Tells the master we have (re)started, so that it re-sends at once what a previous run of
    /// ours was pulling; tried until the master answers.
    pub(crate) async fn announce(&self) {
        if self.tell_master("/slave_started/", &mirror_common::api::Nothing {}, "start notice", u32::MAX).await {
            tracing::info!("told the master we are up");
        }
    }
}
