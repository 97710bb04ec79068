//! A real OpenSSH server on a loopback port for the tests (Debian's `openssh-server`, installed by
//! scripts/test.sh), run by the test's own user with its own host key, configuration and
//! `authorized_keys`, and a real `ssh` client with a key of its own.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tempfile::TempDir;
use tokio::process::Command;

use crate::rsyncd::free_port;

pub struct Sshd {
    pub dir: TempDir,
    pub port: u16,
    /// Its process group (the daemon and the sessions it forks) is killed when it is dropped.
    child: mirror_runtime::rsync::GroupChild,
}

/// What one `ssh` call gave.
#[derive(Debug)]
pub struct SshOut {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn keygen(path: &Path) {
    let done = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) must be installed");
    assert!(done.success(), "ssh-keygen failed");
}

fn user_name() -> String {
    let out = std::process::Command::new("id").arg("-un").output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Sshd {
    /// Starts sshd with one key allowed, forced to run `command` (the `authorized_keys`
    /// `command="..."` option, with no pty and no forwarding), and waits until it accepts
    /// connections.
    pub async fn start(command: &str) -> Sshd {
        let mut dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("host_key"));
        keygen(&dir.path().join("client_key"));
        let public = std::fs::read_to_string(dir.path().join("client_key.pub")).unwrap();
        let line = format!(
            "command=\"{}\",no-pty,no-port-forwarding,no-X11-forwarding,no-agent-forwarding {}",
            command.replace('"', "\\\""),
            public.trim()
        );
        let keys = dir.path().join("authorized_keys");
        std::fs::write(&keys, format!("{line}\n")).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        // As root, sshd wants its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {keys}\nPidFile {pid}\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin forced-commands-only\nAllowUsers {user}\nLogLevel ERROR\n",
                host = dir.path().join("host_key").display(),
                keys = keys.display(),
                pid = dir.path().join("sshd.pid").display(),
                user = user_name(),
            );
            let config_path = dir.path().join("sshd_config");
            std::fs::write(&config_path, config).unwrap();
            let mut command = Command::new("/usr/sbin/sshd");
            command.arg("-D").arg("-e").arg("-f").arg(&config_path).stdin(Stdio::null()).stdout(Stdio::null());
            command.stderr(std::fs::File::create(dir.path().join("sshd.log")).map(Stdio::from).unwrap());
            let child = mirror_runtime::rsync::GroupChild::spawn(&mut command)
                .expect("sshd (openssh-server) must be installed (scripts/test.sh installs it)");
            let mut sshd = Sshd { dir, port, child };
            if crate::wait_listening(&mut sshd.child, port).await {
                return sshd;
            }
            let _ = sshd.child.kill().await;
            eprintln!("sshd: {}", std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default());
            dir = sshd.dir;
        }
        panic!("sshd did not start");
    }

    /// `ssh user@127.0.0.1 <remote>` with the allowed key: what the forced command made of it.
    pub async fn ssh(&self, remote: &str) -> SshOut {
        let key: PathBuf = self.dir.path().join("client_key");
        let out = Command::new("ssh")
            .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .arg("-i")
            .arg(&key)
            .arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@127.0.0.1", user_name()))
            .arg(remote)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("ssh (openssh-client) must be installed");
        SshOut {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}
