//! `mirrorctl`: the operator's command line for a mirror-sync master. It speaks the master's HTTP
//! API with the wire types of `mirror-common`, and nothing else of the master.

mod client;
mod edit;
mod proxy;
mod targets;
mod transfer;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use client::{Client, Exit, Failure, Result, query};
use comfy_table::{ContentArrangement, Table, presets};
use mirror_common::api::{ProjectDetail, ProjectView, RunView, SlaveView, TokenResponse, UserView};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "mirrorctl", version, about = "Control a mirror-sync master: projects, runs, slaves, users")]
struct Cli {
    /// The master's URL (else MIRRORCTL_URL, ~/.config/mirror-sync/mirrorctl.toml,
    /// /etc/mirror-sync/mirrorctl.toml, http://127.0.0.1:5000).
    #[arg(long, global = true)]
    url: Option<String>,
    /// Print JSON (what the API answered) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Log in (asks for the password) and keep a token in a 0600 file.
    Login {
        #[arg(long, default_value = "root")]
        user: String,
        /// Read the password from the first line of stdin instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Print the token in use (for curl: -H "Authorization: Bearer $(mirrorctl token)").
    Token,
    /// List the projects.
    List {
        /// Only these: failed, running, success, never_run, stale, disabled (comma-separated).
        #[arg(long, value_delimiter = ',')]
        status: Vec<String>,
        /// A project is stale when its last success is older than this many hours (default: each
        /// project's own objective, `max_age_secs`, or the master's `stale_after_secs`).
        #[arg(long)]
        stale_after_hours: Option<i64>,
        /// One line per project: `{id}`, `{status}`, `{last_success}`... replaced by its fields.
        #[arg(long)]
        format: Option<String>,
    },
    /// One project: configuration, state, next fire times, recent runs, per-slave generation.
    Show {
        project: String,
    },
    /// Add a project, from flags or a YAML or JSON file (the body of /add_project/).
    Add(Box<AddArgs>),
    /// Edit a project's configuration in $VISUAL or $EDITOR (YAML); shows the diff and asks
    /// before saving. A change someone made meanwhile is reported, not overwritten.
    Edit {
        project: String,
        /// Save without asking.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Why (kept with the new version).
        #[arg(long, short = 'm')]
        message: Option<String>,
    },
    /// The versions of a project's configuration: who changed what, when and why.
    Versions {
        project: String,
        /// With the diff of each version against the one before.
        #[arg(long, short = 'p')]
        patch: bool,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// A new version of a project with the configuration of an old one (also brings a removed
    /// project back).
    Revert {
        project: String,
        version: i64,
        #[arg(long, short = 'm')]
        message: Option<String>,
        /// The upstream password, read from stdin: needed when the version had one and the
        /// project has none now (versions keep no password).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a project (its versions stay: `mirrorctl revert` brings it back); with --disabled,
    /// every disabled project (tunasync's flush).
    Rm {
        #[arg(required_unless_present = "disabled", conflicts_with = "disabled")]
        project: Option<String>,
        #[arg(long)]
        disabled: bool,
    },
    Enable {
        project: String,
    },
    Disable {
        project: String,
    },
    /// Start a run now; with --wait, follow it and exit with its result.
    Sync {
        project: String,
        #[arg(long)]
        wait: bool,
    },
    /// Bring the project's object-store targets (or one) in step with its tree now; with --wait,
    /// wait for the pushes and exit with their result.
    Push {
        project: String,
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        wait: bool,
    },
    /// A project's object-store targets and their last push.
    Targets {
        project: String,
    },
    /// Stop the project's run that is going (it ends `stopped`; no slave is told).
    Stop {
        project: String,
    },
    /// A run's output (the latest run's unless RUN is given); -f follows a running one live.
    Logs {
        project: String,
        run: Option<i64>,
        #[arg(short, long)]
        follow: bool,
    },
    /// A project's runs, newest first (--config: the versions of its configuration).
    History {
        project: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// The versions of its configuration instead (as `versions`).
        #[arg(long, short = 'c')]
        config: bool,
        /// With --config: the diff of each version against the one before.
        #[arg(long, short = 'p', requires = "config")]
        patch: bool,
    },
    /// The slaves: health, last seen, how far behind (`slaves add|rm|rotate` to manage them).
    Slaves {
        #[command(subcommand)]
        action: Option<SlavesCmd>,
    },
    /// Per slave, the generation of a project it serves.
    Propagation {
        project: String,
    },
    /// The master's configuration (projects, slaves) as YAML or JSON: to stdout, a file, or a
    /// directory of one file per resource (projects/<id>.yaml, slaves/<host>_<port>.yaml, users/<name>.yaml).
    Export {
        #[arg(long, default_value = "yaml")]
        format: String,
        /// DIR/, FILE or - (stdout, the default).
        dest: Option<String>,
    },
    /// Apply a configuration (a file, a directory as export writes it, or - for stdin): create
    /// and update what it names; with --prune also remove what it does not name.
    Import {
        src: String,
        #[arg(long)]
        prune: bool,
        /// Show what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, short = 'm')]
        message: Option<String>,
    },
    /// Apply the master's projects_dir again (tunasync's reload).
    Reload,
    /// What importing SRC (with --prune) would change: nothing printed when it matches.
    Diff {
        src: String,
    },
    /// Copy one master's configuration into another.
    Copy {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        prune: bool,
        #[arg(long)]
        dry_run: bool,
        #[arg(long, short = 'm')]
        message: Option<String>,
    },
    /// Print configuration changes and run states as they happen (`GET /events`).
    Watch {
        /// Start after this event id (replays what came since).
        #[arg(long)]
        since: Option<i64>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// The master nodes on the shared database: which leads, which are alive, what each runs.
    Nodes,
    /// The newest alert deliveries to the webhooks, and what became of each.
    Alerts {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// API users.
    Users {
        #[command(subcommand)]
        action: Option<UsersCmd>,
    },
    /// Serve the master's API on a loopback address, adding the logged-in user's token to each
    /// request (for clients that cannot send credentials, such as pyrainer).
    Proxy {
        /// Where to listen (loopback only; port 0: any free port, printed).
        #[arg(long, default_value = "127.0.0.1:8001")]
        listen: String,
    },
    /// Print a shell completion script.
    Completion {
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff: `mirrorctl man > /usr/local/share/man/man1/mirrorctl.1`).
    Man,
}

#[derive(clap::Args)]
struct AddArgs {
    /// A YAML or JSON file with the whole project ("-": stdin).
    #[arg(long, conflicts_with_all = ["name", "host", "module", "dest", "depends_on", "port", "user",
        "password_file", "password_stdin", "option", "delete", "timeout", "disabled", "node"])]
    file: Option<String>,
    #[arg(long, required_unless_present = "file")]
    name: Option<String>,
    #[arg(long, required_unless_present = "file")]
    host: Option<String>,
    #[arg(long, required_unless_present = "file")]
    module: Option<String>,
    #[arg(long, required_unless_present = "file")]
    dest: Option<String>,
    /// Cron fields, as `minute=*/30,hour=4` (APScheduler's names).
    #[arg(long)]
    schedule: Option<String>,
    /// Run after each successful run of these projects (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    depends_on: Vec<String>,
    /// The master node that runs it (several, comma-separated: nodes sharing one mirror root).
    #[arg(long, value_delimiter = ',')]
    node: Vec<String>,
    /// The upstream daemon's port (default 873).
    #[arg(long)]
    port: Option<u16>,
    /// The upstream daemon's user.
    #[arg(long)]
    user: Option<String>,
    /// The upstream's password, from the first line of this file (never in argv).
    #[arg(long, conflicts_with = "password_stdin")]
    password_file: Option<std::path::PathBuf>,
    /// The upstream's password, from the first line of stdin.
    #[arg(long)]
    password_stdin: bool,
    /// An rsync option of the basic layer (repeat it: --option=--no-motd --option=-4).
    #[arg(long = "option", allow_hyphen_values = true)]
    option: Vec<String>,
    /// The one delete option (--delete, --delete-after, --delete-delay, ...).
    #[arg(long, allow_hyphen_values = true)]
    delete: Option<String>,
    /// A run that takes longer is killed (seconds).
    #[arg(long)]
    timeout: Option<u64>,
    /// Added disabled (no scheduled run until enabled).
    #[arg(long)]
    disabled: bool,
}

#[derive(Subcommand)]
enum UsersCmd {
    List,
    Add {
        name: String,
        #[arg(long, value_enum, default_value = "user")]
        role: RoleArg,
        #[arg(long)]
        password_stdin: bool,
    },
    Rm {
        name: String,
    },
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum SlavesCmd {
    List,
    /// Add a slave; its token is printed once (the slave's MIRROR_SLAVE__TOKEN).
    Add {
        hostname: String,
        #[arg(long, default_value_t = 7000)]
        port: u16,
    },
    /// Remove a slave (HOST:PORT, as `slaves` lists it): it is no longer notified.
    Rm {
        slave: String,
    },
    /// Give a slave a new token (printed once); the old one stops working.
    Rotate {
        slave: String,
    },
}

/// `host:port` (an IPv6 address as `[::1]:7000`) split for the API's body.
fn slave_ref(slave: &str) -> Result<Value> {
    let bad = || Failure::new(Exit::Usage, format!("'{slave}' is not HOST:PORT"));
    let (host, port) = slave.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Ok(json!({"hostname": host, "port": port}))
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Root,
    User,
}

/// The first line of a password file, which must not be readable by others.
fn password_from_file(path: &std::path::Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| Failure::new(Exit::Usage, format!("{shown}: {e}")))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Failure::new(Exit::Usage, format!("{shown}: readable by others: chmod 600 it first")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Failure::new(Exit::Usage, format!("{shown}: {e}")))?;
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        return Err(Failure::new(Exit::Usage, format!("{shown}: no password on its first line")));
    }
    Ok(line)
}

fn read_password(from_stdin: bool, prompt: &str) -> Result<String> {
    let password = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        rpassword::prompt_password(prompt)?
    };
    if password.is_empty() {
        return Err(Failure::new(Exit::Usage, "no password given"));
    }
    Ok(password)
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING).set_content_arrangement(ContentArrangement::Dynamic).set_header(header.to_vec());
    if !std::io::stdout().is_terminal() {
        t.force_no_tty();
    }
    t
}

