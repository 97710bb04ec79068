//! The rules of a project's configuration, each written once: what a request gives is checked
//! and turned into a [`ProjectConfig`] here, whichever endpoint or document it came by.

use chrono::{DateTime, Utc};
use mirror_common::Secret;
use mirror_common::api::{AddProject, UpdateProjectBasic};
use mirror_common::cron::{CronOptions, Schedule, ScheduleSpec};
use mirror_common::interval::{Interval, IntervalOptions, IntervalSpec};
use mirror_common::kinds::{Kind, SourceSpec};
use mirror_common::names::{Dest, ProjectId};
use mirror_common::project::{MAX_UPSTREAMS, ProjectConfig, RunHooks, UpstreamConfig};
use mirror_common::rsync_opts::{RsyncOptions, RsyncOptionsInput};
use mirror_common::targets::Targets;

use super::Projects;
use crate::config::paths::resolve_dest;
use crate::error::Error;
use crate::service::history::Meta;

const MAX_TEXT: usize = 1024;

fn check_text(field: &'static str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::field(field, "must not be empty"));
    }
    if value.len() > MAX_TEXT || value.chars().any(char::is_control) {
        return Err(Error::field(field, "is too long or contains a control character"));
    }
    Ok(())
}

/// A project's name as its id, when it can be one.
pub(super) fn derived_id(project: &str, why_not: &'static str) -> Result<ProjectId, Error> {
    ProjectId::parse(project).map_err(|_| Error::field("project", why_not))
}

/// A probe is a path in the upstream's module: relative, without `..`, at most 512 characters, no
/// control character, not starting with `-` (it becomes part of one rsync source URL). `""`: none.
fn check_probe(probe: Option<String>) -> Result<Option<String>, Error> {
    let Some(p) = probe.filter(|p| !p.is_empty()) else { return Ok(None) };
    let bad = p.len() > 512
        || p.starts_with(['/', '-'])
        || p.ends_with('/')
        || p.chars().any(|c| c.is_control() || c == '\\')
        || p.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if bad {
        return Err(Error::field(
            "probe",
            "must be a file's path relative to the upstream module (no '..', no leading '/' or '-')",
        ));
    }
    Ok(Some(p))
}

/// A redirector's trace file: a path in the project's tree, as a probe is in the upstream's
/// module, and none of the files the master writes itself there.
fn check_epoch_file(path: Option<String>) -> Result<Option<String>, Error> {
    let checked = check_probe(path).map_err(|_| {
        Error::field("trace_epoch_file", "must be a file's path relative to the tree (no '..', no leading '/' or '-')")
    })?;
    let plain = |p: &str| p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
    if checked.as_deref().is_some_and(|p| !plain(p)) {
        return Err(Error::field("trace_epoch_file", "may hold only letters, digits, '.', '_', '-' and '/'"));
    }
    if checked.as_deref().is_some_and(|p| ["lastupdate", "lastsync"].contains(&p) || p.starts_with("project/trace/")) {
        return Err(Error::field("trace_epoch_file", "names a file the master writes for another purpose"));
    }
    Ok(checked)
}

/// `upstreams` in place of the single-upstream fields: the first becomes them, the others are
/// returned. Errors name `upstreams` (or the entry).
fn first_of_upstreams(req: &mut AddProject) -> Result<Vec<UpstreamConfig>, Error> {
    let Some(list) = req.upstreams.take() else { return Ok(Vec::new()) };
    let single = [req.rsync_host.is_some(), req.rsync_module.is_some(), req.rsync_port.is_some()];
    if single.into_iter().chain([req.rsync_user.is_some(), req.rsync_password.is_some()]).any(|given| given) {
        return Err(Error::field(
            "upstreams",
            "give upstreams, or rsync_host, rsync_module, rsync_port, rsync_user and rsync_password, not both",
        ));
    }
    if list.is_empty() || list.len() > MAX_UPSTREAMS {
        return Err(Error::field("upstreams", format!("must list 1 to {MAX_UPSTREAMS} upstreams")));
    }
    let mut rest = Vec::new();
    for (i, u) in list.into_iter().enumerate() {
        let entry = UpstreamConfig { host: u.host, module: u.module, port: u.port, user: u.user };
        if rest.contains(&entry)
            || (i > 0
                && req.rsync_host.as_ref() == Some(&entry.host)
                && req.rsync_module.as_ref() == Some(&entry.module)
                && req.rsync_port == entry.port)
        {
            return Err(Error::field(format!("upstreams[{i}]"), "is listed twice"));
        }
        if i == 0 {
            (req.rsync_host, req.rsync_module, req.rsync_port, req.rsync_user) =
                (Some(entry.host), Some(entry.module), entry.port, entry.user);
            req.rsync_password = u.password;
        } else {
            rest.push(entry);
        }
    }
    Ok(rest)
}

