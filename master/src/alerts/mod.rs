//! Alerts: a mirror that fails, recovers, goes stale or fresh again, a slave that goes down, comes
//! back or lags, told to the webhooks that want it.
//!
//! Each watched subject has a state in the database (`run:<project>` ok|failed, `age:<project>`
//! fresh|stale, `slave:<name>` up|down, `lag:<name>` current|lagging). An event is queued only when
//! a state changes, in the same transaction as the change: once per change, not once per check,
//! and a restart neither repeats nor loses one. Each webhook has its own worker that sends its
//! queue in order, retrying with backoff until the receiver takes it (a 2xx) or
//! `give_up_after_secs` has passed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use mirror_common::Secret;
use mirror_common::api::RunStatus;
use mirror_common::names::ProjectId;
use mirror_common::time::Timestamp;
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{Notify, mpsc, watch};

use crate::cluster::Cluster;
mod checks;

pub use crate::config::AlertEvent;
use crate::config::AlertSettings;
use crate::db::{self, Db};
use crate::events::{Change, Listener};

/// The body every webhook receives (JSON). `text` is one line a chat tool can show as it is.
#[derive(Debug, Serialize)]
struct Body {
    event: &'static str,
    text: String,
    time: Timestamp,
    project: Option<String>,
    slave: Option<String>,
    /// The run that failed or recovered.
    run: Option<i64>,
    /// The run's rsync message, the slave's last seen time, the project a slave lags on.
    detail: Option<String>,
}

/// At most this much of rsync's message goes into a one-line text.
const TEXT_DETAIL: usize = 200;

