//! The rsync daemon the master manages (`rsyncd.manage = true`): one read-only module over the
//! mirror root, an auth user with a 0600 secrets file, `rsync --daemon --no-detach` as a child.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use rand::RngCore;
use tokio::process::{Child, Command};

use crate::config::RsyncdSettings;
use crate::db::{self, Db};

pub struct ManagedRsyncd {
    child: Child,
}

/// The module password: configured, or generated once and kept in the database.
pub async fn password(db: &Db, settings: &RsyncdSettings) -> anyhow::Result<String> {
    if let Some(p) = &settings.password {
        return Ok(p.expose().to_owned());
    }
    let mut fresh = [0u8; 24];
    rand::rng().fill_bytes(&mut fresh);
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fresh);
    Ok(db::settings::get_or_insert(db, "rsyncd_password", &encoded).await?)
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
    /// Writes the configuration and starts the daemon; returns once it accepts connections.
    /// `Ok(None)` when rsync is not installed (logged): the API still works, slaves cannot pull.
    pub async fn start(
        settings: &RsyncdSettings,
        rsync_path: &Path,
        mirror_root: &Path,
        password: &str,
    ) -> anyhow::Result<Option<ManagedRsyncd>> {
        let dir = &settings.dir;
        tokio::fs::create_dir_all(dir).await.with_context(|| format!("rsyncd.dir: cannot create {}", dir.display()))?;
        let dir = tokio::fs::canonicalize(dir).await?;
        let secrets = dir.join("rsyncd.secrets");
        write_private(&secrets, &format!("{}:{password}\n", settings.user)).await?;
        write_private(&dir.join("slave.password"), &format!("{password}\n")).await?;
        let (uid, gid) = {
            use std::os::unix::fs::MetadataExt;
            let m = tokio::fs::metadata("/proc/self").await?;
            (m.uid(), m.gid())
        };
        let conf = format!(
            "# Written by mirror-master at each start; edits are lost.\n\
             use chroot = no\nuid = {uid}\ngid = {gid}\npid file = {pid}\nlog file = {log}\n\
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
        let conf_path = dir.join("rsyncd.conf");
        tokio::fs::write(&conf_path, conf).await?;
        let _ = tokio::fs::remove_file(dir.join("rsyncd.pid")).await;
        let spawned = Command::new(rsync_path)
            .arg("--daemon")
            .arg("--no-detach")
            .arg(format!("--config={}", conf_path.display()))
            .arg(format!("--port={}", settings.port))
            .arg(format!("--address={}", settings.host))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(
                    rsync = %rsync_path.display(),
                    "rsync is not installed: the managed rsync daemon is not running and slaves cannot pull \
                     (install rsync, or set rsyncd.manage = false and run a daemon yourself)"
                );
                return Ok(None);
            }
            Err(e) => return Err(e).context("rsyncd: cannot start rsync --daemon"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = tokio::fs::read_to_string(dir.join("rsyncd.log")).await.unwrap_or_default();
                let last = log.lines().last().unwrap_or("no log");
                anyhow::bail!("rsyncd: the daemon exited ({status}) on {}:{}: {last}", settings.host, settings.port);
            }
            if tokio::net::TcpStream::connect((settings.host.as_str(), settings.port)).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("rsyncd: the daemon did not listen on {}:{} within 10 s", settings.host, settings.port);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(host = %settings.host, port = settings.port, module = %settings.module, "managed rsync daemon running");
        Ok(Some(ManagedRsyncd { child }))
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
