//! `mirrorctl ssh-trigger`: Debian's ftpsync push over ssh. An upstream's `runmirrors` runs
//! `ssh mirror@host sync:all` (or `sync:stage1`, then `sync:stage2` once every mirror has done
//! stage 1); the key's `authorized_keys` line forces this command, which reads what was asked
//! from `SSH_ORIGINAL_COMMAND` as ftpsync does, starts the project's run with the project's
//! trigger token (the only right it has), and returns as ftpsync's own push returns: once what
//! was pushed for is done, with its result as the exit code.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mirror_common::api::{RunStatus, RunView, SyncupResponse};

use crate::client::{Client, Empty, Exit, Failure, Login, Result, query};

/// What a push asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Push {
    pub project: String,
    /// Return once stage 1 of the run is done (`sync:stage1`), not at its end.
    pub stage1_only: bool,
    /// Join the run going, if any, instead of starting one (`sync:stage2`).
    pub stage2_only: bool,
    /// What was ignored, each said back to the pusher (ftpsync's "Unknown option ... ignored").
    pub notes: Vec<String>,
}

/// Reads `SSH_ORIGINAL_COMMAND` as ftpsync's `check_commandline` does: words, each `sync:...`.
pub fn parse(original: &str, project: &str, archives: &[(String, String)]) -> Result<Push> {
    let mut push = Push { project: project.to_owned(), stage1_only: false, stage2_only: false, notes: Vec::new() };
    let (mut stage1, mut stage2, mut all) = (false, false, false);
    for word in original.split_whitespace().take(32) {
        match word {
            "sync:stage1" => stage1 = true,
            "sync:stage2" => stage2 = true,
            "sync:all" => all = true,
            "sync:callback" => push.notes.push("sync:callback ignored: this mirror does not call back".into()),
            "sync:mhop" => push.notes.push("sync:mhop ignored: this mirror pushes no mirror of its own".into()),
            w if w.starts_with("sync:archive:") => {
                // As ftpsync: no `/` or `.` in a remotely given archive name.
                let name: String = w["sync:archive:".len()..].chars().filter(|c| !matches!(c, '/' | '.')).collect();
                let Some((_, p)) = archives.iter().find(|(a, _)| *a == name) else {
                    return Err(Failure::new(Exit::NotFound, format!("archive '{name}' is not mirrored here")));
                };
                push.project = p.clone();
            }
            other => push.notes.push(format!("Unknown option {} ignored", other.escape_debug())),
        }
    }
    // Both stages, or all: the whole run (ftpsync does both then).
    push.stage1_only = stage1 && !stage2 && !all;
    push.stage2_only = stage2 && !stage1 && !all;
    Ok(push)
}

/// `NAME=PROJECT` pairs of `--archive`.
fn archive_pairs(given: &[String]) -> Result<Vec<(String, String)>> {
    given
        .iter()
        .map(|g| {
            g.split_once('=')
                .map(|(a, p)| (a.to_owned(), p.to_owned()))
                .ok_or_else(|| Failure::new(Exit::Usage, format!("--archive: '{g}' is not NAME=PROJECT")))
        })
        .collect()
}

/// The project's trigger token from `DIR/PROJECT.token`, which only its owner may read.
fn token_of(dir: &Path, project: &str) -> Result<String> {
    if project.contains(['/', '\0']) || project.starts_with('.') {
        return Err(Failure::new(Exit::Usage, format!("'{project}' is not a project id")));
    }
    let path = dir.join(format!("{project}.token"));
    let meta = std::fs::metadata(&path)
        .map_err(|e| Failure::new(Exit::Auth, format!("no trigger token for {project}: {}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Failure::new(Exit::Auth, format!("{} may be read by others: chmod 600 it", path.display())));
    }
    let text =
        std::fs::read_to_string(&path).map_err(|e| Failure::new(Exit::Auth, format!("{}: {e}", path.display())))?;
    Ok(text.trim().to_owned())
}

/// `mirrorctl ssh-trigger PROJECT [--archive NAME=PROJECT]... [--token-dir DIR]`.
pub async fn ssh_trigger(url: &str, project: &str, archives: &[String], token_dir: Option<PathBuf>) -> Result<()> {
    let original = std::env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    let push = parse(&original, project, &archive_pairs(archives)?)?;
    for note in &push.notes {
        println!("{note}");
    }
    let dir = match token_dir {
        Some(d) => d,
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".config/mirror-sync/triggers"))
            .ok_or_else(|| Failure::new(Exit::Usage, "no --token-dir and no HOME"))?,
    };
    let c = Client::new(url.to_owned(), Login::Bearer(token_of(&dir, &push.project)?))?;
    let p = query(&push.project);
    let going = if push.stage2_only {
        let latest: Option<RunView> = c.get(&format!("/trigger/{p}/runs/latest")).await.ok();
        latest.filter(|r| !r.status.ended()).map(|r| r.id)
    } else {
        None
    };
    let run = match going {
        Some(id) => id,
        None => {
            let started: SyncupResponse = c.post(&format!("/trigger/{p}"), &Empty {}).await?;
            started.run_id
        }
    };
    loop {
        let r: RunView = c.get(&format!("/trigger/{p}/runs/{run}")).await?;
        if push.stage1_only && r.stage == Some(2) {
            println!("{}: run {run}: stage 1 done", push.project);
            return Ok(());
        }
        if r.status.ended() {
            println!("{}: run {run}: {}", push.project, r.status);
            if r.status != RunStatus::Success {
                return Err(Failure::new(Exit::RunFailed, format!("run {run} of {} ended {}", push.project, r.status)));
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_read_as_ftpsync_reads_them() {
        let archives = vec![("security".to_owned(), "debian-security".to_owned())];
        let p = parse("sync:all", "debian", &archives).unwrap();
        assert_eq!((p.project.as_str(), p.stage1_only, p.stage2_only), ("debian", false, false));
        assert!(parse("sync:stage1", "debian", &archives).unwrap().stage1_only);
        assert!(parse("sync:stage2", "debian", &archives).unwrap().stage2_only);
        let both = parse("sync:stage1 sync:stage2", "debian", &archives).unwrap();
        assert!(!both.stage1_only && !both.stage2_only);
        let p = parse("ftpsync sync:archive:sec.u/rity sync:stage1 sync:callback", "debian", &archives).unwrap();
        assert_eq!(p.project, "debian-security");
        assert_eq!(
            p.notes,
            ["Unknown option ftpsync ignored", "sync:callback ignored: this mirror does not call back"]
        );
        assert_eq!(parse("sync:archive:ports", "debian", &archives).unwrap_err().exit, Exit::NotFound);
        assert!(!parse("", "debian", &archives).unwrap().stage1_only);
    }
}
