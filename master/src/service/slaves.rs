//! The slaves service: who the slaves are, their own tokens, what they report, and what each
//! serves. The notifications themselves are the propagation's (`cluster`).

use std::sync::Arc;

use mirror_common::Secret;
use mirror_common::api::{
    CompletionReport, Port, PropagationView, SlaveProjectView, SlavePropagation, SlaveView, is_valid_host,
};
use mirror_common::names::ProjectId;

use crate::auth::new_token;
use crate::cluster::{Cluster, parse_slave_name, slave_name};
use crate::db::{self, Db};
use crate::error::Error;
use crate::events::{Change, Events};
use crate::service::history::{Meta, record};

/// The kind of a slave's commits: its host and port (never its token).
pub const KIND: &str = "slave";

/// The slave API's default port, as in the 2014 service.
pub const DEFAULT_SLAVE_PORT: u16 = 7000;

pub struct Slaves {
    pub db: Db,
    pub cluster: Arc<Cluster>,
    pub events: Arc<Events>,
}

fn check_hostname(host: &str) -> Result<(), Error> {
    if is_valid_host(host) {
        Ok(())
    } else {
        Err(Error::field("hostname", format!("'{}' is not a host name or IP address", host.escape_debug())))
    }
}

fn no_slave(hostname: &str, port: u16) -> Error {
    Error::not_found("hostname", format!("no slave {}:{port}", hostname.escape_debug()))
}

impl Slaves {
    /// Adds a slave and returns its port and new token (shown this once), or no token when the
    /// slave was there already (its token was given then; `rotate` issues a new one).
    pub async fn add(&self, hostname: &str, port: Option<Port>, meta: &Meta) -> Result<(u16, Option<Secret>), Error> {
        check_hostname(hostname)?;
        let port = port.map_or(DEFAULT_SLAVE_PORT, |p| p.0);
        let token = new_token();
        let mut tx = self.db.begin().await?;
        if !db::slaves::insert(&mut tx, hostname, port, &token).await? {
            return Ok((port, None));
        }
        let key = slave_name(hostname, i64::from(port));
        let content = serde_json::json!({"hostname": hostname, "port": port});
        let committed = record(&mut tx, KIND, &key, meta, Some(content)).await?;
        tx.commit().await?;
        self.events.publish(Change::Committed(committed));
        tracing::info!(slave.hostname = %hostname, slave.port = port, "slave added");
        // A new slave receives every enabled project at once.
        self.cluster.kick();
        Ok((port, Some(token)))
    }

    /// A new token for a slave (also how a slave added before per-slave tokens gets one); the old
    /// one stops working at once.
    pub async fn rotate_token(&self, hostname: &str, port: Option<Port>, meta: &Meta) -> Result<(u16, Secret), Error> {
        let port = self.port_of(hostname, port).await?;
        let token = new_token();
        let mut tx = self.db.begin().await?;
        if !db::slaves::set_token(&mut tx, hostname, port, &token).await? {
            return Err(no_slave(hostname, port));
        }
        let mut meta = meta.clone();
        meta.comment = Some(meta.comment.map_or_else(|| "token rotated".into(), |c| format!("token rotated: {c}")));
        let content = serde_json::json!({"hostname": hostname, "port": port});
        let committed = record(&mut tx, KIND, &slave_name(hostname, i64::from(port)), &meta, Some(content)).await?;
        tx.commit().await?;
        self.events.publish(Change::Committed(committed));
        tracing::info!(slave.hostname = %hostname, slave.port = port, "slave token rotated");
        self.cluster.kick();
        Ok((port, token))
    }

    pub async fn remove(&self, hostname: &str, port: Option<Port>, meta: &Meta) -> Result<u16, Error> {
        let port = self.port_of(hostname, port).await?;
        let mut tx = self.db.begin().await?;
        if !db::slaves::remove(&mut tx, hostname, port).await? {
            return Err(no_slave(hostname, port));
        }
        let committed = record(&mut tx, KIND, &slave_name(hostname, i64::from(port)), meta, None).await?;
        tx.commit().await?;
        self.events.publish(Change::Committed(committed));
        tracing::info!(slave.hostname = %hostname, slave.port = port, "slave removed");
        Ok(port)
    }

