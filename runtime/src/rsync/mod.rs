//! Running rsync: argv only (never a shell), the password in the child's environment only, output
//! streamed while it runs (to a log file, a bounded tail and the `--stats` parser), a timeout, and
//! the exit code read with rsync's own meaning. Used by the master and the slave alike.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use mirror_common::api::RunStats;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

pub mod output;

/// How much of the output is kept in memory (and in the database).
pub const TAIL_BYTES: usize = 64 * 1024;

/// The whole environment of an rsync child, besides `RSYNC_PASSWORD`: nothing of the parent's
/// (no `RSYNC_RSH`, `RSYNC_CONNECT_PROG`, `RSYNC_PROXY`, `HOME` with its `.cvsignore`, secrets),
/// and the C locale, so that `--stats` figures always read the same.
const CHILD_ENV: [(&str, &str); 2] = [("PATH", "/usr/local/bin:/usr/bin:/bin"), ("LC_ALL", "C")];

/// `rsync_path` as children will run it: a bare name is looked up in our own `PATH` once, at
/// start, because a child's `PATH` is a fixed short one (left as given when not found, so that the
/// error names it).
pub fn program_path(configured: &Path) -> PathBuf {
    mirror_confine::resolve_program(configured.as_os_str()).unwrap_or_else(|| configured.to_path_buf())
}

/// The priority and memory limit the helper sets for a program it starts.
pub use mirror_confine::{IoClass, Launch, Limits, Policy};

/// How a child is started: through the `mirror-confine` helper, which stays as its parent and kills
/// its process group when this process is gone (even by `kill -9`) and, with a policy, confines it.
#[derive(Debug, Clone)]
pub struct Confinement {
    pub helper: PathBuf,
    /// `None`: not confined (the guard only).
    pub policy: Option<mirror_confine::Policy>,
    /// Priority and memory limit the helper sets, confined or not.
    pub limits: mirror_confine::Limits,
}

/// Whether rsync children are confined (configuration key `confine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfineMode {
    /// Confined when the kernel has Landlock and the helper is found; otherwise runs go on
    /// unconfined and the options that would need it are refused.
    #[default]
    Auto,
    /// Refuse to start without confinement.
    Required,
    /// Never confine (benchmarks, or a host where something else confines).
    Off,
}

/// What the start-up found: the helper (none: children are started directly, and could outlive a
/// crash of ours), whether it confines, and why.
#[derive(Debug, Clone)]
pub struct ConfineStatus {
    pub helper: Option<PathBuf>,
    /// Children are confined by Landlock.
    pub confining: bool,
    /// For the log and the status endpoints: "landlock: fully enforced", or why not.
    pub detail: String,
}

impl ConfineStatus {
    /// No helper: children are neither confined nor tied to us (unit tests).
    pub fn none(detail: &str) -> ConfineStatus {
        ConfineStatus { helper: None, confining: false, detail: detail.to_owned() }
    }

    pub fn confined(&self) -> bool {
        self.confining && self.helper.is_some()
    }

    /// How to start a child allowed to write beneath `write` and read beneath `read`.
    pub fn confinement(&self, write: Vec<PathBuf>, read: Vec<PathBuf>) -> Option<Confinement> {
        self.helper.as_ref().map(|h| Confinement {
            helper: h.clone(),
            policy: self.confined().then_some(mirror_confine::Policy { write, read }),
            limits: mirror_confine::Limits::default(),
        })
    }

    /// At start: finds the helper, asks it (off the async workers) whether this kernel confines,
    /// and logs the answer. `what`: what is confined, for the log ("rsync run", "pull").
    pub async fn start(mode: ConfineMode, helper: Option<PathBuf>, what: &str) -> Result<ConfineStatus, String> {
        let status = tokio::task::spawn_blocking(move || ConfineStatus::detect(mode, helper.as_deref()))
            .await
            .map_err(|e| e.to_string())??;
        if status.helper.is_none() {
            tracing::warn!(
                "{} not found: a {what} started now would outlive a crash of this process",
                mirror_confine::HELPER_NAME
            );
        }
        if status.confined() {
            tracing::info!(confinement = %status.detail, "every {what} is confined by Landlock");
        } else {
            tracing::warn!(
                confinement = %status.detail,
                "{what}s are NOT confined: options that name a path and per-directory merge rules are refused"
            );
        }
        Ok(status)
    }