/// A status word, coloured on a terminal.
fn paint(word: &str) -> String {
    if !std::io::stdout().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
        return word.to_owned();
    }
    let code = match word {
        "success" | "delivered" => "32",
        "failed" | "timeout" | "interrupted" | "stale" | "given_up" => "31",
        "running" | "queued" => "34",
        _ => return word.to_owned(),
    };
    format!("\x1b[{code}m{word}\x1b[0m")
}

fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn is_stale(p: &ProjectView, hours: Option<i64>) -> bool {
    let now = chrono::Utc::now();
    match hours {
        Some(h) => p.enabled && p.last_success.is_some_and(|t| now - t.to_datetime() > chrono::Duration::hours(h)),
        None => p.stale_after.is_some_and(|t| now > t.to_datetime()),
    }
}

fn state_of(p: &ProjectView, stale_hours: Option<i64>) -> String {
    if !p.enabled {
        "disabled".into()
    } else if is_stale(p, stale_hours) {
        "stale".into()
    } else {
        p.status.clone()
    }
}

fn fill(template: &str, fields: &Value) -> String {
    let mut out = template.replace("\\t", "\t").replace("\\n", "\n");
    if let Some(map) = fields.as_object() {
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            out = out.replace(&format!("{{{k}}}"), &text);
        }
    }
    out
}