/// The passwords given with `upstreams` after the first, one per entry (`None`: not given, so a
/// write keeps what the same upstream had).
pub(in crate::service) fn more_passwords_of(req: &AddProject) -> Vec<Option<Secret>> {
    req.upstreams.iter().flatten().skip(1).map(|u| u.password.clone()).collect()
}

/// `""` is no password.
pub(super) fn check_password(password: Option<Secret>) -> Result<Option<Secret>, Error> {
    match password {
        Some(p) if p.expose().is_empty() => Ok(None),
        Some(p) if p.expose().len() > MAX_TEXT || p.expose().contains(['\0', '\n', '\r']) => {
            Err(Error::field("rsync_password", "is too long or contains a newline or NUL"))
        }
        other => Ok(other),
    }
}

fn check_range(field: &'static str, secs: Option<u64>, max: u64, what: &str) -> Result<Option<u64>, Error> {
    match secs {
        Some(s) if !(1..=max).contains(&s) => Err(Error::field(field, format!("must be between 1 and {max} ({what})"))),
        other => Ok(other),
    }
}

fn check_timeout(secs: Option<u64>) -> Result<Option<u64>, Error> {
    check_range("timeout_secs", secs, 7 * 24 * 3600, "a week")
}

fn check_max_age(secs: Option<u64>) -> Result<Option<u64>, Error> {
    check_range("max_age_secs", secs, 366 * 24 * 3600, "a year")
}

fn check_stages(stages: Option<mirror_common::stages::Stages>) -> Result<Option<mirror_common::stages::Stages>, Error> {
    if let Some(s) = &stages {
        s.check().map_err(|(field, message)| Error::field(field, message))?;
    }
    Ok(stages)
}

/// The rules that hold between the fields of a whole configuration (and its password): an
/// upstream is a host and a module; a project with neither has a local source, and then nothing
/// that only an upstream needs (a login, a port, a schedule to run it on); it depends on no one
/// but others. Checked by every write, whatever changed.
pub(super) fn check_whole(config: &ProjectConfig, password: Option<&Secret>) -> Result<(), Error> {
    config.depends_on.check(&config.id).map_err(|(field, message)| Error::field(field, message))?;
    config.source.check().map_err(|(field, message)| Error::field(field, message))?;
    if !config.source.kind.is_rsync() {
        return check_not_rsync(config, password);
    }
    match (&config.rsync_host, &config.rsync_module) {
        (Some(_), Some(_)) => Ok(()),
        (Some(_), None) => Err(Error::field("rsync_module", "missing: an upstream needs rsync_host and rsync_module")),
        (None, Some(_)) => Err(Error::field("rsync_host", "missing: an upstream needs rsync_host and rsync_module")),
        (None, None) => {
            let local = "a project with a local source (no rsync_host and rsync_module) has no upstream";
            let needless = [
                ("rsync_password", password.is_some()),
                ("rsync_user", config.rsync_user.is_some()),
                ("rsync_port", config.rsync_port.is_some()),
                ("cron_options", config.schedule.is_some()),
                ("interval_options", config.interval.is_some()),
                ("depends_on", !config.depends_on.is_empty()),
            ];
            match needless.into_iter().find(|(_, given)| *given) {
                Some((field, _)) => Err(Error::field(field, format!("{local} to use it with"))),
                None => Ok(()),
            }
        }
    }
}

