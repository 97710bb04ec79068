//! Configuration as text: YAML (or JSON) files for `add`, `edit` through `$EDITOR` with the
//! version it read (a change made meanwhile is reported, not overwritten), and a project's versions
//! with their diffs.

use std::io::{BufRead, IsTerminal, Write};

use serde_json::{Value, json};

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

pub fn to_yaml(v: &Value) -> Result<String> {
    serde_norway::to_string(v).map_err(|e| Failure::new(Exit::Other, format!("cannot write YAML: {e}")))
}

/// The part of a project's view that is its configuration, as `PUT /projects/{id}` takes it.
pub fn editable(view: &Value) -> Value {
    let mut doc = serde_json::Map::new();
    for key in [
        "project",
        "rsync_host",
        "rsync_module",
        "rsync_user",
        "rsync_port",
        "dest",
        "cron_options",
        "enabled",
        "timeout_secs",
        "catch_up",
        "max_age_secs",
        "trace",
    ] {
        doc.insert(key.into(), view.get(key).cloned().unwrap_or(Value::Null));
    }
    // The rest of the configuration, when the project has it: a PUT is the whole configuration,
    // so what is left out would be removed (targets, dependencies...).
    for key in ["max_delete", "stages", "flip", "targets", "watch", "depends_on", "probe", "node"] {
        if let Some(v) = view.get(key).filter(|v| !v.is_null()) {
            doc.insert(key.into(), v.clone());
        }
    }
    let o = &view["rsync_options"];
    doc.insert("rsync_options".into(), json!({"defaults": o["defaults"], "basic": o["basic"], "delete": o["delete"]}));
    Value::Object(doc)
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
    let view: Value = c.get(&format!("/projects/{}", query(id))).await?;
    let version = view["version"].as_i64().ok_or_else(|| Failure::new(Exit::Server, "the project has no version"))?;
    let original = to_yaml(&editable(&view))?;
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
    let mut body = edited;
    if let Some(map) = body.as_object_mut() {
        map.insert("version".into(), json!(version));
        if let Some(c) = comment {
            map.insert("comment".into(), json!(c));
        }
    }
    match c.put(&format!("/projects/{}", query(id)), &body).await {
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
    let history: Value = c.get(&format!("/projects/{}/history?limit={limit}", query(id))).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&history)?);
        return Ok(());
    }
    for v in history["versions"].as_array().into_iter().flatten() {
        let n = v["version"].as_i64().unwrap_or(0);
        let when = v["created_at"].as_str().unwrap_or("");
        let who = v["author"].as_str().unwrap_or("(master)");
        let what = if v["removed"] == json!(true) {
            "removed".to_owned()
        } else {
            let changed: Vec<&str> = v["changed"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            changed.join(", ")
        };
        let comment = v["comment"].as_str().map(|c| format!("  \"{c}\"")).unwrap_or_default();
        println!("v{n}  {when}  {who}  {what}{comment}");
        if patch {
            let config_of = |n: i64| async move {
                if n < 1 {
                    return Ok::<String, Failure>(String::new());
                }
                let v: Value = c.get(&format!("/projects/{}/versions/{n}", query(id))).await?;
                match &v["config"] {
                    Value::Null => Ok(String::new()),
                    config => to_yaml(config),
                }
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
    let mut body = json!({"version": version});
    if let Some(m) = comment {
        body["comment"] = json!(m);
    }
    if let Some(p) = password {
        body["rsync_password"] = json!(p);
    }
    c.post(&format!("/projects/{}/revert", query(id)), &body).await?;
    eprintln!("{id}: reverted to the configuration of version {version}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