fn time_text(t: Option<mirror_common::time::Timestamp>) -> String {
    t.map_or_else(|| "-".into(), |t| t.to_datetime().format("%Y-%m-%d %H:%M").to_string())
}

async fn run(cli: Cli) -> Result<()> {
    let url = client::resolve_url(cli.url.as_deref());
    let login = match cli.command {
        // Logging in needs no saved token (and must not renew one).
        Cmd::Login { .. } | Cmd::Completion { .. } | Cmd::Man => client::Login::None,
        _ => client::resolve_login(&url).await,
    };
    let c = Client::new(url.clone(), login.clone())?;
    match cli.command {
        Cmd::Login { user, password_stdin } => {
            let password = read_password(password_stdin, &format!("password for {user} at {url}: "))?;
            let basic = Client::new(url.clone(), client::Login::Basic(user.clone(), password))?;
            let token: TokenResponse = basic.get("/get_token/").await?;
            let saved = client::SavedToken::from_response(url, user, token);
            let path = client::save_token(&saved)?;
            eprintln!("logged in as {}; token kept in {} until {}", saved.username, path.display(), saved.expires_at);
        }
        Cmd::Proxy { listen } => proxy::serve(c, &listen).await?,
        Cmd::Token => match login {
            client::Login::Bearer(t) => println!("{t}"),
            _ => return Err(Failure::new(Exit::Auth, "no token: run `mirrorctl login` or set MIRRORCTL_TOKEN")),
        },
        Cmd::List { status, stale_after_hours, format } => {
            let raw: Value = c.get("/list_projects/").await?;
            let projects: Vec<ProjectView> = serde_json::from_value(raw.clone()).unwrap_or_default();
            let keep = |p: &ProjectView| {
                status.is_empty() || status.iter().any(|s| *s == state_of(p, stale_after_hours) || *s == p.status)
            };
            if cli.json {
                let picked: Vec<&Value> = raw
                    .as_array()
                    .map(|a| a.iter().zip(&projects).filter(|(_, p)| keep(p)).map(|(v, _)| v).collect())
                    .unwrap_or_default();
                return print_json(&json!(picked));
            }
            if let Some(template) = format {
                for (v, p) in raw.as_array().into_iter().flatten().zip(&projects) {
                    if keep(p) {
                        println!("{}", fill(&template, v));
                    }
                }
                return Ok(());
            }
            let mut t = table(&["PROJECT", "STATE", "LAST SUCCESS", "NEXT RUN", "UPSTREAM"]);
            for p in projects.iter().filter(|p| keep(p)) {
                t.add_row(vec![
                    p.id.to_string(),
                    paint(&state_of(p, stale_after_hours)),
                    time_text(p.last_success),
                    time_text(p.next_run_time),
                    p.upstream(),
                ]);
            }
            println!("{t}");
        }
        Cmd::Show { project } => {
            let v: Value = c.get(&format!("/projects/{}", query(&project))).await?;
            let propagation: Value = c.get(&format!("/projects/{}/propagation", query(&project))).await?;
            if cli.json {
                return print_json(&json!({"project": v, "propagation": propagation}));
            }
            let detail: ProjectDetail<ProjectView> = serde_json::from_value(v)?;
            let p = &detail.project;
            println!("{}  {}", p.id, paint(&state_of(p, None)));
            println!("  upstream      {}", p.upstream());
            println!("  dest          {}", p.dest);
            println!("  enabled       {}", p.enabled);
            println!("  generation    {}", p.generation);
            if !p.depends_on.is_empty() {
                let names: Vec<&str> = p.depends_on.iter().map(|d| d.as_str()).collect();
                println!("  runs after    {}", names.join(", "));
            }
            println!("  last success  {}", time_text(p.last_success));
            // Why the last run failed, in rsync's (or the master's) words.
            let ended_badly = |s: &str| matches!(s, "failed" | "timeout" | "interrupted" | "stopped");
            let last_failed = detail.recent_runs.first().filter(|r| ended_badly(r.status.as_str()));
            if let Some(r) = last_failed {
                let why = r.message.as_deref().unwrap_or("-");
                println!("  last run      {} #{}: {why}", r.status.as_str(), r.id);
            }
            let fires: Vec<String> = detail.next_fire_times.iter().map(|t| t.to_text()).collect();
            println!("  next fires    {}", if fires.is_empty() { "-".into() } else { fires.join(", ") });
            let mut t = table(&["RUN", "TRIGGER", "STATUS", "STARTED", "FILES", "BYTES"]);
            for r in &detail.recent_runs {
                t.add_row(vec![
                    r.id.to_string(),
                    r.trigger.to_string(),
                    paint(r.status.as_str()),
                    time_text(r.started_at),
                    r.stats.files_transferred.map_or_else(String::new, |f| f.to_string()),
                    r.stats.bytes_transferred.map_or_else(String::new, |b| b.to_string()),
                ]);
            }
            println!("\nrecent runs\n{t}");
            let mut s = table(&["SLAVE", "HEALTHY", "GENERATION", "LAG"]);
            for sl in propagation["slaves"].as_array().into_iter().flatten() {
                s.add_row(vec![
                    sl["slave"].as_str().unwrap_or_default().to_owned(),
                    sl["healthy"].to_string(),
                    sl["generation"].to_string(),
                    sl["lag"].to_string(),
                ]);
            }
            println!("\nslaves\n{s}");
        }
        Cmd::Add(add) => {
            let AddArgs {
                file,
                name,
                host,
                module,
                dest,
                schedule,
                depends_on,
                node,
                port,
                user,
                password_file,
                password_stdin,
                option,
                delete,
                timeout,
                disabled,
            } = *add;
            let body: Value = match file {
                Some(f) => {
                    let text = if f == "-" {
                        std::io::read_to_string(std::io::stdin())?
                    } else {
                        std::fs::read_to_string(&f).map_err(|e| Failure::new(Exit::Usage, format!("{f}: {e}")))?
                    };
                    edit::parse_document(&text, &f)?
                }
                None => {
                    let mut b = json!({"project": name, "rsync_host": host, "rsync_module": module, "dest": dest});
                    if let Some(s) = schedule {
                        let mut cron = serde_json::Map::new();
                        for pair in s.split(',').filter(|p| !p.is_empty()) {
                            let (k, v) = pair.split_once('=').ok_or_else(|| {
                                Failure::new(Exit::Usage, format!("--schedule: '{pair}' is not field=value"))
                            })?;
                            cron.insert(k.trim().to_owned(), json!(v.trim()));
                        }
                        b["cron_options"] = Value::Object(cron);
                    }
                    if !depends_on.is_empty() {
                        b["depends_on"] = json!(depends_on);
                    }
                    match node.as_slice() {
                        [] => {}
                        [one] => b["node"] = json!(one),
                        all => b["node"] = json!(all),
                    }
                    if let Some(p) = port {
                        b["rsync_port"] = json!(p);
                    }
                    if let Some(u) = user {
                        b["rsync_user"] = json!(u);
                    }
                    let password = match (&password_file, password_stdin) {
                        (Some(path), _) => Some(password_from_file(path)?),
                        (None, true) => Some(read_password(true, "")?),
                        (None, false) => None,
                    };
                    if let Some(p) = password {
                        b["rsync_password"] = json!(p);
                    }
                    if !option.is_empty() || delete.is_some() {
                        let mut layers = serde_json::Map::new();
                        if !option.is_empty() {
                            layers.insert("basic".into(), json!(option));
                        }
                        if let Some(d) = delete {
                            layers.insert("delete".into(), json!(d));
                        }
                        b["rsync_options"] = Value::Object(layers);
                    }
                    if let Some(t) = timeout {
                        b["timeout_secs"] = json!(t);
                    }
                    if disabled {
                        b["enabled"] = json!(false);
                    }
                    b
                }
            };
            let added = c.post("/add_project/", &body).await?;
            if cli.json {
                return print_json(&added);
            }
            println!("added {}", added["id"].as_str().unwrap_or_default());
        }
        Cmd::Rm { project: Some(project), .. } => {
            let done = c.post("/remove_project/", &json!({"id": project})).await?;
            if cli.json {
                return print_json(&done);
            }
            println!("removed {project}");
        }
        Cmd::Rm { project: None, .. } => {
            let listed: Vec<ProjectView> = serde_json::from_value(c.get("/list_projects/").await?)?;
            // Dependents before what they depend on, so that each removal is allowed.
            let graph: mirror_common::depends::Graph =
                listed.iter().filter(|p| !p.enabled).map(|p| (p.id.clone(), p.depends_on.0.clone())).collect();
            let mut order =
                mirror_common::depends::dependency_order(&graph).unwrap_or_else(|_| graph.keys().cloned().collect());
            order.reverse();
            let mut removed = Vec::new();
            let mut first_error = None;
            for id in order {
                match c.post("/remove_project/", &json!({"id": id})).await {
                    Ok(_) => removed.push(id.to_string()),
                    Err(e) => {
                        eprintln!("{id}: {}", e.message);
                        first_error.get_or_insert(e);
                    }
                }
            }
            if cli.json {
                print_json(&json!({"removed": removed}))?;
            } else {
                println!(
                    "removed {} disabled project(s){}",
                    removed.len(),
                    if removed.is_empty() { String::new() } else { format!(": {}", removed.join(", ")) }
                );
            }
            if let Some(e) = first_error {
                return Err(e);
            }
        }
        Cmd::Enable { project } => switch(&c, &project, true, cli.json).await?,
        Cmd::Disable { project } => switch(&c, &project, false, cli.json).await?,
        Cmd::Sync { project, wait } => {
            let started = c.post(&format!("/syncup/?id={}", query(&project)), &json!({})).await?;
            let run_id = started["run_id"].as_i64().ok_or_else(|| Failure::new(Exit::Server, "no run id"))?;
            if !wait {
                if cli.json {
                    return print_json(&started);
                }
                match started["follow_up_of"].as_i64() {
                    Some(going) => println!("run {run_id} of {project} queued: one more pass after run {going}"),
                    None => println!("run {run_id} of {project} started"),
                }
                return Ok(());
            }
            let run = follow(&c, run_id, &project, cli.json).await?;
            if cli.json {
                print_json(&serde_json::to_value(&run)?)?;
            }
            if run.status != mirror_common::api::RunStatus::Success {
                return Err(Failure::new(
                    Exit::RunFailed,
                    format!("run {run_id} of {project}: {} {}", run.status, run.message.unwrap_or_default()),
                ));
            }
        }
        Cmd::Push { project, target, wait } => targets::push(&c, &project, target.as_deref(), wait, cli.json).await?,
        Cmd::Targets { project } => targets::list(&c, &project, cli.json).await?,
        Cmd::Stop { project } => {
            let latest: Vec<RunView> = c.get(&format!("/runs/?project={}&limit=1", query(&project))).await?;
            let going = latest
                .first()
                .filter(|r| {
                    matches!(r.status, mirror_common::api::RunStatus::Queued | mirror_common::api::RunStatus::Running)
                })
                .ok_or_else(|| Failure::new(Exit::Conflict, format!("no run of {project} is going")))?;
            let done = c.post(&format!("/runs/{}/stop", going.id), &json!({})).await?;
            if cli.json {
                return print_json(&done);
            }
            println!("stopping run {} of {project}", going.id);
        }
        Cmd::Logs { project, run, follow } => {
            let id = match run {
                Some(id) => id,
                None => {
                    let latest: Vec<RunView> = c.get(&format!("/runs/?project={}&limit=1", query(&project))).await?;
                    latest
                        .first()
                        .map(|r| r.id)
                        .ok_or_else(|| Failure::new(Exit::NotFound, format!("{project} has no run")))?
                }
            };
            c.stream_to_stdout(&format!("/runs/{id}/log?follow={follow}")).await?;
        }
        Cmd::History { project, limit, config: true, patch } => {
            edit::versions(&c, &project, patch, limit, cli.json).await?
        }
        Cmd::History { project, limit, .. } => {
            let v: Value = c.get(&format!("/runs/?project={}&limit={limit}", query(&project))).await?;
            if cli.json {
                return print_json(&v);
            }
            let runs: Vec<RunView> = serde_json::from_value(v)?;
            let mut t = table(&["RUN", "TRIGGER", "STATUS", "STARTED", "ENDED", "FILES", "BYTES"]);
            for r in &runs {
                t.add_row(vec![
                    r.id.to_string(),
                    r.trigger.to_string(),
                    paint(r.status.as_str()),
                    time_text(r.started_at),
                    time_text(r.ended_at),
                    r.stats.files_transferred.map_or_else(String::new, |f| f.to_string()),
                    r.stats.bytes_transferred.map_or_else(String::new, |b| b.to_string()),
                ]);
            }
            println!("{t}");
        }
        Cmd::Slaves { action } => slaves(&c, action.unwrap_or(SlavesCmd::List), cli.json).await?,
        Cmd::Edit { project, yes, message } => edit::edit(&c, &project, yes, message).await?,
        Cmd::Versions { project, patch, limit } => edit::versions(&c, &project, patch, limit, cli.json).await?,
        Cmd::Revert { project, version, message, password_stdin } => {
            let password = if password_stdin { Some(read_password(true, "upstream password: ")?) } else { None };
            edit::revert(&c, &project, version, message, password).await?
        }
        Cmd::Export { format, dest } => transfer::export(&c, &format, dest.as_deref()).await?,
        Cmd::Import { src, prune, dry_run, message } => {
            let doc = transfer::read_source(&src)?;
            transfer::send(&c, &doc, prune, dry_run, message.as_deref(), cli.json).await?;
        }
        Cmd::Reload => {
            let report = c.post("/reload", &json!({})).await?;
            transfer::print_report(&report, false, cli.json)?;
        }
        Cmd::Diff { src } => {
            let doc = transfer::read_source(&src)?;
            transfer::send(&c, &doc, true, true, None, cli.json).await?;
        }
        Cmd::Copy { from, to, prune, dry_run, message } => {
            let (from, to) = (client::resolve_url(Some(&from)), client::resolve_url(Some(&to)));
            // The environment's credentials go to the master mirrorctl is pointed at, if it is one
            // of the two; the other side logs in with its own saved token only.
            let login_for = async |side: &str| {
                if side == url {
                    client::resolve_login(side).await
                } else {
                    client::resolve_login_elsewhere(side).await
                }
            };
            let source = Client::new(from.clone(), login_for(&from).await)?;
            let target = Client::new(to.clone(), login_for(&to).await)?;
            transfer::copy(&source, &target, prune, dry_run, message.as_deref(), cli.json).await?;
        }
        Cmd::Watch { since, count } => watch::watch(&c, since, count, cli.json).await?,
        Cmd::Nodes => {
            let v: Value = c.get("/nodes").await?;
            if cli.json {
                return print_json(&v);
            }
            let nodes: Vec<mirror_common::api::NodeView> = serde_json::from_value(v)?;
            let mut t = table(&["NODE", "STATE", "API", "RSYNCD", "HEARTBEAT", "PROJECTS"]);
            for n in &nodes {
                let state = match (n.leader, n.alive) {
                    (true, _) => "leader",
                    (false, true) => "alive",
                    (false, false) => "dead",
                };
                t.add_row(vec![
                    n.name.clone(),
                    paint(state),
                    n.api_url.clone(),
                    n.rsyncd.clone(),
                    time_text(Some(n.last_heartbeat)),
                    n.projects.len().to_string(),
                ]);
            }
            println!("{t}");
        }
        Cmd::Alerts { limit } => {
            let v: Value = c.get(&format!("/alerts?limit={limit}")).await?;
            if cli.json {
                return print_json(&v);
            }
            let alerts: Vec<mirror_common::api::AlertDeliveryView> = serde_json::from_value(v)?;
            let mut t = table(&["ID", "WEBHOOK", "EVENT", "STATE", "CREATED", "TRIES", "TEXT"]);
            for a in &alerts {
                let state = match (a.state.as_str(), &a.last_error) {
                    ("pending", Some(e)) => format!("pending ({e})"),
                    (s, _) => s.to_owned(),
                };
                t.add_row(vec![
                    a.id.to_string(),
                    a.webhook.clone(),
                    a.event.clone(),
                    paint(&state),
                    time_text(Some(a.created_at)),
                    a.attempts.to_string(),
                    a.text.clone(),
                ]);
            }
            println!("{t}");
        }
        Cmd::Propagation { project } => {
            let v: Value = c.get(&format!("/projects/{}/propagation", query(&project))).await?;
            if cli.json {
                return print_json(&v);
            }
            println!("{} at generation {}", project, v["generation"]);
            if v["snapshot"] == Value::Bool(false) && v["generation"].as_i64() > Some(0) {
                println!("slaves pull the master's live tree (no snapshot of this generation)");
            }
            if let Some(spread) = v["flip_spread_ms"].as_i64() {
                println!("last flip {spread} ms after the first");
            }
            if let Some(laggards) = v["laggards"].as_array().filter(|l| !l.is_empty()) {
                let names: Vec<&str> = laggards.iter().filter_map(Value::as_str).collect();
                println!("published without: {}", names.join(", "));
            }
            let mut t = table(&["SLAVE", "HEALTHY", "GENERATION", "STAGED", "LAG", "LATEST"]);
            for s in v["slaves"].as_array().into_iter().flatten() {
                t.add_row(vec![
                    s["slave"].as_str().unwrap_or_default().to_owned(),
                    s["healthy"].to_string(),
                    s["generation"].to_string(),
                    s["staged_generation"].as_i64().map_or_else(|| "-".to_owned(), |g| g.to_string()),
                    s["lag"].to_string(),
                    s["latest_status"].as_str().unwrap_or("-").to_owned(),
                ]);
            }
            println!("{t}");
        }
        Cmd::Users { action } => users(&c, action.unwrap_or(UsersCmd::List), cli.json).await?,
        Cmd::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
        }
        Cmd::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "mirrorctl", &mut std::io::stdout());
        }
    }
    Ok(())
}

