//! `GET /metrics`: Prometheus text format, names by Prometheus conventions (`mirror_sync_` prefix,
//! base units). Counters (runs by result, bytes transferred, HTTP requests) live here and grow with
//! the change events and the requests; everything else is read at scrape time from the listing
//! cache and the database, so a scrape shows the same state as `/list_projects/`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mirror_common::api::{ProjectId, RunStatus};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::events::{Change, Listener};
use crate::read::views::ProjectState;

type Labels = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
}

/// The counters and histograms kept between scrapes.
pub struct Metrics {
    runs: Family<Labels, Counter>,
    pushes: Family<Labels, Counter>,
    pushed_objects: Family<Labels, Counter>,
    pushed_bytes: Family<Labels, Counter>,
    transferred: Family<Labels, Counter>,
    snapshots: Family<Labels, Counter>,
    snapshot_seconds: Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>,
    requests: Family<Labels, Counter>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            runs: Family::default(),
            pushes: Family::default(),
            pushed_objects: Family::default(),
            pushed_bytes: Family::default(),
            transferred: Family::default(),
            snapshots: Family::default(),
            snapshot_seconds: Family::default(),
            requests: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
        }
    }
}

/// What a scrape reads besides the counters: per project, per slave and project, the daemon.
pub struct Snapshot {
    pub now: DateTime<Utc>,
    pub projects: Vec<Arc<ProjectState>>,
    /// (project, slave name, generation served, healthy, last seen)
    pub served: Vec<ServedBy>,
    pub rsyncd_up: bool,
    /// The master's `stale_after_secs`: the objective of a project without its own.
    pub default_max_age_secs: u64,
    /// (project, target, when its last successful push ended), for the targets projects have now.
    pub target_successes: Vec<(String, String, DateTime<Utc>)>,
}

pub struct ServedBy {
    pub project: ProjectId,
    pub slave: String,
    pub generation: i64,
    pub healthy: bool,
    pub last_seen: Option<DateTime<Utc>>,
}

impl Metrics {
    /// One HTTP request answered: its route (the pattern, never the raw path), status and time.
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        let route = route.to_owned();
        self.requests.get_or_create(&vec![("route", route.clone()), ("status", status.to_string())]).inc();
        self.durations.get_or_create(&vec![("route", route)]).observe(took.as_secs_f64());
    }

    /// The text exposition of the counters and of `snapshot`.
    pub fn render(&self, snapshot: Snapshot) -> Result<String, std::fmt::Error> {
        let mut counters = Registry::default();
        counters.register("mirror_sync_project_runs", "Runs that ended, by project and result", self.runs.clone());
        counters.register(
            "mirror_sync_target_pushes",
            "Pushes to object-store targets that ended, by project, target and result",
            self.pushes.clone(),
        );
        counters.register(
            "mirror_sync_target_objects",
            "Objects uploaded to or deleted from targets, by project, target and operation",
            self.pushed_objects.clone(),
        );
        counters.register(
            "mirror_sync_target_uploaded_bytes",
            "Bytes uploaded to targets, by project and target",
            self.pushed_bytes.clone(),
        );
        counters.register(
            "mirror_sync_project_transferred_bytes",
            "Bytes of files rsync transferred, by project",
            self.transferred.clone(),
        );
        counters.register(
            "mirror_sync_project_snapshots",
            "Snapshots of a run's tree for the slaves, by project and result (made, failed)",
            self.snapshots.clone(),
        );
        counters.register(
            "mirror_sync_project_snapshot_seconds",
            "Time spent making snapshots of runs' trees, by project",
            self.snapshot_seconds.clone(),
        );
        counters.register(
            "mirror_sync_http_requests",
            "HTTP requests answered, by route and status",
            self.requests.clone(),
        );
        counters.register(
            "mirror_sync_http_request_duration_seconds",
            "Time to answer an HTTP request (until its body started), by route",
            self.durations.clone(),
        );
        let mut text = String::with_capacity(64 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &counters)?;
        let mut out = prometheus_text(&text);
        // The gauges (most of the output) need no renaming: written straight after the counters.
        // About 750 bytes a project: reserved at once rather than grown again and again.
        out.reserve(snapshot.projects.len() * 750 + snapshot.served.len() * 400);
        let mut gauges = Registry::default();
        gauges.register_collector(Box::new(snapshot));
        prometheus_client::encoding::text::encode(&mut out, &gauges)?;
        if let Some(stripped) = out.strip_suffix("# EOF\n") {
            out.truncate(stripped.len());
        }
        Ok(out)
    }
}