    /// Finds the helper and asks it whether this kernel confines (blocking: call at start).
    pub fn detect(mode: ConfineMode, configured_helper: Option<&Path>) -> Result<ConfineStatus, String> {
        let helper = mirror_confine::find_helper(configured_helper).filter(|h| h.is_file());
        if mode == ConfineMode::Off {
            return Ok(ConfineStatus { helper, confining: false, detail: "off (confine = \"off\")".into() });
        }
        let found = helper
            .clone()
            .ok_or_else(|| format!("{} not found beside this program or in PATH", mirror_confine::HELPER_NAME))
            .and_then(|helper| mirror_confine::probe(&helper).map(|detail| (helper, detail)));
        match (found, mode) {
            (Ok((helper, detail)), _) => Ok(ConfineStatus { helper: Some(helper), confining: true, detail }),
            (Err(why), ConfineMode::Required) => {
                Err(format!("confine = \"required\", but runs cannot be confined: {why}"))
            }
            // A kernel that could confine, and a helper missing or broken: an installation
            // mistake (the master copied without mirror-confine beside it), never a reason to run
            // every rsync unconfined and unsupervised without being asked to.
            (Err(why), ConfineMode::Auto) if mirror_confine::kernel_has_landlock() => Err(format!(
                "this kernel has Landlock, but runs cannot be confined: {why}. Install {} beside this \
                 program (or name it with confine_helper), or set confine = \"off\" to run every rsync \
                 unconfined",
                mirror_confine::HELPER_NAME
            )),
            // The helper still ties the children to us, unconfined.
            (Err(why), _) => Ok(ConfineStatus { helper, confining: false, detail: format!("not confined: {why}") }),
        }
    }
}

/// The account a child runs as, when the parent runs as root and is told to drop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// The `run_as` setting: only a process started as root can run children as another user.
    pub fn configured(user: Option<&str>) -> Result<Option<RunAs>, String> {
        let Some(user) = user else { return Ok(None) };
        let account = RunAs::lookup(user)?;
        if !nix::unistd::geteuid().is_root() {
            return Err("only a process started as root can run rsync as another user".into());
        }
        tracing::info!(run_as = user, uid = account.uid, gid = account.gid, "rsync runs as an unprivileged account");
        Ok(Some(account))
    }

    /// Looks up a user name (or a numeric uid) in the system's user database.
    pub fn lookup(user: &str) -> Result<RunAs, String> {
        let found = match user.parse::<u32>() {
            Ok(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)),
            Err(_) => nix::unistd::User::from_name(user),
        };
        match found {
            Ok(Some(u)) if u.uid.is_root() => Err(format!("'{user}' is root: name an unprivileged account")),
            Ok(Some(u)) => Ok(RunAs { uid: u.uid.as_raw(), gid: u.gid.as_raw() }),
            Ok(None) => Err(format!("no user '{user}' on this system")),
            Err(e) => Err(format!("cannot look up user '{user}': {e}")),
        }
    }
}

/// One rsync invocation.
#[derive(Debug)]
pub struct RsyncCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Set as `RSYNC_PASSWORD` on this child only.
    pub password: Option<mirror_common::Secret>,
    pub timeout: Duration,
    /// Where the full output goes (appended), if anywhere.
    pub log_file: Option<PathBuf>,
    /// The most that one run writes to its log file.
    pub log_max_bytes: u64,
    /// `None`: rsync runs unconfined (the host has no Landlock, or confinement is turned off).
    pub confinement: Option<Confinement>,
    pub run_as: Option<RunAs>,
    /// Told each progress line rsync prints (`--info=progress2`), which then goes to neither the
    /// log nor the tail: it is a state, not an event.
    pub progress: Option<std::sync::Arc<watch::Sender<Option<mirror_common::api::RunProgress>>>>,
    /// What the program is (rsync, git, a provider's), its extra variables and working directory.
    pub child: Child,
}

