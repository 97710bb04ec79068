//! `mirrorctl push` and `mirrorctl targets`: a project's object-store targets.

use std::collections::HashMap;
use std::time::Duration;

use mirror_common::targets::{PushStarted, PushStatus, TargetView};

use crate::client::{Client, Empty, Exit, Failure, Result, query};
use crate::render::{paint, print_json, table, time_text};

async fn views(c: &Client, project: &str) -> Result<Vec<TargetView>> {
    c.get(&format!("/targets?id={}", query(project))).await
}

/// `mirrorctl push PROJECT [--target T] [--wait]`.
pub async fn push(c: &Client, project: &str, target: Option<&str>, wait: bool, json: bool) -> Result<()> {
    let before: HashMap<String, i64> = views(c, project)
        .await?
        .into_iter()
        .map(|t| (t.target.name.to_string(), t.last_push.map_or(0, |p| p.id)))
        .collect();
    let path = match target {
        Some(t) => format!("/targets/sync?id={}&target={}", query(project), query(t)),
        None => format!("/targets/sync?id={}", query(project)),
    };
    let started: PushStarted = c.post(&path, &Empty {}).await?;
    let names = started.targets.clone();
    if !wait {
        if json {
            return print_json(&started);
        }
        println!("push of {project} to {} started", names.join(", "));
        return Ok(());
    }
    let ended = loop {
        let now = views(c, project).await?;
        let done: Vec<&TargetView> = now
            .iter()
            .filter(|t| names.contains(&t.target.name.to_string()))
            .filter(|t| {
                t.last_push.as_ref().is_some_and(|p| {
                    p.id > before.get(t.target.name.as_str()).copied().unwrap_or(0) && p.status != PushStatus::Running
                })
            })
            .collect();
        if done.len() == names.len() {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let pushes: Vec<_> = ended.iter().filter_map(|t| t.last_push.clone()).collect();
    if json {
        print_json(&pushes)?;
    } else {
        for p in &pushes {
            println!(
                "{} {}: {} uploaded ({} bytes), {} deleted, {} unchanged, {} skipped{}",
                p.target,
                paint(p.status.as_str()),
                p.uploaded,
                p.bytes_uploaded,
                p.deleted,
                p.unchanged,
                p.skipped,
                if p.message.is_empty() { String::new() } else { format!(": {}", p.message) }
            );
        }
    }
    match pushes.iter().find(|p| p.status != PushStatus::Success) {
        Some(p) => Err(Failure::new(Exit::RunFailed, format!("push {} to {} failed: {}", p.id, p.target, p.message))),
        None => Ok(()),
    }
}

/// `mirrorctl targets PROJECT`.
pub async fn list(c: &Client, project: &str, json: bool) -> Result<()> {
    let targets = views(c, project).await?;
    if json {
        return print_json(&targets);
    }
    let mut t = table(&["TARGET", "WHERE", "LAST PUSH", "STATUS", "UPLOADED", "DELETED", "LAST SUCCESS"]);
    for v in &targets {
        let s = &v.target;
        let place = format!("{}/{}/{}", s.endpoint.trim_end_matches('/'), s.bucket, s.target_prefix);
        let p = v.last_push.as_ref();
        t.add_row(vec![
            s.name.to_string(),
            place,
            time_text(p.map(|p| p.started_at)),
            paint(p.map_or("-", |p| p.status.as_str())),
            p.map_or("-".into(), |p| p.uploaded.to_string()),
            p.map_or("-".into(), |p| p.deleted.to_string()),
            time_text(v.last_success),
        ]);
    }
    println!("{t}");
    Ok(())
}
