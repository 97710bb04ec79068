//! The command line: every command, its arguments and their help.

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "mirrorctl", version, about = "Control a mirror-sync master: projects, runs, slaves, users")]
pub struct Cli {
    /// The master's URL (else MIRRORCTL_URL, ~/.config/mirror-sync/mirrorctl.toml,
    /// /etc/mirror-sync/mirrorctl.toml, http://127.0.0.1:5000).
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// Print JSON (what the API answered) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
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
    /// Issue the project's trigger token for its upstream's pushes (POST /trigger/PROJECT), or a
    /// new one in place of the old; printed this once.
    TriggerToken {
        project: String,
    },
    /// ftpsync's push over ssh: the forced command of an authorized_keys line. Reads
    /// SSH_ORIGINAL_COMMAND as ftpsync does (sync:all, sync:stage1, sync:stage2,
    /// sync:archive:NAME, sync:callback, sync:mhop), starts the project's run with its trigger
    /// token, and returns when what was pushed for is done (stage 1, or the whole run).
    SshTrigger {
        /// The project a push without sync:archive: starts.
        project: String,
        /// sync:archive:NAME starts PROJECT: `--archive security=debian-security` (repeatable).
        #[arg(long = "archive", value_name = "NAME=PROJECT")]
        archives: Vec<String>,
        /// Where each project's trigger token is, as PROJECT.token (mode 0600).
        #[arg(long, value_name = "DIR")]
        token_dir: Option<std::path::PathBuf>,
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
pub struct AddArgs {
    /// A YAML or JSON file with the whole project ("-": stdin).
    #[arg(long, conflicts_with_all = ["name", "host", "module", "dest", "depends_on", "port", "user",
        "password_file", "password_stdin", "option", "delete", "timeout", "disabled", "node", "upstream", "kind",
        "upstream_url", "provider", "param", "ssh_key"])]
    pub file: Option<String>,
    #[arg(long, required_unless_present = "file")]
    pub name: Option<String>,
    /// The rsync daemon (an rsync project).
    #[arg(long, required_unless_present_any = ["file", "upstream_url"], conflicts_with = "upstream_url")]
    pub host: Option<String>,
    #[arg(long, required_unless_present_any = ["file", "upstream_url"], conflicts_with = "upstream_url")]
    pub module: Option<String>,
    /// `git` (a bare mirror of --upstream-url) or `command` (a provider of the master's
    /// configuration, --provider); default rsync (--host, --module).
    #[arg(long, requires = "upstream_url", value_parser = ["rsync", "git", "command"])]
    pub kind: Option<String>,
    /// A git or command project's upstream (`https://...`, `git://...`, `ftp://...`).
    #[arg(long, value_name = "URL", requires = "kind")]
    pub upstream_url: Option<String>,
    /// A command project's provider: a `[[providers]]` name of the master's configuration.
    #[arg(long)]
    pub provider: Option<String>,
    /// A command project's parameter (repeatable): `NAME=VALUE`, passed as MIRROR_PARAM_NAME.
    #[arg(long, value_name = "NAME=VALUE", allow_hyphen_values = true)]
    pub param: Vec<String>,
    /// A git project's `ssh://` upstream: the `[[git_ssh_keys]]` name it logs in with.
    #[arg(long, requires = "upstream_url")]
    pub ssh_key: Option<String>,
    #[arg(long, required_unless_present = "file")]
    pub dest: Option<String>,
    /// Cron fields, as `minute=*/30,hour=4` (APScheduler's names; `jitter=SECS` delays each fire).
    #[arg(long, conflicts_with = "interval")]
    pub schedule: Option<String>,
    /// An interval, as `hours=6` or `days=1,start_date=2026-12-05 03:00,jitter=600` (APScheduler's
    /// IntervalTrigger: weeks, days, hours, minutes, seconds, start_date, end_date, timezone, jitter).
    #[arg(long)]
    pub interval: Option<String>,
    /// More upstreams, after --host and --module, in order of preference (repeatable):
    /// `rsync://[user@]host[:port]/module`. Without a password (give them in a file with --file).
    #[arg(long, value_name = "URL")]
    pub upstream: Vec<String>,
    /// Run after each successful run of these projects (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    pub depends_on: Vec<String>,
    /// The master node that runs it (several, comma-separated: nodes sharing one mirror root).
    #[arg(long, value_delimiter = ',')]
    pub node: Vec<String>,
    /// The upstream daemon's port (default 873).
    #[arg(long)]
    pub port: Option<u16>,
    /// The upstream daemon's user.
    #[arg(long)]
    pub user: Option<String>,
    /// The upstream's password, from the first line of this file (never in argv).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password_file: Option<std::path::PathBuf>,
    /// The upstream's password, from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// An rsync option of the basic layer (repeat it: --option=--no-motd --option=-4).
    #[arg(long = "option", allow_hyphen_values = true)]
    pub option: Vec<String>,
    /// The one delete option (--delete, --delete-after, --delete-delay, ...).
    #[arg(long, allow_hyphen_values = true)]
    pub delete: Option<String>,
    /// A run that takes longer is killed (seconds).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Added disabled (no scheduled run until enabled).
    #[arg(long)]
    pub disabled: bool,
}

#[derive(Subcommand)]
pub enum UsersCmd {
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
pub enum SlavesCmd {
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

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Root,
    User,
}