/// Which program a command runs: how its output is read and its exit code told.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Speaks {
    /// rsync: `--stats`, itemized changes, progress, rsync's exit codes.
    #[default]
    Rsync,
    /// git: the references a fetch updated, the bytes received; its `fatal:` line.
    Git,
    /// Any other program: its output is logged as it is, its last line tells a failure.
    Plain,
}

/// The rest of a child's setup beside rsync's.
#[derive(Debug, Clone, Default)]
pub struct Child {
    pub speaks: Speaks,
    /// Set after the fixed `PATH` and `LC_ALL` (a provider's variables, tunasync's).
    pub env: Vec<(String, String)>,
    /// Where it starts (a provider runs in the project's tree).
    pub cwd: Option<PathBuf>,
}

impl RsyncCommand {
    /// The process to spawn: rsync itself, or the helper that confines it and then execs it.
    pub fn command(&self) -> Command {
        let mut command = match &self.confinement {
            Some(c) => {
                let mut command = Command::new(&c.helper);
                let launch = mirror_confine::Launch {
                    policy: c.policy.clone(),
                    parent: Some(std::process::id()),
                    limits: c.limits,
                };
                command.args(launch.helper_args(&self.program, &self.args));
                command
            }
            None => {
                let mut command = Command::new(&self.program);
                command.args(&self.args);
                command
            }
        };
        command.env_clear().envs(CHILD_ENV);
        command.envs(self.child.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.child.cwd {
            command.current_dir(dir);
        }
        if let Some(p) = &self.password {
            command.env("RSYNC_PASSWORD", p.expose());
        }
        if let Some(r) = self.run_as {
            command.uid(r.uid).gid(r.gid);
        }
        command
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ending {
    Success,
    /// Exit 24: some source files vanished during the transfer. The copy is otherwise complete.
    SuccessWithWarning,
    Failed,
    Timeout,
    /// Stopped from outside (shutdown, project removed).
    Cancelled,
}

/// What one rsync invocation did.
#[derive(Debug, Clone)]
pub struct RsyncOutcome {
    pub exit_code: Option<i32>,
    pub ending: Ending,
    /// rsync's meaning of the exit code, or why it did not run.
    pub message: String,
    pub stats: RunStats,
    /// The last [`TAIL_BYTES`] of the output (stdout and stderr interleaved by line).
    pub tail: String,
    pub elapsed: Duration,
    /// The daemon refused us (`@ERROR: auth failed`, unknown module): retrying will not help.
    pub daemon_refused: bool,
}

impl RsyncOutcome {
    pub fn succeeded(&self) -> bool {
        matches!(self.ending, Ending::Success | Ending::SuccessWithWarning)
    }

    /// Connection-type failures, worth a retry: rsync codes 5, 10, 12, 30, 35, unless the daemon
    /// answered and refused.
    pub fn is_retryable(&self) -> bool {
        self.ending == Ending::Failed && !self.daemon_refused && matches!(self.exit_code, Some(5 | 10 | 12 | 30 | 35))
    }
}

/// rsync's documented meaning of an exit code.
pub fn exit_meaning(code: i32) -> &'static str {
    match code {
        0 => "success",
        1 => "syntax or usage error",
        2 => "protocol incompatibility",
        3 => "errors selecting input/output files, dirs",
        4 => "requested action not supported",
        5 => "error starting client-server protocol",
        6 => "daemon unable to append to log-file",
        10 => "error in socket I/O",
        11 => "error in file I/O",
        12 => "error in rsync protocol data stream",
        13 => "errors with program diagnostics",
        14 => "error in IPC code",
        20 => "received SIGUSR1 or SIGINT",
        21 => "some error returned by waitpid()",
        22 => "error allocating core memory buffers",
        23 => "partial transfer due to error",
        24 => "partial transfer due to vanished source files",
        25 => "the --max-delete limit stopped deletions",
        30 => "timeout in data send/receive",
        35 => "timeout waiting for daemon connection",
        126 => "not started: it could not be confined or executed (see mirror-confine's message)",
        _ => "unknown rsync exit code",
    }
}

/// A bounded buffer keeping the last `cap` bytes, cut at a line start where possible.
struct Tail {
    buf: std::collections::VecDeque<u8>,
    cap: usize,
}

impl Tail {
    fn push_line(&mut self, line: &str) {
        self.buf.extend(line.as_bytes());
        self.buf.push_back(b'\n');
        while self.buf.len() > self.cap {
            self.buf.pop_front();
        }
    }

    fn into_string(self) -> String {
        let bytes: Vec<u8> = self.buf.into();
        let start =
            if bytes.len() >= self.cap { bytes.iter().position(|b| *b == b'\n').map_or(0, |p| p + 1) } else { 0 };
        String::from_utf8_lossy(&bytes[start..]).into_owned()
    }
}

/// Where each output line goes: the stats parser, the bounded tail, the log file.
struct Output<'a> {
    tail: Tail,
    stats: RunStats,
    daemon_refused: bool,
    log: Option<tokio::io::BufWriter<tokio::fs::File>>,
    /// Bytes written to the log so far, and the most it may take.
    logged: u64,
    log_max: u64,
    progress: Option<&'a watch::Sender<Option<mirror_common::api::RunProgress>>>,
    speaks: Speaks,
}

impl<'a> Output<'a> {
    fn new(cmd: &'a RsyncCommand, log: Option<tokio::io::BufWriter<tokio::fs::File>>) -> Output<'a> {
        Output {
            tail: Tail { buf: Default::default(), cap: TAIL_BYTES },
            stats: RunStats::default(),
            daemon_refused: false,
            log,
            logged: 0,
            log_max: cmd.log_max_bytes,
            progress: cmd.progress.as_deref(),
            speaks: cmd.child.speaks,
        }
    }

    async fn take(&mut self, line: &str) {
        match self.speaks {
            Speaks::Rsync => {
                if let Some(tx) = self.progress
                    && let Some(p) = output::progress(line)
                {
                    tx.send_replace(Some(p));
                    return;
                }
                output::absorb(&mut self.stats, line);
                self.daemon_refused |= line.starts_with("@ERROR");
            }
            Speaks::Git => {
                output::absorb_git(&mut self.stats, line);
                if output::is_git_progress(line) {
                    return;
                }
            }
            Speaks::Plain => {}
        }
        if let Some(f) = self.log.as_mut() {
            // A full disk must not stop the transfer; the tail still has the output.
            let size = line.len() as u64 + 1;
            if self.logged + size <= self.log_max {
                let _ = f.write_all(line.as_bytes()).await;
                let _ = f.write_all(b"\n").await;
                // Flushed line by line: `GET /runs/{id}/log?follow=true` shows it as it comes.
                let _ = f.flush().await;
            } else if self.logged <= self.log_max {
                let note = format!("[mirror-sync: log truncated, it reached {} bytes]\n", self.log_max);
                let _ = f.write_all(note.as_bytes()).await;
            }
            self.logged = self.logged.saturating_add(size);
        }
        self.tail.push_line(line);
    }
}

/// The longest output line kept whole; the rest of a longer one (a hostile daemon's MOTD) is
/// dropped, so that no line can take unbounded memory.
const MAX_LINE: usize = 16 * 1024;

/// Reads one line of at most [`MAX_LINE`] bytes (without its `\n`); `None` at the end. rsync
/// rewrites its progress line with `\r`: each state is a line of its own, and the empty ones such
/// a rewrite makes are skipped.
async fn read_bounded_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let available = match reader.fill_buf().await {
            Ok([]) => return (!line.is_empty()).then_some(line),
            Ok(b) => b,
            Err(_) => return None,
        };
        let (chunk, done) = match available.iter().position(|b| *b == b'\n' || *b == b'\r') {
            Some(i) => (&available[..i], Some((i + 1, available[i]))),
            None => (available, None),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = done.map_or(available.len(), |(used, _)| used);
        reader.consume(used);
        match done {
            Some((_, b'\r')) if line.is_empty() => {}
            Some(_) => return Some(line),
            None => {}
        }
    }
}

fn forward_lines<R: AsyncRead + Unpin + Send + 'static>(reader: R, tx: mpsc::Sender<String>) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(reader);
        while let Some(raw) = read_bounded_line(&mut reader).await {
            let line = String::from_utf8_lossy(&raw).into_owned();
            if tx.send(line).await.is_err() {
                break;
            }
        }
    });
}