    /// The port of the slave on `hostname`: as given, or the only one there.
    async fn port_of(&self, hostname: &str, port: Option<Port>) -> Result<u16, Error> {
        if let Some(p) = port {
            return Ok(p.0);
        }
        let ports = db::slaves::ports_of(&self.db, hostname).await?;
        match ports.as_slice() {
            [] => Err(Error::not_found("hostname", format!("no slave '{}'", hostname.escape_debug()))),
            [one] => u16::try_from(*one).map_err(|e| Error::Internal(e.into())),
            _ => Err(Error::field("port", format!("several slaves run on {hostname}: give the port ({ports:?})"))),
        }
    }

    /// A slave's report that its rsync has ended. `token` must be the token of the slave the
    /// report names (a slave speaks only for itself), and the generation one the project had.
    pub async fn report(&self, token: &str, report: &CompletionReport) -> Result<(), Error> {
        let slave = match parse_slave_name(&report.slave) {
            Some((host, port)) => db::slaves::get(&self.db, &host, i64::from(port)).await?,
            None => None,
        };
        // An unknown slave and a wrong token get the same answer.
        let Some(slave) = slave.filter(|s| s.token.as_ref().is_some_and(|t| t.matches(token))) else {
            return Err(Error::Unauthorized("this token is not the reporting slave's"));
        };
        let project = db::projects::get(&self.db.read, &report.project)
            .await?
            .ok_or_else(|| Error::not_found("project", format!("no project '{}'", report.project.escape_debug())))?;
        if report.generation < 1 || report.generation > project.generation {
            return Err(Error::conflict(
                "generation",
                format!(
                    "project '{}' never had generation {} (its current one is {})",
                    project.id, report.generation, project.generation
                ),
            ));
        }
        if !self.cluster.record_report(&slave, report).await? {
            return Err(Error::not_found(
                "slave",
                format!("unknown slave '{}' or project '{}'", report.slave, report.project),
            ));
        }
        tracing::info!(slave = %report.slave, project.id = %report.project, generation = report.generation, status = %report.status, "slave reported");
        Ok(())
    }

    /// A slave's word that it has (re)started, with its own token: whatever it was pulling is no
    /// longer going, so it is told at once of every generation it is behind on, rather than when
    /// the master would have given up waiting for its report. Returns the slave's name.
    pub async fn started(&self, token: &str) -> Result<String, Error> {
        let slaves = db::slaves::list(&self.db).await?;
        let Some(slave) = slaves.into_iter().find(|s| s.token.as_ref().is_some_and(|t| t.matches(token))) else {
            return Err(Error::Unauthorized("this token is no slave's"));
        };
        let waiting = db::propagation::restarted(&self.db, &slave.hostname, slave.port).await?;
        db::slaves::seen(&self.db, &slave.hostname, slave.port).await?;
        self.cluster.kick();
        let name = crate::cluster::slave_name(&slave.hostname, slave.port);
        tracing::info!(slave = %name, deliveries_waiting = waiting, "slave (re)started: notifying it of what it is behind on");
        Ok(name)
    }

    /// Every slave, with when it was last seen, whether it is healthy, and per project the
    /// generation it serves against the current one.
    /// For every slave and every project with content, the generation it serves (0: none yet),
    /// whether it is healthy and when it was last seen: what `/metrics` shows.
    pub async fn served_by(
        &self,
        projects: &[std::sync::Arc<crate::read::views::ProjectState>],
    ) -> Result<Vec<crate::read::metrics::ServedBy>, Error> {
        let slaves = db::slaves::list(&self.db).await?;
        let served: std::collections::HashMap<(ProjectId, String, i64), i64> = db::propagation::served_all(&self.db)
            .await?
            .into_iter()
            .map(|(id, host, port, generation)| ((id, host.into_string(), port), generation))
            .collect();
        let mut out = Vec::with_capacity(slaves.len() * projects.len());
        for slave in &slaves {
            let (name, healthy) = (slave_name(&slave.hostname, slave.port), self.cluster.healthy(slave.last_seen));
            for p in projects.iter().filter(|p| p.row.enabled && p.row.generation > 0) {
                let key = (p.row.id.clone(), slave.hostname.to_string(), slave.port);
                out.push(crate::read::metrics::ServedBy {
                    project: p.row.id.clone(),
                    slave: name.clone(),
                    generation: served.get(&key).copied().unwrap_or(0),
                    healthy,
                    last_seen: slave.last_seen.map(|t| t.to_datetime()),
                });
            }
        }
        Ok(out)
    }

