//! The rsync daemon the master manages (`rsyncd.manage = true`): one read-only module over the
//! mirror root, an auth user with a 0600 secrets file, `rsync --daemon --no-detach` as a child,
//! started again (with backoff) whenever it exits while the master runs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use mirror_common::Secret;
use mirror_runtime::rsync::{ConfineStatus, Confinement, GroupChild, RsyncCommand, RunAs};
use rand::RngCore;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::RsyncdSettings;
use crate::db::{self, Db};
use crate::retry::backoff;

pub struct ManagedRsyncd {
    stop: watch::Sender<bool>,
    supervisor: JoinHandle<()>,
    pub health: DaemonHealth,
}

/// Whether the managed daemon is running, and why not: `/status/`, `/metrics` and the status page
/// read it.
#[derive(Clone, Default)]
pub struct DaemonHealth(Arc<Mutex<DaemonState>>);

#[derive(Debug, Clone, Default)]
pub struct DaemonState {
    pub up: bool,
    /// Why it is down (rsync missing, the port taken, the daemon's last log line).
    pub reason: Option<String>,
}

impl DaemonHealth {
    pub fn get(&self) -> DaemonState {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, up: bool, reason: Option<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = DaemonState { up, reason };
    }
}

/// How the master starts rsync processes: which rsync, confined or not, as whom.
pub struct Launcher<'a> {
    pub rsync_path: &'a Path,
    pub confine: &'a ConfineStatus,
    pub run_as: Option<RunAs>,
}

/// How to start the daemon, again and again.
struct Launch {
    rsync_path: PathBuf,
    dir: PathBuf,
    host: String,
    port: u16,
    /// The daemon may read only beneath the mirror root (and write only its log and pid file), so
    /// that a slave pulling with `--copy-links` cannot make it follow a symlink out of the tree.
    confinement: Option<Confinement>,
    run_as: Option<RunAs>,
    /// The longest wait between two attempts to start it.
    retry_max: Duration,
    health: DaemonHealth,
}