/// Called with the child's pid once it has started (the master records it, to clean up after a crash).
pub type OnStart<'a> = &'a (dyn Fn(u32) + Send + Sync);

/// Runs rsync to the end, a timeout, or `cancel` turning true. Errors only when it cannot start.
pub async fn run_rsync(
    cmd: &RsyncCommand,
    mut cancel: watch::Receiver<bool>,
    on_start: OnStart<'_>,
) -> std::io::Result<RsyncOutcome> {
    let started = Instant::now();
    let mut command = cmd.command();
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let log = match &cmd.log_file {
        Some(path) => Some(open_log(path).await?),
        None => None,
    };
    // Its own process group, so that a kill reaches the receiver process rsync forks too; and
    // the group ends with this function, however it ends.
    let mut child = GroupChild::spawn(&mut command)?;
    let pid = child.id();
    if let Some(pid) = pid {
        on_start(pid);
    }
    let (tx, mut rx) = mpsc::channel::<String>(256);
    if let Some(out) = child.stdout.take() {
        forward_lines(out, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        forward_lines(err, tx.clone());
    }
    drop(tx);

    let mut output = Output::new(cmd, log);
    let deadline = tokio::time::sleep(cmd.timeout);
    tokio::pin!(deadline);
    let mut stopped_by: Option<Ending> = None;
    let mut output_open = true;
    let status = loop {
        tokio::select! {
            line = rx.recv(), if output_open => match line {
                Some(line) => output.take(&line).await,
                None => output_open = false,
            },
            status = child.wait() => break status?,
            _ = &mut deadline, if stopped_by.is_none() => {
                stopped_by = Some(Ending::Timeout);
                kill_group(pid, &mut child).await;
            }
            changed = cancel.changed(), if stopped_by.is_none() => {
                if changed.is_err() || *cancel.borrow() {
                    stopped_by = Some(Ending::Cancelled);
                    kill_group(pid, &mut child).await;
                }
            }
        }
    };
    // The rest of the output, after the process ended.
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
        output.take(&line).await;
    }
    if let Some(f) = output.log.as_mut() {
        let _ = f.flush().await;
    }
    let Output { tail, stats, daemon_refused, .. } = output;
    let exit_code = status.code();
    let (ending, message) = judge(stopped_by, exit_code, cmd, &tail);
    Ok(RsyncOutcome {
        exit_code,
        ending,
        message,
        stats,
        tail: tail.into_string(),
        elapsed: started.elapsed(),
        daemon_refused,
    })
}

