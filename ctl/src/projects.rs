//! Projects: list, show, add, remove, enable and disable, and where their generations are.

use mirror_common::api::{
    AddProject, DependsOn, Done, Host, ModulePath, Name, Port, ProjectAdded, ProjectDetail, ProjectEnabled, ProjectId,
    ProjectRef, ProjectRemoved, ProjectView, PropagationView, UpstreamInput,
};
use mirror_common::cron::CronOptions;
use mirror_common::interval::IntervalOptions;
use mirror_common::kinds::{Kind, Params, UpstreamUrl};
use mirror_common::rsync_opts::RsyncOptionsInput;

use crate::cli::AddArgs;
use crate::client::{Client, Empty, Exit, Failure, Result, invalid, query};
use crate::prompt::{password_from_file, read_password};
use crate::render::{fill, paint, print_json, state_of, table, time_text};

/// `mirrorctl list`: the projects, filtered by state, as a table, JSON or a template per line.
pub async fn list(
    c: &Client,
    status: &[String],
    stale_after_hours: Option<i64>,
    format: Option<&str>,
    as_json: bool,
) -> Result<()> {
    let projects: Vec<ProjectView> = c.get("/list_projects/").await?;
    let keep = |p: &&ProjectView| {
        status.is_empty() || status.iter().any(|s| *s == state_of(p, stale_after_hours) || *s == p.status)
    };
    let picked: Vec<&ProjectView> = projects.iter().filter(keep).collect();
    if as_json {
        return print_json(&picked);
    }
    if let Some(template) = format {
        for p in picked {
            println!("{}", fill(template, &serde_json::to_value(p)?));
        }
        return Ok(());
    }
    let mut t = table(&["PROJECT", "STATE", "LAST SUCCESS", "NEXT RUN", "UPSTREAM"]);
    for p in picked {
        t.add_row(vec![
            p.id.to_string(),
            paint(&state_of(p, stale_after_hours)),
            time_text(p.last_success),
            time_text(p.next_run_time),
            p.upstream(),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// `mirrorctl show`: one project, its recent runs, and its slaves.
pub async fn show(c: &Client, project: &str, as_json: bool) -> Result<()> {
    let detail: ProjectDetail<ProjectView> = c.get(&format!("/projects/{}", query(project))).await?;
    let propagation: PropagationView = c.get(&format!("/projects/{}/propagation", query(project))).await?;
    if as_json {
        #[derive(serde::Serialize)]
        struct Shown<'a> {
            project: &'a ProjectDetail<ProjectView>,
            propagation: &'a PropagationView,
        }
        return print_json(&Shown { project: &detail, propagation: &propagation });
    }
    let p = &detail.project;
    println!("{}  {}", p.id, paint(&state_of(p, None)));
    println!("  kind          {}", p.kind.as_str());
    println!("  upstream      {}", p.upstream());
    if let Some(provider) = &p.provider {
        println!("  provider      {provider}");
    }
    println!("  dest          {}", p.dest);
    println!("  enabled       {}", p.enabled);
    println!("  generation    {}", p.generation);
    if !p.depends_on.is_empty() {
        let names: Vec<&str> = p.depends_on.iter().map(|d| d.as_str()).collect();
        println!("  runs after    {}", names.join(", "));
    }
    println!("  last success  {}", time_text(p.last_success));
    // Why the last run failed, in rsync's (or the master's) words.
    let last_failed =
        detail.recent_runs.first().filter(|r| r.status.ended() && r.status != mirror_common::api::RunStatus::Success);
    if let Some(r) = last_failed {
        let why = r.message.as_deref().unwrap_or("-");
        println!("  last run      {} #{}: {why}", r.status.as_str(), r.id);
    }
    let fires: Vec<String> = detail.next_fire_times.iter().map(|t| t.to_text()).collect();
    println!("  next fires    {}", if fires.is_empty() { "-".into() } else { fires.join(", ") });
    println!("\nrecent runs\n{}", crate::runs::runs_table(&detail.recent_runs, false));
    let mut s = table(&["SLAVE", "HEALTHY", "GENERATION", "LAG"]);
    for sl in &propagation.slaves {
        s.add_row(vec![sl.slave.clone(), sl.healthy.to_string(), sl.generation.to_string(), sl.lag.to_string()]);
    }
    println!("\nslaves\n{s}");
    Ok(())
}

/// `mirrorctl add`: from a YAML or JSON document (sent as written), or from flags.
pub async fn add(c: &Client, args: AddArgs, as_json: bool) -> Result<()> {
    let added: Done<ProjectAdded> = match &args.file {
        Some(f) => {
            let text = if f == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(f).map_err(|e| Failure::new(Exit::Usage, format!("{f}: {e}")))?
            };
            c.post("/add_project/", &crate::edit::parse_document(&text, f)?).await?
        }
        None => c.post("/add_project/", &from_flags(args)?).await?,
    };
    if as_json {
        return print_json(&added);
    }
    println!("added {}", added.body.id);
    Ok(())
}

/// The body of `/add_project/` from `mirrorctl add`'s flags, each checked as the master would.
fn from_flags(args: AddArgs) -> Result<AddProject> {
    let password = match (&args.password_file, args.password_stdin) {
        (Some(path), _) => Some(password_from_file(path)?),
        (None, true) => Some(read_password(true, "")?),
        (None, false) => None,
    };
    let node = match args.node.as_slice() {
        [] => None,
        names => {
            let names = names.iter().map(|n| Name::parse(n.as_str())).collect::<std::result::Result<Vec<_>, _>>();
            Some(invalid("node", names.and_then(mirror_common::placement::Placement::new))?)
        }
    };
    let depends_on = args.depends_on.iter().map(|d| ProjectId::parse(d.as_str())).collect();
    let rsync_options = (!args.option.is_empty() || args.delete.is_some()).then(|| RsyncOptionsInput {
        defaults: None,
        basic: (!args.option.is_empty()).then_some(args.option),
        delete: args.delete,
    });
    let more = args.upstream.iter().map(|u| upstream_url(u)).collect::<Result<Vec<_>>>()?;
    let mut add = AddProject {
        project: args.name.unwrap_or_default(),
        rsync_host: args.host.map(|h| invalid("rsync_host", Host::parse(h))).transpose()?,
        rsync_module: args.module.map(|m| invalid("rsync_module", ModulePath::parse(m))).transpose()?,
        dest: args.dest.unwrap_or_default(),
        rsync_password: password.map(mirror_common::Secret::new),
        cron_options: args.schedule.as_deref().map(schedule).transpose()?,
        interval_options: args.interval.as_deref().map(interval).transpose()?,
        rsync_options,
        enabled: args.disabled.then_some(false),
        rsync_user: args.user.map(|u| invalid("rsync_user", Name::parse(u))).transpose()?,
        rsync_port: args.port.map(|p| invalid("rsync_port", Port::try_from(p))).transpose()?,
        timeout_secs: args.timeout,
        depends_on: (!args.depends_on.is_empty())
            .then(|| invalid("depends_on", depends_on).map(DependsOn))
            .transpose()?,
        node,
        kind: args.kind.as_deref().map(kind).transpose()?,
        upstream_url: args.upstream_url.map(|u| invalid("upstream_url", UpstreamUrl::parse(&u))).transpose()?,
        provider: args.provider.map(|p| invalid("provider", Name::parse(p))).transpose()?,
        params: params(&args.param)?,
        ssh_key: args.ssh_key.map(|k| invalid("ssh_key", Name::parse(k))).transpose()?,
        ..AddProject::default()
    };
    if !more.is_empty() {
        // The first upstream is the flags' own; the others follow it, all as `upstreams`.
        let first = UpstreamInput {
            host: add.rsync_host.take().ok_or_else(|| Failure::new(Exit::Usage, "--upstream needs --host"))?,
            module: add.rsync_module.take().ok_or_else(|| Failure::new(Exit::Usage, "--upstream needs --module"))?,
            port: add.rsync_port.take(),
            user: add.rsync_user.take(),
            password: add.rsync_password.take(),
        };
        add.upstreams = Some(std::iter::once(first).chain(more).collect());
    }
    Ok(add)
}

/// `--kind rsync|git|command`.
fn kind(text: &str) -> Result<Kind> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| Failure::new(Exit::Usage, format!("--kind {text}: rsync, git or command")))
}

