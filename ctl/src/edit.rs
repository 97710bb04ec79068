//! Configuration as text: YAML (or JSON) files for `add`, `edit` through `$EDITOR` with the
//! version it read (a change made meanwhile is reported, not overwritten), and a project's versions
//! with their diffs.

use std::io::{BufRead, IsTerminal, Write};

use mirror_common::api::{
    DependsOn, History, Host, MaxDelete, ModulePath, Name, ProjectDetail, ProjectView, Revert, Stages, Targets,
    VersionView,
};
use mirror_common::cron::ScheduleSpec;
use mirror_common::placement::Placement;
use mirror_common::rsync_opts::RsyncOptionsInput;
use serde::Serialize;
use serde_json::Value;

use crate::client::{Client, Exit, Failure, Result, query};

/// A YAML or JSON document as a JSON value, through the bounded reader the master uses (no
/// alias, no duplicate key, bounded depth and size): what the master would refuse is refused here
/// first, naming the place.
pub fn parse_document(text: &str, name: &str) -> Result<Value> {
    use mirror_common::document::{Limits, read_yaml_or_json};
    read_yaml_or_json(text.as_bytes(), &Limits::CONFIGURATION).map_err(|e| {
        let place = e.place().map(|p| format!(" at {p}")).unwrap_or_default();
        Failure::new(Exit::Usage, format!("{name}{place}: {e}"))
    })
}

pub fn to_yaml<T: Serialize + ?Sized>(v: &T) -> Result<String> {
    // Through a JSON value: the same key order, whatever the type.
    let v = serde_json::to_value(v)?;
    serde_norway::to_string(&v).map_err(|e| Failure::new(Exit::Other, format!("cannot write YAML: {e}")))
}

/// The part of a project's view that is its configuration, as `PUT /projects/{id}` takes it: the
/// 2014 fields always (`null` when unset), the rest when the project has them (a PUT is the whole
/// configuration, so what is left out would be removed: targets, dependencies...).
#[derive(Serialize)]
pub struct Editable<'a> {
    project: &'a str,
    rsync_host: &'a Option<Host>,
    rsync_module: &'a Option<ModulePath>,
    rsync_user: &'a Option<Name>,
    rsync_port: Option<u16>,
    dest: &'a str,
    cron_options: &'a Option<ScheduleSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval_options: &'a Option<mirror_common::interval::IntervalSpec>,
    enabled: bool,
    timeout_secs: Option<u64>,
    catch_up: bool,
    max_age_secs: Option<u64>,
    trace: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_delete: Option<MaxDelete>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stages: &'a Option<Stages>,
    flip: bool,
    targets: &'a Targets,
    watch: bool,
    #[serde(skip_serializing_if = "DependsOn::is_empty")]
    depends_on: &'a DependsOn,
    #[serde(skip_serializing_if = "Option::is_none")]
    probe: &'a Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    freshness: bool,
    #[serde(skip_serializing_if = "mirror_common::project::RunHooks::is_empty")]
    hooks: &'a mirror_common::project::RunHooks,
    #[serde(skip_serializing_if = "mirror_common::kinds::Kind::is_rsync")]
    kind: mirror_common::kinds::Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_url: &'a Option<mirror_common::kinds::UpstreamUrl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: &'a Option<mirror_common::api::Name>,
    #[serde(skip_serializing_if = "mirror_common::kinds::Params::is_empty")]
    params: &'a mirror_common::kinds::Params,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh_key: &'a Option<mirror_common::api::Name>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_epoch_file: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: &'a Option<Placement>,
    rsync_options: RsyncOptionsInput,
    /// Several upstreams: all of them (passwords stay as they are), in place of the `rsync_*`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    upstreams: Vec<mirror_common::project::UpstreamConfig>,
}