/// How a run ended and its message: why it was stopped, or the exit code with the program's own
/// meaning of it (rsync's documented codes; git and others: the code) and its own words.
fn judge(stopped_by: Option<Ending>, exit_code: Option<i32>, cmd: &RsyncCommand, tail: &Tail) -> (Ending, String) {
    let speaks = cmd.child.speaks;
    let name = match speaks {
        Speaks::Rsync => "rsync".to_owned(),
        _ => cmd.program.file_name().map_or_else(|| "the program".into(), |n| n.to_string_lossy().into_owned()),
    };
    let meaning = |c: i32| match (speaks, c) {
        (Speaks::Rsync, _) | (_, 126) => exit_meaning(c),
        _ => "failed",
    };
    let (ending, message) = match (stopped_by, exit_code) {
        (Some(Ending::Timeout), _) => (Ending::Timeout, format!("killed after the {}s timeout", cmd.timeout.as_secs())),
        (Some(_), _) => (Ending::Cancelled, "stopped before it finished".to_owned()),
        (None, Some(0)) => (Ending::Success, exit_meaning(0).to_owned()),
        (None, Some(24)) if speaks == Speaks::Rsync => {
            (Ending::SuccessWithWarning, format!("warning: {}", exit_meaning(24)))
        }
        (None, Some(c)) => (Ending::Failed, format!("{name} exit {c}: {}", meaning(c))),
        (None, None) => (Ending::Failed, format!("{name} was killed by a signal")),
    };
    let message = match last_error_line(tail, speaks) {
        Some(e) if ending == Ending::Failed => format!("{message}: {e}"),
        _ => message,
    };
    (ending, message)
}