fn one_line(s: &str) -> String {
    let line: String = s.split(['\n', '\r']).map(str::trim).find(|l| !l.is_empty()).unwrap_or("").into();
    match line.char_indices().nth(TEXT_DETAIL) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

struct Hook {
    name: String,
    url: Secret,
    events: HashSet<AlertEvent>,
    secret: Option<Secret>,
    wake: Notify,
}

pub struct Alerts {
    db: Db,
    hooks: Vec<Hook>,
    settings: AlertSettings,
    cluster: Arc<Cluster>,
    default_max_age_secs: u64,
    http: reqwest::Client,
    ended: mpsc::UnboundedSender<Ended>,
    ended_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Ended>>>,
}

/// `X-Mirror-Sync-Signature`: `sha256=` and the hex HMAC-SHA256 of the body under the secret.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else { return String::new() };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// What ended, as the alerts are told of it.
enum Ended {
    Run(ProjectId, RunStatus),
    Push { project: ProjectId, target: String, ok: bool, message: String },
}

impl Alerts {
    pub async fn new(db: Db, settings: &crate::config::Settings, cluster: Arc<Cluster>) -> anyhow::Result<Arc<Alerts>> {
        let mut hooks = Vec::new();
        for w in &settings.alerts.webhook {
            let secret = match (&w.secret, &w.secret_file) {
                (Some(s), _) => Some(s.clone()),
                (None, Some(path)) => Some(
                    mirror_runtime::fs::read_secret_file(path)
                        .await
                        .map_err(|m| anyhow::anyhow!("alerts.webhook.secret_file of '{}': {m}", w.name))?,
                ),
                (None, None) => None,
            };
            let events = if w.events.is_empty() {
                [
                    AlertEvent::RunFailed,
                    AlertEvent::RunRecovered,
                    AlertEvent::Stale,
                    AlertEvent::FreshAgain,
                    AlertEvent::SlaveDown,
                    AlertEvent::SlaveBack,
                    AlertEvent::SlaveLagging,
                    AlertEvent::PushFailed,
                    AlertEvent::PushRecovered,
                ]
                .into()
            } else {
                w.events.iter().copied().collect()
            };
            hooks.push(Hook { name: w.name.to_string(), url: w.url.clone(), events, secret, wake: Notify::new() });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.alerts.timeout_secs))
            .connect_timeout(Duration::from_secs(settings.alerts.timeout_secs.min(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let (ended, ended_rx) = mpsc::unbounded_channel();
        Ok(Arc::new(Alerts {
            db,
            hooks,
            settings: settings.alerts.clone(),
            cluster,
            default_max_age_secs: settings.stale_after_secs,
            http,
            ended,
            ended_rx: std::sync::Mutex::new(Some(ended_rx)),
        }))
    }

    /// Starts the checker and one delivery worker per webhook; they end with `stop`.
    /// Checks and delivers while this node leads (one node sends each alert).
    pub fn spawn(self: &Arc<Self>, stop: watch::Receiver<bool>, leading: crate::cluster::node::Leading) {
        let taken = self.ended_rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(ended) = taken else { return };
        tokio::spawn(Arc::clone(self).check_loop(ended, stop.clone(), leading.clone()));
        for i in 0..self.hooks.len() {
            tokio::spawn(Arc::clone(self).deliver_loop(i, stop.clone(), leading.clone()));
        }
    }

    async fn check_loop(
        self: Arc<Self>,
        mut ended: mpsc::UnboundedReceiver<Ended>,
        mut stop: watch::Receiver<bool>,
        leading: crate::cluster::node::Leading,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.settings.check_interval_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A stop first: the database closes soon after it (no check is started against it).
            let run = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return,
                Some(run) = ended.recv() => Some(run),
                _ = tick.tick() => None,
            };
            let result = match run {
                Some(Ended::Run(project, status)) => self.run_ended(&project, status).await,
                Some(Ended::Push { project, target, ok, message }) => {
                    self.push_ended(&project, &target, ok, &message).await
                }
                None if leading.borrow().is_none() => Ok(()),
                None => self.check().await,
            };
            if let Err(e) = result {
                tracing::error!(error = format!("{e:#}"), "alert check failed");
            }
        }
    }

    /// Moves `subject` to `state`; when it changed, `event(old)` says which event that is (if any)
    /// and it is queued for every webhook that wants it.
    async fn transition(
        &self,
        subject: &str,
        state: &str,
        event: impl FnOnce(Option<&str>) -> Option<(AlertEvent, Body)>,
    ) -> anyhow::Result<()> {
        let mut queued = Vec::new();
        let hooks = &self.hooks;
        let old = db::alerts::transition(&self.db, subject, state, |old| {
            let Some((kind, body)) = event(old) else { return Vec::new() };
            let Ok(json) = serde_json::to_string(&body) else { return Vec::new() };
            hooks
                .iter()
                .enumerate()
                .filter(|(_, h)| h.events.contains(&kind))
                .map(|(i, h)| {
                    queued.push(i);
                    (h.name.clone(), kind.as_str(), json.clone())
                })
                .collect()
        })
        .await?;
        if old.as_deref() != Some(state) {
            tracing::info!(subject, from = old.as_deref().unwrap_or("unknown"), to = state, "alert state changed");
        }
        for i in queued {
            self.hooks[i].wake.notify_one();
        }
        Ok(())
    }

    /// A run ended: failed, or succeeded after failing. Then its staleness may have changed too.
    async fn run_ended(&self, project: &ProjectId, status: RunStatus) -> anyhow::Result<()> {
        let state = match status {
            RunStatus::Success => "ok",
            RunStatus::Failed | RunStatus::Timeout => "failed",
            // Stopped by an operator, interrupted by a shutdown: says nothing of the mirror.
            _ => return Ok(()),
        };
        let run = db::runs::list(&self.db, Some(project), 1).await?.into_iter().next();
        let (run_id, message) = run.map(|r| (Some(r.id), r.message.unwrap_or_default())).unwrap_or_default();
        let id = project.as_str();
        self.transition(&format!("run:{id}"), state, |old| match (old, state) {
            (Some("ok") | None, "failed") => {
                let why = one_line(&message);
                Some((
                    AlertEvent::RunFailed,
                    Body {
                        event: "run_failed",
                        text: format!("mirror-sync: {id} failed ({status}): {why}"),
                        time: Timestamp::now(),
                        project: Some(id.to_owned()),
                        slave: None,
                        run: run_id,
                        detail: Some(message.clone()),
                    },
                ))
            }
            (Some("failed"), "ok") => Some((
                AlertEvent::RunRecovered,
                Body {
                    event: "run_recovered",
                    text: format!("mirror-sync: {id} synced again"),
                    time: Timestamp::now(),
                    project: Some(id.to_owned()),
                    slave: None,
                    run: run_id,
                    detail: None,
                },
            )),
            _ => None,
        })
        .await?;
        if status == RunStatus::Success { self.run_succeeded(project).await } else { Ok(()) }
    }

    /// A push to a target ended: failed, or succeeded after failing.
    async fn push_ended(&self, project: &ProjectId, target: &str, ok: bool, message: &str) -> anyhow::Result<()> {
        let state = if ok { "ok" } else { "failed" };
        let id = project.as_str();
        self.transition(&format!("push:{id}:{target}"), state, |old| {
            let (event, name, text, detail) = match (old, ok) {
                (Some("ok") | None, false) => (
                    AlertEvent::PushFailed,
                    "push_failed",
                    format!("mirror-sync: push of {id} to {target} failed: {}", one_line(message)),
                    Some(message.to_owned()),
                ),
                (Some("failed"), true) => (
                    AlertEvent::PushRecovered,
                    "push_recovered",
                    format!("mirror-sync: push of {id} to {target} done again"),
                    None,
                ),
                _ => return None,
            };
            let body = Body {
                event: name,
                text,
                time: Timestamp::now(),
                project: Some(id.to_owned()),
                slave: None,
                run: None,
                detail,
            };
            Some((event, body))
        })
        .await
    }

    /// Sends webhook `i`'s queue in order, for good.
    async fn deliver_loop(
        self: Arc<Self>,
        i: usize,
        mut stop: watch::Receiver<bool>,
        mut leading: crate::cluster::node::Leading,
    ) {
        let hook = &self.hooks[i];
        loop {
            if leading.borrow_and_update().is_none() {
                tokio::select! {
                    changed = leading.changed() => if changed.is_ok() { continue } else { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            let wait = match self.deliver_next(hook).await {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::error!(webhook = %hook.name, error = format!("{e:#}"), "alert delivery failed");
                    Some(Duration::from_secs(5))
                }
            };
            let Some(wait) = wait.filter(|w| !w.is_zero()) else { continue };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = hook.wake.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Tries the oldest pending delivery when it is due. Returns how long to wait before the
    /// next try (`None`: nothing queued: until woken).
    async fn deliver_next(&self, hook: &Hook) -> anyhow::Result<Option<Duration>> {
        const IDLE: Duration = Duration::from_secs(3600);
        let Some(d) = db::alerts::next_pending(&self.db, &hook.name).await? else { return Ok(Some(IDLE)) };
        let now = Utc::now();
        let due = d.next_attempt_at.to_datetime();
        if due > now {
            return Ok(Some((due - now).to_std().unwrap_or_default()));
        }
        let age = now - d.created_at.to_datetime();
        if age.num_seconds() > i64::try_from(self.settings.give_up_after_secs).unwrap_or(i64::MAX) {
            tracing::error!(webhook = %hook.name, delivery = d.id, event = %d.event, attempts = d.attempts, "alert given up");
            db::alerts::gave_up(&self.db, d.id).await?;
            return Ok(Some(Duration::ZERO));
        }
        let mut request = self
            .http
            .post(hook.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Mirror-Sync-Event", d.event.as_str())
            .header("X-Mirror-Sync-Delivery", d.id.to_string());
        if let Some(secret) = &hook.secret {
            request = request.header("X-Mirror-Sync-Signature", signature(secret, d.body.as_bytes()));
        }
        let error = match request.body(d.body.clone()).send().await {
            Ok(r) if r.status().is_success() => {
                db::alerts::delivered(&self.db, d.id).await?;
                tracing::info!(webhook = %hook.name, delivery = d.id, event = %d.event, "alert delivered");
                return Ok(Some(Duration::ZERO));
            }
            Ok(r) => format!("the receiver answered {}", r.status()),
            // Without the URL: it may hold a key.
            Err(e) => format!("the receiver did not answer: {}", e.without_url()),
        };
        let attempt = u32::try_from(d.attempts + 1).unwrap_or(u32::MAX);
        let base = Duration::from_millis(self.settings.retry_base_ms);
        let wait = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let wait = wait.min(Duration::from_secs(self.settings.retry_max_secs));
        let next = now + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::seconds(60));
        tracing::warn!(webhook = %hook.name, delivery = d.id, attempt, retry_in_ms = wait.as_millis() as u64, error = %error, "alert not delivered");
        db::alerts::failed(&self.db, d.id, &error, Timestamp::from(next)).await?;
        Ok(Some(wait))
    }
}

impl Listener for Arc<Alerts> {
    fn changed(&self, change: &Change) {
        match change {
            Change::Run { project, status, .. } if status.ended() => {
                let _ = self.ended.send(Ended::Run(project.clone(), *status));
            }
            Change::PushEnded { project, target, status, message, .. } => {
                let _ = self.ended.send(Ended::Push {
                    project: project.clone(),
                    target: target.clone(),
                    ok: *status == mirror_common::targets::PushStatus::Success,
                    message: message.clone(),
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        let sig = signature(&Secret::new("Jefe"), b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn texts_are_one_bounded_line() {
        assert_eq!(one_line("\n  rsync: failed\nsecond line"), "rsync: failed");
        assert_eq!(one_line(&"x".repeat(500)).chars().count(), TEXT_DETAIL + 1);
    }
}