/// `--param NAME=VALUE`, each checked as the master would; `None` without any.
fn params(given: &[String]) -> Result<Option<Params>> {
    if given.is_empty() {
        return Ok(None);
    }
    let mut map = std::collections::BTreeMap::new();
    for p in given {
        let (name, value) =
            p.split_once('=').ok_or_else(|| Failure::new(Exit::Usage, format!("--param {p}: give NAME=VALUE")))?;
        map.insert(name.to_owned(), value.to_owned());
    }
    invalid("params", Params::new(map)).map(Some)
}

/// `--upstream rsync://[user@]host[:port]/module[/path]`.
fn upstream_url(text: &str) -> Result<UpstreamInput> {
    let usage = |why: &str| Failure::new(Exit::Usage, format!("--upstream {text}: {why}"));
    let rest = text.strip_prefix("rsync://").ok_or_else(|| usage("is not rsync://[user@]host[:port]/module"))?;
    let (authority, module) = rest.split_once('/').ok_or_else(|| usage("names no module"))?;
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(invalid("upstreams.user", Name::parse(u)).map_err(|_| usage("bad user"))?), h),
        None => (None, authority),
    };
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']').ok_or_else(|| usage("has an unclosed ["))?;
            (h, after.strip_prefix(':'))
        }
        None => match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    let port = match port {
        Some(p) => {
            let n = p.parse::<u16>().map_err(|_| usage("has a bad port"))?;
            Some(invalid("upstreams.port", Port::try_from(n))?)
        }
        None => None,
    };
    Ok(UpstreamInput {
        host: invalid("upstreams.host", Host::parse(host))?,
        module: invalid("upstreams.module", ModulePath::parse(module.trim_end_matches('/')))?,
        port,
        user,
        password: None,
    })
}