/// The crate writes OpenMetrics: a counter's HELP and TYPE name the family without `_total` and
/// the text ends with `# EOF`. Prometheus' own text format (0.0.4, what `promtool check metrics`
/// reads) names them as the samples are named.
fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len() + 1024);
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        if line.starts_with("# HELP ") {
            if let Some(h) = help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let rename = kind == "counter" && !name.ends_with("_total");
            if let Some(h) = help.take() {
                if rename {
                    out.push_str(&h.replacen(&format!("# HELP {name} "), &format!("# HELP {name}_total "), 1));
                } else {
                    out.push_str(h);
                }
                out.push('\n');
            }
            if rename {
                out.push_str(&format!("# TYPE {name}_total counter\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

impl Listener for Arc<Metrics> {
    fn changed(&self, change: &Change) {
        match change {
            Change::Run { project, status, bytes, .. } if status.ended() => {
                self.runs.get_or_create(&vec![("project", project.to_string()), ("result", status.to_string())]).inc();
                let transferred = self.transferred.get_or_create(&vec![("project", project.to_string())]);
                transferred.inc_by(bytes.unwrap_or(0));
            }
            Change::PushEnded { project, target, status, uploaded, deleted, bytes, .. } => {
                let labels = |extra: (&'static str, String)| {
                    vec![("project", project.to_string()), ("target", target.clone()), extra]
                };
                self.pushes.get_or_create(&labels(("result", status.as_str().to_owned()))).inc();
                self.pushed_objects.get_or_create(&labels(("operation", "upload".to_owned()))).inc_by(*uploaded);
                self.pushed_objects.get_or_create(&labels(("operation", "delete".to_owned()))).inc_by(*deleted);
                let bytes_counter = vec![("project", project.to_string()), ("target", target.clone())];
                self.pushed_bytes.get_or_create(&bytes_counter).inc_by(*bytes);
            }
            Change::SnapshotBuilt { project, made, seconds } => {
                let result = if *made { "made" } else { "failed" };
                self.snapshots
                    .get_or_create(&vec![("project", project.to_string()), ("result", result.to_owned())])
                    .inc();
                self.snapshot_seconds.get_or_create(&vec![("project", project.to_string())]).inc_by(*seconds);
            }
            Change::ProjectRemoved { id } => {
                for status in RunStatus::ALL {
                    self.runs.remove(&vec![("project", id.to_string()), ("result", status.to_string())]);
                }
                for result in ["made", "failed"] {
                    self.snapshots.remove(&vec![("project", id.to_string()), ("result", result.to_owned())]);
                }
                self.snapshot_seconds.remove(&vec![("project", id.to_string())]);
                self.transferred.remove(&vec![("project", id.to_string())]);
            }
            _ => {}
        }
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("projects", &self.projects.len()).finish()
    }
}

/// Whole seconds: what a timestamp gauge needs, and written as an integer (no float formatting).
fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64
}

/// A duration to the millisecond.
fn took(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

/// One gauge family: a value per label set (none when the value is unknown).
fn gauge<L, I>(encoder: &mut DescriptorEncoder, name: &str, help: &str, rows: I) -> Result<(), std::fmt::Error>
where
    L: EncodeLabelSet,
    I: IntoIterator<Item = (L, Option<f64>)>,
{
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        if let Some(v) = value {
            value_into(family.encode_family(&labels)?, v)?;
        }
    }
    Ok(())
}

/// A gauge family of one value without labels.
fn single(encoder: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Result<(), std::fmt::Error> {
    value_into(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?, v)
}

/// Whole values are written as integers (`1`, not `1.0`).
fn value_into(metric: prometheus_client::encoding::MetricEncoder, v: f64) -> Result<(), std::fmt::Error> {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        ConstGauge::new(v as i64).encode(metric)
    } else {
        ConstGauge::new(v).encode(metric)
    }
}

fn slave_labels(b: &ServedBy) -> [(&'static str, &str); 2] {
    [("slave", b.slave.as_str()), ("project", b.project.as_str())]
}

/// Borrowed: a scrape of 10,000 projects makes no label strings.
fn project_label(s: &ProjectState) -> [(&'static str, &str); 1] {
    [("project", s.row.id.as_str())]
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_freshness(&mut e)?;
        self.encode_runs(&mut e)?;
        self.encode_slaves(&mut e)?;
        self.encode_targets(&mut e)
    }
}

impl Snapshot {
    /// Each project's latest run, success and attempt, and its staleness.
    fn encode_freshness(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = seconds(self.now);
        let p = &self.projects;
        let flag = |b: bool| Some(if b { 1.0 } else { 0.0 });
        let status_of = |s: &ProjectState| s.last_run.as_ref().map(|r| r.status);
        gauge(
            e,
            "mirror_sync_project_last_run_status",
            "1 for the status of the project's latest run (queued, running, success, failed, timeout, interrupted)",
            p.iter().filter_map(|s| {
                let status = status_of(s)?;
                Some(([("project", s.row.id.as_str()), ("status", status.as_str())], Some(1.0)))
            }),
        )?;
        gauge(
            e,
            "mirror_sync_project_last_success_timestamp_seconds",
            "When the project's latest successful run ended",
            p.iter().map(|s| (project_label(s), s.last_success.map(|t| seconds(t.to_datetime())))),
        )?;
        gauge(
            e,
            "mirror_sync_project_last_attempt_timestamp_seconds",
            "When the project's latest run started (or was queued, if it has not started)",
            p.iter().map(|s| {
                let run = s.last_run.as_ref();
                (project_label(s), run.map(|r| seconds(r.started_at.unwrap_or(r.queued_at).to_datetime())))
            }),
        )?;
        gauge(
            e,
            "mirror_sync_project_staleness_seconds",
            "Time since the project's latest successful run ended",
            p.iter().map(|s| (project_label(s), s.last_success.map(|t| now - seconds(t.to_datetime())))),
        )?;
        let max_age = self.default_max_age_secs;
        gauge(
            e,
            "mirror_sync_project_max_age_seconds",
            "The project's staleness objective (its max_age_secs, or the master's stale_after_secs)",
            p.iter()
                .map(|s| (project_label(s), Some(crate::read::views::max_age(&s.row, max_age).num_seconds() as f64))),
        )?;
        gauge(
            e,
            "mirror_sync_project_stale",
            "1 when the project's latest success is older than its objective, else 0",
            p.iter().map(|s| (project_label(s), flag(crate::read::views::is_stale(s, self.now, max_age)))),
        )?;
        Ok(())
    }

    /// Each project's latest run, size, next fire and generation; the queue and the daemon.
    fn encode_runs(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let p = &self.projects;
        let flag = |b: bool| Some(if b { 1.0 } else { 0.0 });
        let status_of = |s: &ProjectState| s.last_run.as_ref().map(|r| r.status);
        gauge(
            e,
            "mirror_sync_project_last_run_duration_seconds",
            "How long the project's latest ended run took",
            p.iter().map(|s| {
                let run = s.last_run.as_ref();
                let spent = run.and_then(|r| Some(took(r.started_at?.to_datetime(), r.ended_at?.to_datetime())));
                (project_label(s), spent)
            }),
        )?;
        gauge(
            e,
            "mirror_sync_project_size_bytes",
            "Total size of the project's tree at its latest run that measured it (rsync's total file size)",
            p.iter().map(|s| (project_label(s), s.last_run.as_ref().and_then(|r| r.total_size).map(|b| b as f64))),
        )?;
        gauge(
            e,
            "mirror_sync_project_next_run_timestamp_seconds",
            "When the project's schedule fires next",
            p.iter().map(|s| (project_label(s), s.next_run.map(seconds))),
        )?;
        gauge(
            e,
            "mirror_sync_project_running",
            "1 while the project's rsync runs",
            p.iter().map(|s| (project_label(s), flag(status_of(s) == Some(RunStatus::Running)))),
        )?;
        gauge(
            e,
            "mirror_sync_project_queued",
            "1 while a run of the project waits for a free slot",
            p.iter().map(|s| (project_label(s), flag(status_of(s) == Some(RunStatus::Queued)))),
        )?;
        gauge(
            e,
            "mirror_sync_project_generation",
            "The project's current generation (one more per successful run)",
            p.iter().map(|s| (project_label(s), Some(s.row.generation as f64))),
        )?;
        let queued = p.iter().filter(|s| status_of(s) == Some(RunStatus::Queued)).count();
        single(e, "mirror_sync_run_queue_length", "Runs waiting for a free slot", queued as f64)?;
        single(
            e,
            "mirror_sync_rsyncd_up",
            "1 when the rsync daemon slaves pull from accepts connections",
            if self.rsyncd_up { 1.0 } else { 0.0 },
        )?;
        Ok(())
    }

    /// What each slave serves and how far behind it is.
    fn encode_slaves(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = seconds(self.now);
        let p = &self.projects;
        let flag = |b: bool| Some(if b { 1.0 } else { 0.0 });
        let current = |id: &ProjectId| p.iter().find(|s| &s.row.id == id);
        gauge(
            e,
            "mirror_sync_slave_generation",
            "The generation of the project the slave serves",
            self.served.iter().map(|b| (slave_labels(b), Some(b.generation as f64))),
        )?;
        gauge(
            e,
            "mirror_sync_slave_lag_generations",
            "How many generations the slave is behind on the project",
            self.served
                .iter()
                .map(|b| (slave_labels(b), current(&b.project).map(|s| (s.row.generation - b.generation) as f64))),
        )?;
        gauge(
            e,
            "mirror_sync_slave_lag_seconds",
            "How long the slave has been behind on the project (0 when it serves the current generation)",
            self.served.iter().map(|b| {
                let lag = current(&b.project).map(|s| {
                    if s.row.generation > b.generation {
                        s.last_success.map_or(0.0, |t| now - seconds(t.to_datetime()))
                    } else {
                        0.0
                    }
                });
                (slave_labels(b), lag)
            }),
        )?;
        gauge(
            e,
            "mirror_sync_slave_last_seen_timestamp_seconds",
            "When the master last heard from the slave",
            self.served.iter().map(|b| (slave_labels(b), b.last_seen.map(seconds))),
        )?;
        gauge(
            e,
            "mirror_sync_slave_healthy",
            "1 when the slave was seen within three reconcile intervals",
            self.served.iter().map(|b| (slave_labels(b), flag(b.healthy))),
        )?;
        Ok(())
    }

    /// Object-store pushes.
    fn encode_targets(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        gauge(
            e,
            "mirror_sync_target_last_success_timestamp_seconds",
            "When the latest successful push of the project's tree to the object-store target ended",
            self.target_successes.iter().map(|(project, target, t)| {
                ([("project", project.as_str()), ("target", target.as_str())], Some(seconds(*t)))
            }),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::prometheus_text;

    #[test]
    fn counters_are_named_as_their_samples() {
        let om = "# HELP a_runs Runs.\n# TYPE a_runs counter\na_runs_total{p=\"x\"} 1\n# HELP b Bee.\n# TYPE b gauge\nb 2\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP a_runs_total Runs.\n# TYPE a_runs_total counter\na_runs_total{p=\"x\"} 1\n# HELP b Bee.\n# TYPE b gauge\nb 2\n"
        );
    }
}