    pub async fn list(&self) -> Result<Vec<SlaveView>, Error> {
        let rows = db::slaves::list(&self.db).await?;
        let projects = db::projects::list(&self.db).await?;
        let served = db::propagation::served_all(&self.db).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let per_project = projects
                    .iter()
                    .filter(|p| p.enabled && p.generation > 0)
                    .map(|p| {
                        let generation = served
                            .iter()
                            .find(|(id, h, port, _)| *id == p.id && *h == r.hostname && *port == r.port)
                            .map_or(0, |s| s.3);
                        SlaveProjectView {
                            project: p.id.clone(),
                            generation,
                            current: p.generation,
                            lag: p.generation - generation,
                        }
                    })
                    .collect();
                SlaveView {
                    healthy: self.cluster.healthy(r.last_seen),
                    name: slave_name(&r.hostname, r.port),
                    token_issued: r.token.is_some(),
                    hostname: r.hostname,
                    port: u16::try_from(r.port).unwrap_or(0),
                    added_at: r.added_at,
                    last_seen: r.last_seen,
                    projects: per_project,
                }
            })
            .collect())
    }

    /// Per slave, the generation of project `id` it serves and since when. `public`: slaves are
    /// numbered rather than named (their addresses are not public), their messages left out.
    pub async fn propagation(&self, id: &str, public: bool) -> Result<PropagationView, Error> {
        let project = db::projects::get(&self.db.read, id)
            .await?
            .ok_or_else(|| Error::not_found("id", format!("no project with id '{}'", id.escape_debug())))?;
        let flips = if project.flip { db::flips::newest_per_slave(&self.db, id).await? } else { Vec::new() };
        let current =
            if project.flip { db::flips::for_generation(&self.db, id, project.generation).await? } else { Vec::new() };
        let flipped: Vec<_> = current.iter().filter_map(|f| f.flipped_at.map(|t| t.to_datetime())).collect();
        let flip_spread_ms = match (flipped.iter().min(), flipped.iter().max()) {
            (Some(first), Some(last)) if flipped.len() > 1 => Some((*last - *first).num_milliseconds()),
            _ => None,
        };
        let slaves = db::propagation::for_project(&self.db, id)
            .await?
            .into_iter()
            .enumerate()
            .map(|(i, p)| SlavePropagation {
                staged_generation: flips
                    .iter()
                    .find(|f| f.hostname == p.hostname && f.port == p.port)
                    .map(|f| f.generation),
                flipped_at: current
                    .iter()
                    .find(|f| f.hostname == p.hostname && f.port == p.port && p.served == f.generation)
                    .and_then(|f| f.flipped_at),
                slave: if public { format!("slave-{}", i + 1) } else { slave_name(&p.hostname, p.port) },
                healthy: self.cluster.healthy(p.last_seen),
                generation: p.served,
                served_at: p.served_at,
                lag: project.generation - p.served,
                latest_generation: p.latest_generation,
                latest_status: p.latest_status,
                latest_message: if public { None } else { p.latest_message },
            })
            .collect();
        let laggards = if public { Vec::new() } else { self.cluster.laggards(id, project.generation) };
        let snapshot = self.cluster.snapshot(&project.id, project.generation).await.is_some();
        Ok(PropagationView {
            project: project.config.id,
            generation: project.generation,
            flip_spread_ms,
            laggards,
            snapshot,
            slaves,
        })
    }
}