pub fn editable(p: &ProjectView) -> Editable<'_> {
    let o = &p.rsync_options;
    let single = p.upstreams.is_empty();
    let upstreams = p
        .upstreams
        .iter()
        .map(|u| mirror_common::project::UpstreamConfig {
            host: u.host.clone(),
            module: u.module.clone(),
            port: u.port,
            user: u.user.clone(),
        })
        .collect();
    Editable {
        project: &p.project,
        rsync_host: if single { &p.rsync_host } else { &None },
        rsync_module: if single { &p.rsync_module } else { &None },
        rsync_user: if single { &p.rsync_user } else { &None },
        rsync_port: p.rsync_port.filter(|_| single),
        dest: &p.dest,
        cron_options: &p.cron_options,
        interval_options: &p.interval_options,
        enabled: p.enabled,
        timeout_secs: p.timeout_secs,
        catch_up: p.catch_up,
        max_age_secs: p.max_age_secs,
        trace: p.trace,
        max_delete: p.max_delete,
        stages: &p.stages,
        flip: p.flip,
        targets: &p.targets,
        watch: p.watch,
        depends_on: &p.depends_on,
        probe: &p.probe,
        freshness: p.freshness,
        hooks: &p.hooks,
        kind: p.kind,
        upstream_url: &p.upstream_url,
        provider: &p.provider,
        params: &p.params,
        ssh_key: &p.ssh_key,
        trace_epoch_file: &p.trace_epoch_file,
        node: &p.node,
        rsync_options: RsyncOptionsInput {
            defaults: Some(o.defaults.clone()),
            basic: Some(o.basic.clone()),
            delete: o.delete.clone(),
        },
        upstreams,
    }
}

/// The edited document as `PUT /projects/{id}` takes it, with the version it was read at.
#[derive(Serialize)]
struct Put {
    #[serde(flatten)]
    doc: serde_json::Map<String, Value>,
    version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

/// A line diff (longest common subsequence): lines of `a` not in `b` with `-`, of `b` with `+`,
/// the rest with two spaces.
pub fn line_diff(a: &str, b: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(format!("  {}", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", b[j]));
            j += 1;
        } else {
            out.push(format!("- {}", a[i]));
            i += 1;
        }
    }
    out
}

/// Prints the changed lines of a diff (with a line of context), coloured on a terminal.
pub fn print_diff(diff: &[String]) {
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    for (k, line) in diff.iter().enumerate() {
        let near = |d: &String| !d.starts_with("  ");
        let shown = near(line) || diff.get(k + 1).is_some_and(near) || (k > 0 && near(&diff[k - 1]));
        if !shown {
            continue;
        }
        match (colour, line.chars().next()) {
            (true, Some('+')) => println!("\x1b[32m{line}\x1b[0m"),
            (true, Some('-')) => println!("\x1b[31m{line}\x1b[0m"),
            _ => println!("{line}"),
        }
    }
}

/// `$VISUAL`, else `$EDITOR`, else `vi`, split into a program and its arguments (no shell).
fn editor() -> Vec<String> {
    let chosen = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "vi".into());
    chosen.split_whitespace().map(str::to_owned).collect()
}

