//! Upstreams that are not rsync daemons, on loopback ports: a real `git daemon` serving bare
//! repositories, with a working clone to commit and push from, and a real HTTP server (Python's
//! `http.server`) serving a directory with its listings, for lftp and wget.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tempfile::TempDir;
use tokio::process::Command;

use crate::rsyncd::free_port;

/// A server process on a port; its process group is killed when it is dropped.
pub struct Served {
    pub dir: TempDir,
    pub port: u16,
    _child: mirror_runtime::rsync::GroupChild,
}

impl Served {
    /// Starts `argv` (with `{port}` replaced) until one of five free ports is taken, and waits
    /// until it accepts connections.
    async fn start(dir: TempDir, argv: &[&str], what: &str) -> Served {
        for _ in 0..5 {
            let port = free_port();
            let args: Vec<String> = argv[1..].iter().map(|a| a.replace("{port}", &port.to_string())).collect();
            let mut command = Command::new(argv[0]);
            command.args(&args).current_dir(dir.path()).stdin(Stdio::null()).stdout(Stdio::null());
            command.stderr(std::fs::File::create(dir.path().join(format!("{what}.log"))).map(Stdio::from).unwrap());
            let mut child = mirror_runtime::rsync::GroupChild::spawn(&mut command)
                .unwrap_or_else(|e| panic!("{} must be installed (scripts/test.sh installs it): {e}", argv[0]));
            if crate::wait_listening(&mut child, port).await {
                return Served { dir, port, _child: child };
            }
            let _ = child.kill().await;
        }
        panic!("{what} did not start");
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("served")
    }
}

/// Runs git with `args`, identity and defaults fixed, and returns its stdout; panics on failure.
pub fn git(args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=Upstream", "-c", "user.email=up@example.org", "-c", "init.defaultBranch=main"])
        .args(["-c", "protocol.file.allow=always"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git must be installed");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A `git daemon` exporting the bare repositories under its root, and a working clone of
/// `repo.git` there to make commits in and push.
pub struct GitUpstream {
    pub served: Served,
}

impl GitUpstream {
    pub async fn start() -> GitUpstream {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("served");
        std::fs::create_dir_all(&root).unwrap();
        let bare = root.join("repo.git");
        git(&["init", "--bare", "-q", &bare.display().to_string()]);
        let work = dir.path().join("work");
        git(&["init", "-q", &work.display().to_string()]);
        let root_arg = format!("--base-path={}", root.display());
        let served = Served::start(
            dir,
            &[
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                "--port={port}",
                &root_arg,
                &root.display().to_string(),
            ],
            "git-daemon",
        )
        .await;
        GitUpstream { served }
    }

    pub fn url(&self) -> String {
        format!("git://127.0.0.1:{}/repo.git", self.served.port)
    }

    pub fn bare(&self) -> PathBuf {
        self.served.root().join("repo.git")
    }

    pub fn work(&self) -> PathBuf {
        self.served.dir.path().join("work")
    }

    /// Commits `files` (path, text) in the working clone on its current branch; returns the commit.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        let work = self.work().display().to_string();
        for (path, text) in files {
            let p = self.work().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git(&["-C", &work, "add", "-A"]);
        git(&["-C", &work, "commit", "-q", "-m", message]);
        git(&["-C", &work, "rev-parse", "HEAD"])
    }

    /// Pushes the working clone's branches (forced, deleting what it no longer has) and tags.
    pub fn push(&self) {
        let work = self.work().display().to_string();
        git(&[
            "-C",
            &work,
            "push",
            "-q",
            "--force",
            "--prune",
            &self.bare().display().to_string(),
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ]);
    }
}

/// The commit `reference` names in the bare repository `repo`; `None` when it has no such one.
pub fn rev(repo: &Path, reference: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg(format!("--git-dir={}", repo.display()))
        .args(["rev-parse", "--verify", "-q", reference])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git must be installed");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// An HTTP server with directory listings (Python's `http.server`) serving [`Served::root`].
pub async fn http_upstream() -> Served {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("served")).unwrap();
    Served::start(
        dir,
        &["python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", "served", "{port}"],
        "http-server",
    )
    .await
}
