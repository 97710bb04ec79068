//! A PostgreSQL server of a test's own (Debian's `postgresql`: `initdb` and `pg_ctl` in a
//! temporary directory, on a free loopback port), for tests that restart the server. As root it
//! runs as the `postgres` user (PostgreSQL refuses root).

use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

pub struct PostgresServer {
    dir: TempDir,
    pub port: u16,
    bin: PathBuf,
}

fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return dir.into();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (scripts/test.sh installs it)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().expect("no PostgreSQL bin directory")
}

fn as_postgres(program: PathBuf) -> Command {
    // Root or not, read from /proc (no unsafe code for geteuid).
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl PostgresServer {
    pub fn start() -> PostgresServer {
        let dir = tempfile::tempdir().unwrap();
        let _ = Command::new("chown").arg("postgres").arg(dir.path()).status();
        let bin = bin_dir();
        let port = crate::rsyncd::free_port();
        let ok = as_postgres(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(ok.status.success(), "initdb: {}", String::from_utf8_lossy(&ok.stderr));
        let server = PostgresServer { dir, port, bin };
        server.pg_ctl(&["start", "-w"]);
        server
    }

    fn pg_ctl(&self, args: &[&str]) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let out = as_postgres(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-o", &options])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `postgres://postgres@127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Stops the server (fast: sessions are ended) and starts it again.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-w", "-m", "fast"]);
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = as_postgres(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