/// Resolves once the master says stop (the guard `wait_for` returns is not held across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl Launch {
    /// The daemon's `--config=` argument: also how a daemon of ours is told from others.
    fn config_arg(&self) -> String {
        format!("--config={}", self.dir.join("rsyncd.conf").display())
    }

    /// A daemon a previous master left running (one that could not take it along: killed before
    /// the parent-death guard existed, or started without the helper) is stopped: it would hold
    /// the port with the old configuration.
    async fn stop_leftover(&self) {
        let pid_file = self.dir.join("rsyncd.pid");
        let Some(pid) = tokio::fs::read_to_string(&pid_file).await.ok().and_then(|p| p.trim().parse::<u32>().ok())
        else {
            return;
        };
        if mirror_runtime::rsync::kill_orphan(pid, &self.rsync_path, &self.config_arg()) {
            tracing::warn!(pid, "stopped the rsync daemon a previous master left running");
            let deadline = Instant::now() + Duration::from_secs(5);
            while tokio::fs::metadata(format!("/proc/{pid}")).await.is_ok() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Starts the daemon and returns once it accepts connections on its port itself.
    async fn start(&self) -> std::io::Result<anyhow::Result<GroupChild>> {
        if !rsync_installed(&self.rsync_path) {
            return Ok(Err(anyhow::anyhow!(
                "rsync is not installed ({} is not found{}): install rsync; the daemon starts as soon as it is there",
                self.rsync_path.display(),
                if self.rsync_path.components().count() > 1 { "" } else { " in PATH" }
            )));
        }
        self.stop_leftover().await;
        // rsync will not start over a pid file a killed daemon left behind.
        let _ = tokio::fs::remove_file(self.dir.join("rsyncd.pid")).await;
        let command = RsyncCommand {
            program: mirror_runtime::rsync::program_path(&self.rsync_path),
            args: vec![
                "--daemon".into(),
                "--no-detach".into(),
                self.config_arg(),
                format!("--port={}", self.port),
                format!("--address={}", self.host),
            ],
            password: None,
            timeout: Duration::MAX,
            log_file: None,
            log_max_bytes: 0,
            confinement: self.confinement.clone(),
            run_as: self.run_as,
            progress: None,
            child: Default::default(),
        };
        let mut command = command.command();
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        // Its own group: a stop (or a drop, however the master ends) reaches the workers it
        // forked for connections too.
        let mut child = GroupChild::spawn(&mut command)?;
        let pid = child.id().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    let log = tokio::fs::read_to_string(self.dir.join("rsyncd.log")).await.unwrap_or_default();
                    let last = log.lines().last().unwrap_or("no log");
                    return Ok(Err(anyhow::anyhow!(
                        "rsyncd: the daemon exited ({status}) on {}:{}: {last}",
                        self.host,
                        self.port
                    )));
                }
                Err(e) => return Ok(Err(e.into())),
            }
            // Ready when the socket listening on the port is our child's (another daemon may
            // answer there: it is not ours, and ours will fail to bind).
            if pid != 0
                && mirror_runtime::rsync::listens_on(pid, self.port)
                && tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await.is_ok()
            {
                return Ok(Ok(child));
            }
            if Instant::now() > deadline {
                return Ok(Err(anyhow::anyhow!(
                    "rsyncd: the daemon did not listen on {}:{} within 10 s",
                    self.host,
                    self.port
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Keeps the daemon running until told to stop: waits on it; when it exits (or could not
    /// start), starts it again after a backoff. Each new reason it is down is logged once.
    /// `logged`: the reason already logged by the first attempt.
    async fn supervise(
        self,
        mut child: Option<GroupChild>,
        mut stop: watch::Receiver<bool>,
        mut logged: Option<String>,
    ) {
        let mut failures = 0u32;
        loop {
            if let Some(mut running) = child.take() {
                self.health.set(true, None);
                logged = None;
                let since = Instant::now();
                let status = tokio::select! {
                    status = running.wait() => status,
                    _ = stopped(&mut stop) => {
                        // Dropping it kills its whole group (the workers it forked too).
                        let _ = running.kill().await;
                        return;
                    }
                };
                let reason = format!("the daemon exited ({:?})", status.ok());
                tracing::error!(reason = %reason, "the managed rsync daemon exited: slaves cannot pull until it is back");
                self.health.set(false, Some(reason));
                // A daemon that ran for a while before it died starts again quickly.
                failures = if since.elapsed() > Duration::from_secs(60) { 1 } else { failures + 1 };
            }
            let wait = backoff(Duration::from_millis(500), failures).min(self.retry_max);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped(&mut stop) => return,
            }
            match self.start().await {
                Ok(Ok(c)) => {
                    tracing::warn!(port = self.port, "managed rsync daemon running again: slaves can pull");
                    child = Some(c);
                }
                Ok(Err(e)) => self.down(format!("{e:#}"), &mut logged),
                Err(e) => self.down(format!("cannot start it: {e}"), &mut logged),
            }
            failures = failures.saturating_add(1);
        }
    }

    /// Records why the daemon is down; logs it when the reason is new.
    fn down(&self, reason: String, logged: &mut Option<String>) {
        if logged.as_deref() != Some(reason.as_str()) {
            tracing::error!(
                host = %self.host, port = self.port, reason = %reason,
                "the managed rsync daemon is not running: the API is served, slaves cannot pull until it starts \
                 (tried again every {} s at most)",
                self.retry_max.as_secs()
            );
            *logged = Some(reason.clone());
        }
        self.health.set(false, Some(reason));
    }
}

/// Whether `rsync_path` names a program that exists: as given, or by name in our `PATH` (looked
/// up again at each attempt: installed meanwhile, it is found).
fn rsync_installed(rsync_path: &Path) -> bool {
    if rsync_path.components().count() > 1 {
        return rsync_path.is_file();
    }
    let ours = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&ours).any(|d| d.join(rsync_path).is_file())
}

/// The module password: configured, or generated once and kept in the database.
pub async fn password(db: &Db, settings: &RsyncdSettings) -> anyhow::Result<Secret> {
    if let Some(p) = &settings.password {
        return Ok(p.clone());
    }
    let mut fresh = [0u8; 24];
    rand::rng().fill_bytes(&mut fresh);
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fresh);
    Ok(Secret::new(db::settings::get_or_insert(db, "rsyncd_password", &encoded).await?))
}

async fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    // Created 0600 before anything is written to it.
    let _ = tokio::fs::remove_file(path).await;
    tokio::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).await?;
    tokio::fs::write(path, contents).await?;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).await?;
    Ok(())
}