/// A git or command project has none of what only rsync uses: its upstream is `upstream_url`.
fn check_not_rsync(config: &ProjectConfig, password: Option<&Secret>) -> Result<(), Error> {
    let rsync_only = [
        ("rsync_host", config.rsync_host.is_some()),
        ("rsync_module", config.rsync_module.is_some()),
        ("rsync_user", config.rsync_user.is_some()),
        ("rsync_port", config.rsync_port.is_some()),
        ("rsync_password", password.is_some()),
        ("upstreams", !config.more_upstreams.is_empty()),
        ("stages", config.stages.is_some()),
        ("probe", config.probe.is_some()),
        ("trace", config.trace),
        ("freshness", config.freshness),
        ("trace_epoch_file", config.trace_epoch_file.is_some()),
    ];
    match rsync_only.into_iter().find(|(_, given)| *given) {
        Some((field, _)) => Err(Error::field(
            field,
            format!(
                "a {} project has no {field}: it is rsync's (its upstream is upstream_url)",
                config.source.kind.as_str()
            ),
        )),
        None => Ok(()),
    }
}

/// A command project runs a program of the master's configuration, with parameters: only root
/// sets or changes one, or turns a project into one or out of one.
/// A key of the master's (`ssh_key`) is a credential: only root names one, or changes a project
/// that uses one.
pub(super) fn check_source_role(meta: &Meta, old: Option<&SourceSpec>, new: &SourceSpec) -> Result<(), Error> {
    let root_only = |s: &SourceSpec| s.kind == Kind::Command || s.ssh_key.is_some();
    let changed = old != Some(new) && (root_only(new) || old.is_some_and(root_only));
    if changed && !meta.root {
        return Err(Error::Forbidden(
            "setting or changing a command project's provider or params, or a git project's ssh_key, needs the root role",
        ));
    }
    Ok(())
}

/// Object-store targets name where the master sends a tree with a site's credentials: only root
/// (or the master's own files) may set or change them. A `user` may change the rest of a project
/// that has targets, leaving them as they are.
/// A project's hooks run programs of the master's configuration: only root sets or changes them.
pub(super) fn check_hooks_role(meta: &Meta, old: Option<&RunHooks>, new: &RunHooks) -> Result<(), Error> {
    let changed = old.map_or(!new.is_empty(), |o| o != new);
    if changed && !meta.root {
        return Err(Error::Forbidden("setting or changing a project's hooks needs the root role"));
    }
    Ok(())
}

pub(super) fn check_targets_role(meta: &Meta, old: Option<&Targets>, new: &Targets) -> Result<(), Error> {
    let changed = match old {
        Some(t) => t != new,
        None => !new.is_empty(),
    };
    if changed && !meta.root {
        return Err(Error::Forbidden("setting or changing a project's targets needs the root role"));
    }
    Ok(())
}

/// Validates client cron options into the schedule's stored form; `None` when they name no
/// schedule at all (manual runs only). Compiling a schedule and searching its next fire is CPU
/// work: it runs off the async workers.
pub(super) async fn schedule_from(opts: Option<CronOptions>) -> Result<Option<ScheduleSpec>, Error> {
    let Some(opts) = opts else { return Ok(None) };
    let now = Utc::now();
    tokio::task::spawn_blocking(move || check_schedule(&opts, now)).await.map_err(|e| Error::Internal(e.into()))?
}

/// Validates client interval options into their stored form (its `start_date` set: one interval
/// from now when none is given).
pub(super) fn interval_from(opts: Option<IntervalOptions>) -> Result<Option<IntervalSpec>, Error> {
    let Some(opts) = opts else { return Ok(None) };
    let now = Utc::now();
    let interval = Interval::from_options(&opts, now)?;
    if interval.next_fire_at_or_after(now).is_none() {
        return Err(Error::field("interval_options", "this schedule never fires from now on (check end_date)"));
    }
    Ok(Some(interval.spec().clone()))
}

fn check_schedule(opts: &CronOptions, now: DateTime<Utc>) -> Result<Option<ScheduleSpec>, Error> {
    let no_dates = opts.start_date.is_none() && opts.end_date.is_none() && opts.timezone.is_none();
    if opts.has_no_time_field() && no_dates {
        return Ok(None);
    }
    let schedule = Schedule::from_options(opts)?;
    if schedule.next_fire_at_or_after(now).is_none() {
        return Err(Error::field(
            "cron_options",
            "this schedule never fires from now on (check year, day, month and end_date)",
        ));
    }
    Ok(Some(schedule.spec().clone()))
}