async fn switch(c: &Client, project: &str, on: bool, as_json: bool) -> Result<()> {
    let path = if on { "enable_project" } else { "disable_project" };
    let done = c.post(&format!("/{path}/?id={}", query(project)), &json!({})).await?;
    if as_json {
        return print_json(&done);
    }
    println!("{project} {}", if on { "enabled" } else { "disabled" });
    Ok(())
}

/// Polls the run until it ends, with a progress line on a terminal.
async fn follow(c: &Client, run_id: i64, project: &str, quiet: bool) -> Result<RunView> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal() && !quiet;
    // Not on a terminal: a line when the state or the count of files changes.
    let mut last_line = String::new();
    loop {
        let run: RunView = c.get(&format!("/runs/{run_id}")).await?;
        let secs = started.elapsed().as_secs();
        let ended =
            !matches!(run.status, mirror_common::api::RunStatus::Queued | mirror_common::api::RunStatus::Running);
        let so_far = run.progress.as_ref().map_or_else(String::new, |p| {
            let known = p.files_known.map(|k| format!(" of {k}")).unwrap_or_default();
            format!(", {} files{known}, {} ({}%, {})", p.files_transferred, human_bytes(p.bytes), p.percent, p.rate)
        });
        if tty {
            eprint!("\r\x1b[2K{project} run {run_id}: {} {secs}s{so_far}", run.status);
        } else if !quiet && !ended {
            let line = format!("{project} run {run_id}: {}{}", run.status, so_far.split(" (").next().unwrap_or(""));
            if line != last_line {
                eprintln!("{project} run {run_id}: {} {secs}s{so_far}", run.status);
                last_line = line;
            }
        }
        if ended {
            if tty {
                eprintln!();
            }
            if !quiet {
                let files = run.stats.files_transferred.unwrap_or(0);
                let bytes = run.stats.bytes_transferred.unwrap_or(0);
                println!(
                    "run {run_id} of {project}: {} in {secs} s, {files} files, {bytes} bytes transferred",
                    run.status
                );
            }
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Bytes as `rsync -h` would print them (units of 1000).
fn human_bytes(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["", "K", "M", "G", "T"] {
        if value < 1000.0 || unit == "T" {
            return if unit.is_empty() { format!("{bytes} B") } else { format!("{value:.2} {unit}B") };
        }
        value /= 1000.0;
    }
    format!("{bytes} B")
}

async fn slaves(c: &Client, action: SlavesCmd, as_json: bool) -> Result<()> {
    let done = match action {
        SlavesCmd::List => {
            let v: Value = c.get("/list_slaves/").await?;
            if as_json {
                return print_json(&v);
            }
            let slaves: Vec<SlaveView> = serde_json::from_value(v)?;
            let mut t = table(&["SLAVE", "HEALTHY", "LAST SEEN", "BEHIND ON"]);
            for s in &slaves {
                let behind: Vec<String> =
                    s.projects.iter().filter(|p| p.lag > 0).map(|p| format!("{} ({})", p.project, p.lag)).collect();
                t.add_row(vec![
                    s.name.clone(),
                    paint(if s.healthy { "success" } else { "failed" })
                        .replace("success", "yes")
                        .replace("failed", "no"),
                    time_text(s.last_seen),
                    if behind.is_empty() { "-".into() } else { behind.join(", ") },
                ]);
            }
            println!("{t}");
            return Ok(());
        }
        SlavesCmd::Add { hostname, port } => {
            c.post("/add_slave/", &json!({"hostname": hostname, "port": port})).await?
        }
        SlavesCmd::Rm { slave } => c.post("/remove_slave/", &slave_ref(&slave)?).await?,
        SlavesCmd::Rotate { slave } => c.post("/rotate_slave_token/", &slave_ref(&slave)?).await?,
    };
    if as_json {
        return print_json(&done);
    }
    // A new token is printed alone, to be put in the slave's environment.
    match done["token"].as_str() {
        Some(token) => println!("{token}"),
        None => {
            println!("{}: {}", done["method"].as_str().unwrap_or("slaves"), done["details"].as_str().unwrap_or("done"))
        }
    }
    Ok(())
}

async fn users(c: &Client, action: UsersCmd, as_json: bool) -> Result<()> {
    let done = match action {
        UsersCmd::List => {
            let v: Value = c.get("/list_users/").await?;
            if as_json {
                return print_json(&v);
            }
            let users: Vec<UserView> = serde_json::from_value(v)?;
            let mut t = table(&["USER", "ROLE", "CREATED"]);
            for u in &users {
                t.add_row(vec![u.username.to_string(), u.role.to_string(), time_text(Some(u.created_at))]);
            }
            println!("{t}");
            return Ok(());
        }
        UsersCmd::Add { name, role, password_stdin } => {
            let password = read_password(password_stdin, &format!("password for the new user {name}: "))?;
            let role = match role {
                RoleArg::Root => "root",
                RoleArg::User => "user",
            };
            c.post("/create_api_user/", &json!({"username": name, "password": password, "role": role})).await?
        }
        UsersCmd::Rm { name } => c.post("/remove_api_user/", &json!({"username": name})).await?,
        UsersCmd::Passwd { name, password_stdin } => {
            let password = read_password(password_stdin, &format!("new password for {name}: "))?;
            match c.post("/update_api_user/", &json!({"username": name, "password": password})).await {
                // Logged in with a token, changing one's own password needs the current one
                // (with --password-stdin: the next line).
                Err(f) if f.exit == Exit::Invalid && f.message.contains("current_password") => {
                    let current = read_password(password_stdin, &format!("current password of {name}: "))?;
                    let body = json!({"username": name, "password": password, "current_password": current});
                    c.post("/update_api_user/", &body).await?
                }
                other => other?,
            }
        }
    };
    if as_json {
        return print_json(&done);
    }
    println!("{}: done", done["method"].as_str().unwrap_or("users"));
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("mirrorctl: {}", f.message);
            ExitCode::from(f.exit as u8)
        }
    }
}