impl ManagedRsyncd {
    /// Writes the configuration and starts the daemon; returns once it accepts connections, or
    /// once it has failed to start (logged, shown in `health`, and tried again).
    pub async fn start(
        settings: &RsyncdSettings,
        launcher: &Launcher<'_>,
        mirror_root: &Path,
        password: &Secret,
    ) -> anyhow::Result<ManagedRsyncd> {
        let rsync_path = launcher.rsync_path;
        let dir = &settings.dir;
        tokio::fs::create_dir_all(dir).await.with_context(|| format!("rsyncd.dir: cannot create {}", dir.display()))?;
        let dir = tokio::fs::canonicalize(dir).await?;
        let secrets = dir.join("rsyncd.secrets");
        let password = password.expose();
        write_private(&secrets, &format!("{}:{password}\n", settings.user)).await?;
        write_private(&dir.join("slave.password"), &format!("{password}\n")).await?;
        // Run as `run_as`, the daemon is that account already (and could not switch); otherwise it
        // keeps our own ids rather than rsync's default of `nobody`.
        let ids = match launcher.run_as {
            Some(_) => String::new(),
            None => {
                use std::os::unix::fs::MetadataExt;
                let m = tokio::fs::metadata("/proc/self").await?;
                format!("uid = {}\ngid = {}\n", m.uid(), m.gid())
            }
        };
        let conf = format!(
            "# Written by mirror-master at each start; edits are lost.\n\
             use chroot = no\n{ids}pid file = {pid}\nlog file = {log}\n\
             # rsync's default of 5 drops the SYNs of a fan-out to more slaves: they wait 1 s to retry.\n\
             listen backlog = 128\n\n\
             [{module}]\n  path = {root}\n  read only = yes\n  list = no\n  auth users = {user}\n  secrets file = {secrets}\n",
            pid = dir.join("rsyncd.pid").display(),
            log = dir.join("rsyncd.log").display(),
            module = settings.module,
            root = mirror_root.display(),
            user = settings.user,
            secrets = secrets.display(),
        );
        tokio::fs::write(dir.join("rsyncd.conf"), conf).await?;
        if let Some(r) = launcher.run_as {
            // The daemon, run as that account, reads its configuration and secrets, writes its log.
            for path in [dir.clone(), dir.join("rsyncd.conf"), secrets.clone()] {
                std::os::unix::fs::chown(&path, Some(r.uid), Some(r.gid))
                    .with_context(|| format!("run_as: cannot hand {} to uid {}", path.display(), r.uid))?;
            }
        }
        let confinement = launcher.confine.confinement(vec![dir.clone()], vec![mirror_root.to_owned()]);
        let health = DaemonHealth::default();
        let launch = Launch {
            rsync_path: rsync_path.to_owned(),
            dir,
            host: settings.host.to_string(),
            port: settings.port,
            confinement,
            run_as: launcher.run_as,
            retry_max: Duration::from_secs(settings.restart_max_secs),
            health: health.clone(),
        };
        // The first attempt before the API serves, so that slaves can pull at once; a daemon that
        // cannot start (rsync missing, the port taken) is reported and tried again, never a
        // reason for the master not to serve.
        let mut logged = None;
        let child = match launch.start().await {
            Ok(Ok(child)) => {
                tracing::info!(host = %settings.host, port = settings.port, module = %settings.module, "managed rsync daemon running");
                Some(child)
            }
            Ok(Err(e)) => {
                launch.down(format!("{e:#}"), &mut logged);
                None
            }
            Err(e) => {
                launch.down(format!("cannot start it: {e}"), &mut logged);
                None
            }
        };
        // Dropping `stop` (the master ending in any way) stops the supervisor and the daemon too.
        let (stop, stop_rx) = watch::channel(false);
        let supervisor = tokio::spawn(launch.supervise(child, stop_rx, logged));
        Ok(ManagedRsyncd { stop, supervisor, health })
    }

    /// Stops the daemon (and its supervision).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.supervisor.await;
    }
}