fn confirm(question: &str) -> Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// `mirrorctl edit PROJECT`.
pub async fn edit(c: &Client, id: &str, yes: bool, comment: Option<String>) -> Result<()> {
    let view: ProjectDetail<ProjectView> = c.get(&format!("/projects/{}", query(id))).await?;
    let version = view.project.version;
    let original = to_yaml(&editable(&view.project))?;
    let header = format!(
        "# mirrorctl edit {id}, version {version}. Save and quit to apply; an unchanged file changes nothing.\n\
         # rsync_password is not shown: add `rsync_password: ...` to set a new one (\"\" removes it).\n"
    );
    let mut file = tempfile::Builder::new().prefix(&format!("mirrorctl-{id}-")).suffix(".yaml").tempfile()?;
    file.write_all(header.as_bytes())?;
    file.write_all(original.as_bytes())?;
    file.flush()?;
    let argv = editor();
    let (program, args) = argv.split_first().ok_or_else(|| Failure::new(Exit::Usage, "no editor"))?;
    let status = tokio::process::Command::new(program)
        .args(args)
        .arg(file.path())
        .status()
        .await
        .map_err(|e| Failure::new(Exit::Usage, format!("cannot run the editor {program}: {e}")))?;
    if !status.success() {
        return Err(Failure::new(Exit::Other, format!("the editor {program} failed ({status}): nothing changed")));
    }
    let edited_text = std::fs::read_to_string(file.path())?;
    let edited = parse_document(&edited_text, &file.path().display().to_string())?;
    let mut edited_yaml = to_yaml(&edited)?;
    if edited_yaml == original {
        eprintln!("{id}: no change");
        return Ok(());
    }
    let diff = line_diff(&original, &edited_yaml);
    print_diff(&diff);
    if !yes && !confirm(&format!("apply this change to {id} (version {version})?"))? {
        eprintln!("{id}: nothing changed");
        return Ok(());
    }
    let Value::Object(mut doc) = edited else {
        return Err(Failure::new(Exit::Usage, "the edited file is not a mapping of fields: nothing changed"));
    };
    doc.remove("version");
    doc.remove("comment");
    let body = Put { doc, version, comment };
    match c.put::<_, Value>(&format!("/projects/{}", query(id)), &body).await {
        Ok(_) => {
            eprintln!("{id}: saved as version {}", version + 1);
            Ok(())
        }
        Err(f) => {
            // The edit is kept for the operator, whatever went wrong.
            let kept = std::env::temp_dir().join(format!("mirrorctl-{id}-rejected.yaml"));
            edited_yaml.insert_str(0, &header);
            let _ = std::fs::write(&kept, edited_yaml);
            let what = if f.exit == Exit::Conflict {
                format!("{id} was changed by someone else meanwhile: {}", f.message)
            } else {
                f.message
            };
            Err(Failure::new(f.exit, format!("{what}; your edit is kept in {}", kept.display())))
        }
    }
}

/// `mirrorctl versions PROJECT [-p]`: the versions, newest first, and with `-p` what each changed.
pub async fn versions(c: &Client, id: &str, patch: bool, limit: u32, as_json: bool) -> Result<()> {
    let history: History = c.get(&format!("/projects/{}/history?limit={limit}", query(id))).await?;
    if as_json {
        return crate::render::print_json(&history);
    }
    for v in &history.versions {
        let n = v.version;
        let who = v.author.as_deref().unwrap_or("(master)");
        let what = if v.removed { "removed".to_owned() } else { v.changed.join(", ") };
        let comment = v.comment.as_deref().map(|c| format!("  \"{c}\"")).unwrap_or_default();
        println!("v{n}  {}  {who}  {what}{comment}", v.created_at.to_text());
        if patch {
            let config_of = |n: i64| async move {
                if n < 1 {
                    return Ok::<String, Failure>(String::new());
                }
                let v: VersionView = c.get(&format!("/projects/{}/versions/{n}", query(id))).await?;
                v.config.as_ref().map_or_else(|| Ok(String::new()), to_yaml)
            };
            let (before, now) = (config_of(n - 1).await?, config_of(n).await?);
            print_diff(&line_diff(&before, &now));
            println!();
        }
    }
    Ok(())
}

/// `mirrorctl revert PROJECT VERSION [-m WHY]`.
pub async fn revert(
    c: &Client,
    id: &str,
    version: i64,
    comment: Option<String>,
    password: Option<String>,
) -> Result<()> {
    let body = Revert { version, comment, rsync_password: password.map(mirror_common::Secret::new) };
    c.post::<_, Value>(&format!("/projects/{}/revert", query(id)), &body).await?;
    eprintln!("{id}: reverted to the configuration of version {version}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diffs_mark_removed_and_added_lines() {
        let d = line_diff("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(d, ["  a", "+ B", "- b", "  c", "+ d"]);
    }

    #[test]
    fn yaml_and_json_both_read() {
        assert_eq!(parse_document("a: 1\nb: [x]\n", "f").unwrap(), json!({"a": 1, "b": ["x"]}));
        assert_eq!(parse_document("{\"a\": 1}", "f").unwrap(), json!({"a": 1}));
        assert!(parse_document("a: [", "f").is_err());
    }
}