/// The program's own words for the failure: rsync's `@ERROR` line, or its first `rsync:` /
/// `rsync error:` line; git's `fatal:` or `error:` line; another program's last line.
fn last_error_line(tail: &Tail, speaks: Speaks) -> Option<String> {
    let text =
        String::from_utf8_lossy(tail.buf.as_slices().0).into_owned() + &String::from_utf8_lossy(tail.buf.as_slices().1);
    let lines: Vec<&str> = text.lines().collect();
    let first = |starts: &[&str]| lines.iter().find(|l| starts.iter().any(|s| l.starts_with(s)));
    let found = match speaks {
        Speaks::Rsync => first(&["@ERROR"]).or_else(|| first(&["rsync:", "rsync error:", "mirror-confine:"])),
        Speaks::Git => first(&["fatal:", "error:", "mirror-confine:"]),
        Speaks::Plain => first(&["mirror-confine:"]).or_else(|| lines.iter().rev().find(|l| !l.trim().is_empty())),
    };
    found.map(|l| l.trim().chars().take(500).collect())
}

async fn open_log(path: &Path) -> std::io::Result<tokio::io::BufWriter<tokio::fs::File>> {
    // One trip to the blocking pool for both steps: a burst of runs opens many logs at once.
    let path = path.to_owned();
    let file = tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(&path)
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(tokio::io::BufWriter::new(tokio::fs::File::from_std(file)))
}

/// SIGKILL to the whole process group, then to the child itself should the group be gone.
async fn kill_group(pid: Option<u32>, child: &mut tokio::process::Child) {
    if let Some(pid) = pid {
        kill_process_group(pid);
    }
    let _ = child.start_kill();
}

/// Kills what a previous process of ours left of a child it started with `process_group(0)` as
/// `pid` (after a crash): every process of that group that runs `program` with `marker` among its
/// arguments (the leader may be gone already while the processes it forked go on). Returns
/// whether any was found.
pub fn kill_orphan(pid: u32, program: &Path, marker: &str) -> bool {
    let mut found = false;
    for p in processes() {
        if (p == pid || process_group_of(p) == Some(pid)) && is_program_with(p, program, marker) {
            kill_now(p);
            found = true;
        }
    }
    found
}

/// Every process id on the machine (ours excepted).
fn processes() -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|p| *p != me)
        .collect()
}

/// The process group of `pid` (field 5 of `/proc/<pid>/stat`, after the command in parentheses).
fn process_group_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

