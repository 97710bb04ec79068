//! The periodic checks: a project that turns stale or fresh again, a slave that goes down or
//! comes back, one that lags behind a project's last success; and the pruning of old alerts.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mirror_common::names::ProjectId;
use mirror_common::time::Timestamp;

use super::{AlertEvent, Alerts, Body};
use crate::cluster::slave_name;
use crate::db::{self, alerts::ProjectAge, slaves::SlaveRow};

impl Alerts {
    /// Staleness of every project, health and lag of every slave.
    pub(super) async fn check(&self) -> anyhow::Result<()> {
        let now = Utc::now();
        let ages = db::alerts::project_ages(&self.db).await?;
        for p in &ages {
            self.check_age(p, now).await?;
        }
        let lagging = self.lagging(&ages, now).await?;
        for slave in &db::slaves::list(&self.db).await? {
            self.check_slave(slave, &lagging).await?;
        }
        let keep = chrono::Duration::days(i64::try_from(self.settings.keep_days).unwrap_or(30));
        db::alerts::prune(&self.db, Timestamp::from(now - keep)).await?;
        Ok(())
    }

    /// After a successful run: that project is fresh (it may have been stale). The others, the
    /// slaves and their lag are the periodic check's: a check of everything per run cost a burst
    /// of 10,000 runs a read of the whole listing and a write per project, each.
    pub(super) async fn run_succeeded(&self, project: &ProjectId) -> anyhow::Result<()> {
        let id = project.as_str();
        let last = Timestamp::now().to_string();
        self.transition(&format!("age:{id}"), "fresh", |old| age_event(id, old, false, &last, 0)).await
    }

    /// A project that turns stale, or fresh again.
    async fn check_age(&self, p: &ProjectAge, now: DateTime<Utc>) -> anyhow::Result<()> {
        let Some(last_success) = p.last_success.filter(|_| p.enabled) else { return Ok(()) };
        let id = p.id.as_str();
        let secs = p.max_age_secs.and_then(|s| u64::try_from(s).ok()).unwrap_or(self.default_max_age_secs);
        let objective = i64::try_from(secs).unwrap_or(i64::MAX / 1000);
        let stale = last_success
            .to_datetime()
            .checked_add_signed(chrono::Duration::seconds(objective))
            .is_some_and(|t| now > t);
        let last = last_success.to_string();
        let state = if stale { "stale" } else { "fresh" };
        self.transition(&format!("age:{id}"), state, |old| age_event(id, old, stale, &last, objective)).await
    }

    /// The slaves that serve a generation older than `lag_after_secs` after the project's last
    /// success, each with the first such project and its generation.
    async fn lagging(&self, ages: &[ProjectAge], now: DateTime<Utc>) -> anyhow::Result<HashMap<String, String>> {
        let success: HashMap<&str, Timestamp> =
            ages.iter().filter_map(|p| Some((p.id.as_str(), p.last_success?))).collect();
        let lag_after =
            chrono::Duration::seconds(i64::try_from(self.settings.lag_after_secs).unwrap_or(i64::MAX / 1000));
        let mut lagging: HashMap<String, String> = HashMap::new();
        for b in db::propagation::behind(&self.db).await? {
            let since = success.get(b.project_id.as_str()).map(|t| t.to_datetime());
            if since.is_some_and(|t| now - t > lag_after) {
                lagging
                    .entry(slave_name(&b.hostname, b.port))
                    .or_insert_with(|| format!("{} at generation {}", b.project_id, b.served));
            }
        }
        Ok(lagging)
    }

    /// A slave that goes down or comes back, and one that lags or catches up.
    async fn check_slave(&self, slave: &SlaveRow, lagging: &HashMap<String, String>) -> anyhow::Result<()> {
        let name = slave_name(&slave.hostname, slave.port);
        let up = self.cluster.healthy(slave.last_seen);
        // A slave just added and not yet asked is not down.
        let unknown = slave.last_seen.is_none() && self.cluster.healthy(Some(slave.added_at));
        if !unknown {
            let seen = slave.last_seen.map_or_else(|| "never".to_owned(), |t| t.to_string());
            self.transition(&format!("slave:{name}"), if up { "up" } else { "down" }, |old| {
                let (kind, event, text) = match (old, up) {
                    (Some("up") | None, false) => (
                        AlertEvent::SlaveDown,
                        "slave_down",
                        format!("mirror-sync: slave {name} is down (last seen {seen})"),
                    ),
                    (Some("down"), true) => {
                        (AlertEvent::SlaveBack, "slave_back", format!("mirror-sync: slave {name} is back"))
                    }
                    _ => return None,
                };
                let body = Body {
                    event,
                    text,
                    time: Timestamp::now(),
                    project: None,
                    slave: Some(name.clone()),
                    run: None,
                    detail: Some(format!("last seen {seen}")),
                };
                Some((kind, body))
            })
            .await?;
        }
        let lag = lagging.get(&name);
        self.transition(&format!("lag:{name}"), if lag.is_some() { "lagging" } else { "current" }, |old| {
            let what = lag?;
            (old != Some("lagging")).then(|| {
                let body = Body {
                    event: "slave_lagging",
                    text: format!("mirror-sync: slave {name} lags: {what}"),
                    time: Timestamp::now(),
                    project: what.split(' ').next().map(str::to_owned),
                    slave: Some(name.clone()),
                    run: None,
                    detail: Some(what.clone()),
                };
                (AlertEvent::SlaveLagging, body)
            })
        })
        .await?;
        Ok(())
    }
}

/// The event of a project's age moving from `old` to stale or fresh, if that is a change.
fn age_event(id: &str, old: Option<&str>, stale: bool, last: &str, objective: i64) -> Option<(AlertEvent, Body)> {
    let (kind, event, text) = match (old, stale) {
        (Some("fresh") | None, true) => (
            AlertEvent::Stale,
            "stale",
            format!("mirror-sync: {id} is stale: last success {last}, objective {objective} s"),
        ),
        (Some("stale"), false) => (AlertEvent::FreshAgain, "fresh_again", format!("mirror-sync: {id} is fresh again")),
        _ => return None,
    };
    let body = Body {
        event,
        text,
        time: Timestamp::now(),
        project: Some(id.to_owned()),
        slave: None,
        run: None,
        detail: Some(format!("last success {last}")),
    };
    Some((kind, body))
}
