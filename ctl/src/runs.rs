//! Runs: start one and follow it, stop one, read its log, list a project's runs.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use comfy_table::Table;
use mirror_common::api::{Done, RunStatus, RunStopping, RunView, SyncupResponse, TriggerToken};

use crate::client::{Client, Empty, Exit, Failure, Result, query};
use crate::render::{human_bytes, paint, print_json, table, time_text};

/// `mirrorctl sync PROJECT [--wait]`.
pub async fn sync(c: &Client, project: &str, wait: bool, as_json: bool) -> Result<()> {
    let started: SyncupResponse = c.post(&format!("/syncup/?id={}", query(project)), &Empty {}).await?;
    let run_id = started.run_id;
    if !wait {
        if as_json {
            return print_json(&started);
        }
        match started.follow_up_of {
            Some(going) => println!("run {run_id} of {project} queued: one more pass after run {going}"),
            None => println!("run {run_id} of {project} started"),
        }
        return Ok(());
    }
    let run = follow(c, run_id, project, as_json).await?;
    if as_json {
        print_json(&run)?;
    }
    if run.status != RunStatus::Success {
        return Err(Failure::new(
            Exit::RunFailed,
            format!("run {run_id} of {project}: {} {}", run.status, run.message.unwrap_or_default()),
        ));
    }
    Ok(())
}

/// `mirrorctl trigger-token PROJECT`: the token alone on its line (for a script to keep), or the
/// whole answer with `--json`.
pub async fn trigger_token(c: &Client, project: &str, as_json: bool) -> Result<()> {
    let issued: Done<TriggerToken> = c.post(&format!("/projects/{}/trigger_token", query(project)), &Empty {}).await?;
    if as_json {
        return print_json(&issued);
    }
    println!("{}", issued.body.token);
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
        let ended = run.status.ended();
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

/// The project's newest run.
async fn latest(c: &Client, project: &str) -> Result<Option<RunView>> {
    let latest: Vec<RunView> = c.get(&format!("/runs/?project={}&limit=1", query(project))).await?;
    Ok(latest.into_iter().next())
}

/// `mirrorctl stop PROJECT`: its run that is going ends `stopped`.
pub async fn stop(c: &Client, project: &str, as_json: bool) -> Result<()> {
    let going = latest(c, project)
        .await?
        .filter(|r| !r.status.ended())
        .ok_or_else(|| Failure::new(Exit::Conflict, format!("no run of {project} is going")))?;
    let done: Done<RunStopping> = c.post(&format!("/runs/{}/stop", going.id), &Empty {}).await?;
    if as_json {
        return print_json(&done);
    }
    println!("stopping run {} of {project}", going.id);
    Ok(())
}

/// `mirrorctl logs PROJECT [RUN] [-f]`.
pub async fn logs(c: &Client, project: &str, run: Option<i64>, follow: bool) -> Result<()> {
    let id = match run {
        Some(id) => id,
        None => latest(c, project)
            .await?
            .map(|r| r.id)
            .ok_or_else(|| Failure::new(Exit::NotFound, format!("{project} has no run")))?,
    };
    c.stream_to_stdout(&format!("/runs/{id}/log?follow={follow}")).await
}

/// `mirrorctl history PROJECT`: its runs, newest first.
pub async fn history(c: &Client, project: &str, limit: u32, as_json: bool) -> Result<()> {
    let runs: Vec<RunView> = c.get(&format!("/runs/?project={}&limit={limit}", query(project))).await?;
    if as_json {
        return print_json(&runs);
    }
    println!("{}", runs_table(&runs, true));
    Ok(())
}

/// Runs as a table (with when each ended, or not).
pub fn runs_table(runs: &[RunView], ended: bool) -> Table {
    let header: &[&str] = if ended {
        &["RUN", "TRIGGER", "STATUS", "STARTED", "ENDED", "FILES", "BYTES"]
    } else {
        &["RUN", "TRIGGER", "STATUS", "STARTED", "FILES", "BYTES"]
    };
    let mut t = table(header);
    for r in runs {
        let mut row = vec![r.id.to_string(), r.trigger.to_string(), paint(r.status.as_str()), time_text(r.started_at)];
        if ended {
            row.push(time_text(r.ended_at));
        }
        row.push(r.stats.files_transferred.map_or_else(String::new, |f| f.to_string()));
        row.push(r.stats.bytes_transferred.map_or_else(String::new, |b| b.to_string()));
        t.add_row(row);
    }
    t
}