/// `--schedule minute=*/30,hour=4`: APScheduler's cron fields.
fn schedule(text: &str) -> Result<CronOptions> {
    let mut cron = CronOptions::default();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let usage = |why: &str| Failure::new(Exit::Usage, format!("--schedule: '{pair}' {why}"));
        let (k, v) = pair.split_once('=').ok_or_else(|| usage("is not field=value"))?;
        let slot = match k.trim() {
            "year" => &mut cron.year,
            "month" => &mut cron.month,
            "day" => &mut cron.day,
            "week" => &mut cron.week,
            "day_of_week" => &mut cron.day_of_week,
            "hour" => &mut cron.hour,
            "minute" => &mut cron.minute,
            "second" => &mut cron.second,
            "start_date" => &mut cron.start_date,
            "end_date" => &mut cron.end_date,
            "timezone" => &mut cron.timezone,
            "jitter" => {
                cron.jitter = Some(v.trim().parse().map_err(|_| usage("is not a number of seconds"))?);
                continue;
            }
            _ => return Err(usage("names no cron field")),
        };
        *slot = Some(v.trim().to_owned());
    }
    Ok(cron)
}

/// `--interval hours=6,jitter=600`: APScheduler's interval fields.
fn interval(text: &str) -> Result<IntervalOptions> {
    let mut every = IntervalOptions::default();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let usage = |why: &str| Failure::new(Exit::Usage, format!("--interval: '{pair}' {why}"));
        let (k, v) = pair.split_once('=').ok_or_else(|| usage("is not field=value"))?;
        let (k, v) = (k.trim(), v.trim());
        let number = || v.parse::<u64>().map_err(|_| usage("is not a whole number"));
        match k {
            "weeks" => every.weeks = number()?,
            "days" => every.days = number()?,
            "hours" => every.hours = number()?,
            "minutes" => every.minutes = number()?,
            "seconds" => every.seconds = number()?,
            "jitter" => every.jitter = Some(number()?),
            "start_date" => every.start_date = Some(v.to_owned()),
            "end_date" => every.end_date = Some(v.to_owned()),
            "timezone" => every.timezone = Some(v.to_owned()),
            _ => return Err(usage("names no interval field")),
        }
    }
    Ok(every)
}