impl Projects {
    /// The targets, every rule checked; the credentials each names must exist and allow them.
    /// Each hook a project names must be declared in the master's `[[hooks]]`.
    fn check_hooks(&self, hooks: RunHooks) -> Result<RunHooks, Error> {
        for (kind, list) in [("on_success", &hooks.on_success), ("on_failure", &hooks.on_failure)] {
            if list.len() > 8 {
                return Err(Error::field(format!("hooks.{kind}"), "at most 8 hooks"));
            }
            for (i, name) in list.iter().enumerate() {
                if !self.hooks.iter().any(|h| h.name == *name) {
                    return Err(Error::field(
                        format!("hooks.{kind}[{i}]"),
                        format!("no [[hooks]] entry named '{name}' in the master's configuration"),
                    ));
                }
            }
        }
        Ok(hooks)
    }

    /// A command project's provider must be declared in the master's `[[providers]]`, give every
    /// parameter its slots use, and no parameter may read as an option where a slot begins an
    /// argument. The rules between the fields are [`check_whole`]'s.
    fn check_source(&self, source: SourceSpec) -> Result<SourceSpec, Error> {
        if let Some(key) = &source.ssh_key
            && !self.ssh_keys.iter().any(|k| k.name == *key)
        {
            return Err(Error::field(
                "ssh_key",
                format!("no [[git_ssh_keys]] entry named '{key}' in the master's configuration"),
            ));
        }
        let Some(name) = source.provider.as_ref().filter(|_| source.kind == Kind::Command) else {
            return Ok(source);
        };
        let Some(provider) = self.providers.iter().find(|p| p.name == *name) else {
            return Err(Error::field(
                "provider",
                format!("no [[providers]] entry named '{name}' in the master's configuration"),
            ));
        };
        for (param, leads) in provider.param_slots() {
            let Some(value) = source.params.get(&param) else {
                return Err(Error::field(format!("params.{param}"), format!("missing: provider '{name}' uses it")));
            };
            if leads && value.starts_with('-') {
                return Err(Error::field(
                    format!("params.{param}"),
                    format!(
                        "starts with '-' where provider '{name}' begins an argument with it: it would read as an option"
                    ),
                ));
            }
        }
        Ok(source)
    }

    fn check_targets(&self, targets: Targets) -> Result<Targets, Error> {
        targets.check().map_err(|(field, message)| Error::field(field, message))?;
        for (i, t) in targets.iter().enumerate() {
            let Some(entry) = self.credentials.iter().find(|c| c.name == t.credentials) else {
                return Err(Error::field(
                    format!("targets[{i}].credentials"),
                    format!("no [[s3_credentials]] entry named '{}' in the master's configuration", t.credentials),
                ));
            };
            entry.allows(&t.endpoint, &t.bucket).map_err(|(f, m)| Error::field(format!("targets[{i}].{f}"), m))?;
        }
        Ok(targets)
    }

    fn options(&self, input: Option<&RsyncOptionsInput>) -> Result<RsyncOptions, Error> {
        Ok(RsyncOptions::from_input(&input.cloned().unwrap_or_default(), self.confined)?)
    }

    /// Resolves `dest` under the mirror root (symlinks and all); the overlap with other projects
    /// is checked in the write's transaction.
    pub(super) async fn dest(&self, dest: &str) -> Result<Dest, Error> {
        let resolved = resolve_dest(&self.mirror_root, dest).await?;
        Dest::from_path(&resolved).map_err(|m| Error::field("dest", m))
    }