fn kill_now(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Kills every process of `program` whose arguments contain `marker`: what a previous instance
/// of ours left running when it died without taking its children along. Returns how many. It
/// looks again until none is left (one may have forked meanwhile), and waits (2 s at most) until
/// the killed ones are gone: a new pull must not start while an old one can still write.
pub fn kill_leftovers(program: &Path, marker: &str) -> usize {
    let mut killed = Vec::new();
    for _ in 0..5 {
        let left: Vec<u32> = processes().into_iter().filter(|p| is_program_with(*p, program, marker)).collect();
        if left.is_empty() {
            break;
        }
        for p in left {
            kill_now(p);
            if !killed.contains(&p) {
                killed.push(p);
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(400);
        while killed.iter().any(|p| is_alive(*p)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    killed.len()
}

/// Whether `pid` still runs (a zombie, or a process gone, does not).
fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Whether process `pid` runs `program` with an argument containing `marker`.
fn is_program_with(pid: u32, program: &Path, marker: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let prog_name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    args.first().is_some_and(|a| a.ends_with(&prog_name)) && args.iter().any(|a| a.contains(marker))
}

/// A child started in a process group of its own (`process_group(0)`): however it is dropped (an
/// error, a panic, a shutdown, a task aborted, a master dropped inside a test) the whole group is
/// killed, not only the child as `kill_on_drop` would. Started through the helper, the child is
/// the helper and rsync is in its group: killing the helper alone would leave rsync running.
pub struct GroupChild {
    child: tokio::process::Child,
    pgid: Option<u32>,
}

impl GroupChild {
    /// Spawns `command` in a new process group of its own.
    pub fn spawn(command: &mut tokio::process::Command) -> std::io::Result<GroupChild> {
        command.process_group(0).kill_on_drop(true);
        let child = command.spawn()?;
        let pgid = child.id();
        Ok(GroupChild { child, pgid })
    }
}

impl std::ops::Deref for GroupChild {
    type Target = tokio::process::Child;
    fn deref(&self) -> &tokio::process::Child {
        &self.child
    }
}

impl std::ops::DerefMut for GroupChild {
    fn deref_mut(&mut self) -> &mut tokio::process::Child {
        &mut self.child
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        // The group outlives its leader while any member lives: its id is not reused meanwhile.
        if let Some(pgid) = self.pgid {
            kill_process_group(pgid);
        }
    }
}

/// Kills the process group `pid` leads (a child started with `process_group(0)`), workers and all.
pub fn kill_process_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Whether process `pid`, or a process of the group it leads, holds the socket listening on TCP
/// `port` (read from `/proc`): a daemon that answers on the port may be another one, left by an
/// earlier run. (Started through the helper, the daemon is the helper's child, in its group.)
pub fn listens_on(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl, local_address (hex ip:hex port), rem_address, st (0A: listen), ..., inode (10th)
            let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9)) else {
                continue;
            };
            let listening_port = local.rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && listening_port == Some(port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    let holds = |p: u32| {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{p}/fd")) else { return false };
        fds.flatten().filter_map(|fd| std::fs::read_link(fd.path()).ok()).any(|target| {
            let target = target.to_string_lossy();
            inodes.iter().any(|i| *i == target)
        })
    };
    !inodes.is_empty()
        && (holds(pid) || processes().into_iter().filter(|p| process_group_of(*p) == Some(pid)).any(holds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_found_on_its_owner() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listens_on(std::process::id(), port));
        drop(listener);
        assert!(!listens_on(std::process::id(), port));
        // PID 1 does not hold our port.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!listens_on(1, listener.local_addr().unwrap().port()));
    }

    #[test]
    fn the_tail_is_bounded_and_starts_at_a_line() {
        let mut t = Tail { buf: Default::default(), cap: 16 };
        for i in 0..10 {
            t.push_line(&format!("line {i}"));
        }
        assert_eq!(t.into_string(), "line 8\nline 9\n");
    }

    #[tokio::test]
    async fn long_lines_and_logs_are_bounded() {
        let mut input: &[u8] = b"short\n";
        let long = vec![b'x'; 3 * MAX_LINE];
        let mut reader = tokio::io::BufReader::with_capacity(1024, &long[..]);
        assert_eq!(read_bounded_line(&mut reader).await.unwrap().len(), MAX_LINE);
        assert!(read_bounded_line(&mut reader).await.is_none());
        let mut r = tokio::io::BufReader::new(&mut input);
        assert_eq!(read_bounded_line(&mut r).await.unwrap(), b"short");
        let dir = std::env::temp_dir().join(format!("mirror-runtime-log-{}", std::process::id()));
        let (_tx, rx) = watch::channel(false);
        let cmd = RsyncCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "for i in 1 2 3 4 5 6 7 8 9 10; do echo line-$i-0123456789; done".into()],
            password: None,
            timeout: Duration::from_secs(10),
            log_file: Some(dir.join("run.log")),
            log_max_bytes: 100,
            confinement: None,
            run_as: None,
            progress: None,
            child: Child::default(),
        };
        let o = run_rsync(&cmd, rx, &|_| {}).await.unwrap();
        assert_eq!(o.tail.lines().count(), 10, "the tail keeps everything");
        let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(log.len() < 200 && log.ends_with("reached 100 bytes]\n"), "{log}");
    }

    #[tokio::test]
    async fn progress_lines_are_a_state_and_stay_out_of_the_log() {
        let dir = std::env::temp_dir().join(format!("mirror-runtime-progress-{}", std::process::id()));
        let (_tx, rx) = watch::channel(false);
        let (progress, seen) = watch::channel(None);
        let script = r"printf '%b' 'f1\n\r      32,768   0%    0.00kB/s    0:00:00  \r     300,000   3%  254.85MB/s    0:00:00 (xfr#1, to-chk=29/31)\nf2\n'";
        let cmd = RsyncCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            password: None,
            timeout: Duration::from_secs(10),
            log_file: Some(dir.join("run.log")),
            log_max_bytes: 1 << 20,
            confinement: None,
            run_as: None,
            progress: Some(std::sync::Arc::new(progress)),
            child: Child::default(),
        };
        run_rsync(&cmd, rx, &|_| {}).await.unwrap();
        let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(log, "f1\nf2\n");
        let last = seen.borrow().clone().unwrap();
        assert_eq!((last.bytes, last.percent, last.files_transferred), (300_000, 3, 1));
        assert_eq!((last.files_to_check, last.files_known, last.rate.as_str()), (Some(29), Some(31), "254.85MB/s"));
    }

    #[tokio::test]
    async fn exit_codes_timeouts_and_secrets() {
        let (_tx, rx) = watch::channel(false);
        let run = |args: Vec<&str>, timeout: u64| RsyncCommand {
            program: "/bin/sh".into(),
            args: args.into_iter().map(String::from).collect(),
            password: Some(mirror_common::Secret::new("s3cret")),
            timeout: Duration::from_secs(timeout),
            log_file: None,
            log_max_bytes: 0,
            confinement: None,
            run_as: None,
            progress: None,
            child: Child::default(),
        };
        // The password is in the child's environment, not its argv; nothing else of ours is.
        let o = run_rsync(
            &run(vec!["-c", "echo \"$RSYNC_PASSWORD\" \"${HOME:-nohome}\" \"$LC_ALL\"; exit 24"], 10),
            rx.clone(),
            &|_| {},
        )
        .await
        .unwrap();
        assert_eq!(
            (o.ending, o.exit_code, o.tail.as_str()),
            (Ending::SuccessWithWarning, Some(24), "s3cret nohome C\n")
        );
        let o =
            run_rsync(&run(vec!["-c", "echo '@ERROR: auth failed on module x' >&2; exit 5"], 10), rx.clone(), &|_| {})
                .await
                .unwrap();
        assert!(o.daemon_refused && !o.is_retryable() && o.message.contains("auth failed"), "{o:?}");
        let o = run_rsync(&run(vec!["-c", "exit 10"], 10), rx.clone(), &|_| {}).await.unwrap();
        assert!(o.is_retryable());
        let o = run_rsync(&run(vec!["-c", "sleep 30"], 1), rx.clone(), &|_| {}).await.unwrap();
        assert_eq!(o.ending, Ending::Timeout);
        assert!(o.elapsed < Duration::from_secs(10));
        let (tx, rx) = watch::channel(false);
        let handle = tokio::spawn(async move { run_rsync(&run(vec!["-c", "sleep 30"], 60), rx, &|_| {}).await });
        tx.send(true).unwrap();
        assert_eq!(handle.await.unwrap().unwrap().ending, Ending::Cancelled);
    }
}