/// `mirrorctl rm PROJECT`.
pub async fn remove(c: &Client, project: &str, as_json: bool) -> Result<()> {
    let id = invalid("id", ProjectId::parse(project))?;
    let done: Done<ProjectRemoved> =
        c.post("/remove_project/", &ProjectRef { id, comment: None, version: None }).await?;
    if as_json {
        return print_json(&done);
    }
    println!("removed {project}");
    Ok(())
}

/// `mirrorctl rm --disabled`: every disabled project, dependents before what they depend on (so
/// that each removal is allowed); the first failure is the exit's.
pub async fn remove_disabled(c: &Client, as_json: bool) -> Result<()> {
    let listed: Vec<ProjectView> = c.get("/list_projects/").await?;
    let graph: mirror_common::depends::Graph =
        listed.iter().filter(|p| !p.enabled).map(|p| (p.id.clone(), p.depends_on.0.clone())).collect();
    let mut order =
        mirror_common::depends::dependency_order(&graph).unwrap_or_else(|_| graph.keys().cloned().collect());
    order.reverse();
    let mut removed = Vec::new();
    let mut first_error = None;
    for id in order {
        let body = ProjectRef { id: id.clone(), comment: None, version: None };
        match c.post::<_, Done<ProjectRemoved>>("/remove_project/", &body).await {
            Ok(_) => removed.push(id.to_string()),
            Err(e) => {
                eprintln!("{id}: {}", e.message);
                first_error.get_or_insert(e);
            }
        }
    }
    if as_json {
        #[derive(serde::Serialize)]
        struct Removed<'a> {
            removed: &'a [String],
        }
        print_json(&Removed { removed: &removed })?;
    } else {
        let names = if removed.is_empty() { String::new() } else { format!(": {}", removed.join(", ")) };
        println!("removed {} disabled project(s){names}", removed.len());
    }
    first_error.map_or(Ok(()), Err)
}

/// `mirrorctl enable|disable PROJECT`.
pub async fn switch(c: &Client, project: &str, on: bool, as_json: bool) -> Result<()> {
    let path = if on { "enable_project" } else { "disable_project" };
    let done: Done<ProjectEnabled> = c.post(&format!("/{path}/?id={}", query(project)), &Empty {}).await?;
    if as_json {
        return print_json(&done);
    }
    println!("{project} {}", if on { "enabled" } else { "disabled" });
    Ok(())
}

/// `mirrorctl propagation PROJECT`: per slave, the generation it serves.
pub async fn propagation(c: &Client, project: &str, as_json: bool) -> Result<()> {
    let v: PropagationView = c.get(&format!("/projects/{}/propagation", query(project))).await?;
    if as_json {
        return print_json(&v);
    }
    println!("{} at generation {}", project, v.generation);
    if !v.snapshot && v.generation > 0 {
        println!("slaves pull the master's live tree (no snapshot of this generation)");
    }
    if let Some(spread) = v.flip_spread_ms {
        println!("last flip {spread} ms after the first");
    }
    if !v.laggards.is_empty() {
        println!("published without: {}", v.laggards.join(", "));
    }
    let mut t = table(&["SLAVE", "HEALTHY", "GENERATION", "STAGED", "LAG", "LATEST"]);
    for s in &v.slaves {
        t.add_row(vec![
            s.slave.clone(),
            s.healthy.to_string(),
            s.generation.to_string(),
            s.staged_generation.map_or_else(|| "-".to_owned(), |g| g.to_string()),
            s.lag.to_string(),
            s.latest_status.map_or_else(|| "-".to_owned(), |st| st.to_string()),
        ]);
    }
    println!("{t}");
    Ok(())
}
