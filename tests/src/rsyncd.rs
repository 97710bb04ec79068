//! A real rsync daemon (Debian's `rsync --daemon`) on a free loopback port, serving a generated
//! tree as module `data` (user `mirror`, password from a 0600 secrets file) and `open` (no auth).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tempfile::TempDir;
use tokio::process::Command;

pub const UPSTREAM_USER: &str = "mirror";
pub const UPSTREAM_PASSWORD: &str = "upstream-Pa55-word-xyz";

pub struct Upstream {
    pub dir: TempDir,
    pub port: u16,
    /// Its process group (the daemon and the workers it forks) is killed when it is dropped.
    child: mirror_runtime::rsync::GroupChild,
}

impl Upstream {
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the daemon over an empty `data` directory and waits until it accepts connections.
    pub async fn start() -> Upstream {
        let mut dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let secrets = dir.path().join("rsyncd.secrets");
        std::fs::write(&secrets, format!("{UPSTREAM_USER}:{UPSTREAM_PASSWORD}\n")).unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (uid, gid) = owner_ids();
        let conf = format!(
            "use chroot = no\nuid = {uid}\ngid = {gid}\nlog file = {log}\npid file = {pid}\n\
             [data]\n  path = {data}\n  read only = yes\n  auth users = {UPSTREAM_USER}\n  secrets file = {secrets}\n\
             [open]\n  path = {data}\n  read only = yes\n",
            log = dir.path().join("rsyncd.log").display(),
            pid = dir.path().join("rsyncd.pid").display(),
            data = data.display(),
            secrets = secrets.display(),
        );
        let conf_path = dir.path().join("rsyncd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        // A free port: bind, read it, let it go. Retried should another process take it meanwhile.
        for _ in 0..5 {
            let port = free_port();
            let mut command = Command::new("rsync");
            command
                .arg("--daemon")
                .arg("--no-detach")
                .arg(format!("--config={}", conf_path.display()))
                .arg(format!("--port={port}"))
                .arg("--address=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = mirror_runtime::rsync::GroupChild::spawn(&mut command)
                .expect("rsync must be installed (scripts/test.sh installs it)");
            let mut upstream = Upstream { dir, port, child };
            if crate::wait_listening(&mut upstream.child, port).await {
                return upstream;
            }
            let _ = upstream.child.kill().await;
            dir = upstream.dir;
        }
        panic!("the rsync daemon did not start");
    }
}

/// The daemon reads the tree as the user running the tests.
fn owner_ids() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| (m.uid(), m.gid())).unwrap_or((0, 0))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Writes a small tree: nested directories, text files, an empty file, a larger binary file.
pub fn generate_tree(root: &Path, files: usize) {
    for i in 0..files {
        let sub = root.join(format!("dir{}", i % 5)).join(format!("sub{}", i % 3));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("file{i}.txt")), format!("content of file {i}\n").repeat(i % 7 + 1)).unwrap();
    }
    std::fs::write(root.join("empty"), b"").unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(root.join("big.bin"), big).unwrap();
}

/// Every regular file under `root`, relative path → contents.
pub fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.insert(path.strip_prefix(base).unwrap().to_string_lossy().into_owned(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The command lines of every process on the machine (what `ps` shows).
pub fn all_command_lines() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())
                && let Ok(raw) = std::fs::read(e.path().join("cmdline"))
            {
                out.push(String::from_utf8_lossy(&raw).replace('\0', " "));
            }
        }
    }
    out
}