    /// A whole configuration from an add, a put or a document's entry, every field checked, and
    /// its password.
    pub(in crate::service) async fn config_from(
        &self,
        req: AddProject,
    ) -> Result<(ProjectConfig, Option<Secret>), Error> {
        check_text("project", &req.project)?;
        if req.cron_options.is_some() && req.interval_options.is_some() {
            return Err(Error::field("interval_options", "give cron_options or interval_options, not both"));
        }
        let (id, id_derived) = match &req.id {
            Some(id) => (id.clone(), false),
            None => (derived_id(&req.project, "cannot serve as the id ([A-Za-z0-9._-]+): give an explicit id")?, true),
        };
        let mut req = req;
        let more_upstreams = first_of_upstreams(&mut req)?;
        let config = ProjectConfig {
            id,
            project: req.project,
            id_derived,
            rsync_host: req.rsync_host,
            rsync_module: req.rsync_module,
            dest: self.dest(&req.dest).await?,
            rsync_user: req.rsync_user,
            rsync_port: req.rsync_port,
            schedule: schedule_from(req.cron_options).await?,
            interval: interval_from(req.interval_options)?,
            rsync_options: self.options(req.rsync_options.as_ref())?,
            enabled: req.enabled.unwrap_or(true),
            timeout_secs: check_timeout(req.timeout_secs)?,
            catch_up: req.catch_up.unwrap_or(false),
            max_age_secs: check_max_age(req.max_age_secs)?,
            trace: req.trace.unwrap_or(false),
            max_delete: req.max_delete,
            stages: check_stages(req.stages)?,
            flip: req.flip.unwrap_or(false),
            targets: self.check_targets(req.targets.unwrap_or_default())?,
            watch: req.watch.unwrap_or(false),
            depends_on: req.depends_on.unwrap_or_default(),
            probe: check_probe(req.probe)?,
            freshness: req.freshness.unwrap_or(false),
            trace_epoch_file: check_epoch_file(req.trace_epoch_file)?,
            node: req.node,
            more_upstreams,
            hooks: self.check_hooks(req.hooks.unwrap_or_default())?,
            source: self.check_source(SourceSpec {
                kind: req.kind.unwrap_or_default(),
                upstream_url: req.upstream_url,
                provider: req.provider,
                params: req.params.unwrap_or_default(),
                ssh_key: req.ssh_key,
            })?,
        };
        Ok((config, check_password(req.rsync_password)?))
    }

    /// `config` with the fields an update gives, each checked; the id is left to the caller (a
    /// rename of a derived id). Returns the password it gives: `Some(None)` removes it.
    pub(super) async fn updated(
        &self,
        req: UpdateProjectBasic,
        config: &mut ProjectConfig,
    ) -> Result<Option<Option<Secret>>, Error> {
        if let Some(p) = req.project {
            check_text("project", &p)?;
            config.project = p;
        }
        if let Some(d) = &req.dest {
            config.dest = self.dest(d).await?;
        }
        if let Some(o) = &req.rsync_options {
            config.rsync_options = self.options(Some(o))?;
        }
        if let Some(t) = req.targets {
            config.targets = self.check_targets(t)?;
        }
        config.rsync_host = req.rsync_host.or(config.rsync_host.take());
        config.rsync_module = req.rsync_module.or(config.rsync_module.take());
        set(&mut config.rsync_user, req.rsync_user);
        set(&mut config.rsync_port, req.rsync_port);
        set(&mut config.timeout_secs, req.timeout_secs.map(check_timeout).transpose()?);
        set(&mut config.max_age_secs, req.max_age_secs.map(check_max_age).transpose()?);
        set(&mut config.max_delete, req.max_delete);
        set(&mut config.stages, req.stages.map(check_stages).transpose()?);
        set(&mut config.probe, req.probe.map(check_probe).transpose()?);
        set(&mut config.freshness, req.freshness);
        if let Some(h) = req.hooks {
            config.hooks = self.check_hooks(h)?;
        }
        let source = &mut config.source;
        if req.kind.is_some_and(|k| k != source.kind) {
            // Another kind: what the old one pulled from goes with it.
            *source = SourceSpec { kind: req.kind.unwrap_or_default(), ..SourceSpec::default() };
        }
        if req.upstream_url.is_some() || req.provider.is_some() || req.params.is_some() || req.ssh_key.is_some() {
            source.upstream_url = req.upstream_url.or(source.upstream_url.take());
            source.provider = req.provider.or(source.provider.take());
            source.ssh_key = req.ssh_key.or(source.ssh_key.take());
            set(&mut source.params, req.params);
        }
        config.source = self.check_source(std::mem::take(&mut config.source))?;
        set(&mut config.trace_epoch_file, req.trace_epoch_file.map(check_epoch_file).transpose()?);
        set(&mut config.node, req.node);
        set(&mut config.catch_up, req.catch_up);
        set(&mut config.trace, req.trace);
        set(&mut config.flip, req.flip);
        set(&mut config.watch, req.watch);
        set(&mut config.depends_on, req.depends_on);
        req.rsync_password.map(check_password).transpose()
    }
}

/// A field an update gives (`Some`), else as it was.
fn set<T>(field: &mut T, given: Option<T>) {
    if let Some(v) = given {
        *field = v;
    }
}
