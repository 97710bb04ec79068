//! `mirrorctl export`, `import`, `diff` and `copy`: a master's configuration as YAML or JSON, in
//! one file, on stdin/stdout, or as a directory of one file per resource (`projects/<id>.yaml`,
//! `slaves/<host>_<port>.yaml`, `users/<name>.yaml`).

use std::path::Path;

use mirror_common::api::{ConfigDocument, ImportReport, ProjectDoc, SlaveDoc, UserDoc};
use serde::Serialize;
use serde_json::Value;

use crate::client::{Client, Exit, Failure, Result, query};
use crate::edit::{parse_document, to_yaml};

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Failure::new(Exit::Other, format!("{}: {e}", path.display())))
}

fn render<T: Serialize>(v: &T, yaml: bool) -> Result<String> {
    if yaml { to_yaml(&serde_json::to_value(v)?) } else { Ok(format!("{}\n", serde_json::to_string_pretty(v)?)) }
}

/// Writes each item of one kind to `DIR/<kind>/<name>.<ext>`; what the master no longer has goes
/// from the directory too.
fn write_kind<T: Serialize>(dir: &Path, kind: &str, items: &[T], name_of: fn(&T) -> String, yaml: bool) -> Result<()> {
    let ext = if yaml { "yaml" } else { "json" };
    let sub = dir.join(kind);
    std::fs::create_dir_all(&sub)?;
    for entry in std::fs::read_dir(&sub)?.flatten() {
        if entry.path().extension().is_some_and(|e| e == ext) {
            std::fs::remove_file(entry.path())?;
        }
    }
    for item in items {
        write_file(&sub.join(format!("{}.{ext}", name_of(item))), &render(item, yaml)?)?;
    }
    Ok(())
}

/// `mirrorctl export [--format yaml|json] [DIR|FILE|-]`.
pub async fn export(c: &Client, format: &str, dest: Option<&str>) -> Result<()> {
    let yaml = match format {
        "yaml" | "yml" => true,
        "json" => false,
        other => return Err(Failure::new(Exit::Usage, format!("--format: '{other}' is not yaml or json"))),
    };
    let doc: ConfigDocument = c.get("/export").await?;
    match dest {
        None | Some("-") => print!("{}", render(&doc, yaml)?),
        Some(d) if d.ends_with('/') || Path::new(d).is_dir() => {
            let dir = Path::new(d);
            write_kind(dir, "projects", doc.projects.as_deref().unwrap_or_default(), project_file, yaml)?;
            write_kind(dir, "slaves", doc.slaves.as_deref().unwrap_or_default(), slave_file, yaml)?;
            write_kind(dir, "users", doc.users.as_deref().unwrap_or_default(), user_file, yaml)?;
            eprintln!("exported to {}", dir.display());
        }
        Some(f) => write_file(Path::new(f), &render(&doc, yaml)?)?,
    }
    Ok(())
}

fn project_file(p: &ProjectDoc) -> String {
    p.id.to_string()
}

fn user_file(u: &UserDoc) -> String {
    u.username.to_string()
}

fn slave_file(s: &SlaveDoc) -> String {
    format!("{}_{}", s.hostname, s.port)
}

/// A document from a file, a directory (each file of `projects/` and `slaves/`) or `-` (stdin).
pub fn read_source(src: &str) -> Result<Value> {
    if src == "-" {
        return parse_document(&std::io::read_to_string(std::io::stdin())?, "stdin");
    }
    let path = Path::new(src);
    if !path.is_dir() {
        let text = std::fs::read_to_string(path).map_err(|e| Failure::new(Exit::Usage, format!("{src}: {e}")))?;
        return parse_document(&text, src);
    }
    let mut doc = serde_json::Map::new();
    for kind in ["projects", "slaves", "users"] {
        let sub = path.join(kind);
        if !sub.is_dir() {
            continue;
        }
        let mut files: Vec<_> = std::fs::read_dir(&sub)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
            .collect();
        files.sort();
        let mut items = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f)?;
            items.push(parse_document(&text, &f.display().to_string())?);
        }
        doc.insert(kind.into(), Value::Array(items));
    }
    Ok(Value::Object(doc))
}

/// Sends a document to `/import`; prints the changes. Returns how many there were.
pub async fn send<D: Serialize>(
    c: &Client,
    doc: &D,
    prune: bool,
    dry_run: bool,
    comment: Option<&str>,
    as_json: bool,
) -> Result<usize> {
    let mut path = format!("/import?prune={prune}&dry_run={dry_run}");
    if let Some(m) = comment {
        path.push_str(&format!("&comment={}", query(m)));
    }
    let report: ImportReport = c.post(&path, doc).await?;
    print_report(&report, dry_run, as_json)?;
    Ok(report.changes.len())
}

pub fn print_report(report: &ImportReport, dry_run: bool, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print_changes(report, dry_run);
    }
    Ok(())
}

fn print_changes(report: &ImportReport, dry_run: bool) {
    for ch in &report.changes {
        let sign = match ch.action.as_str() {
            "create" => "+",
            "remove" => "-",
            _ => "~",
        };
        let fields = if ch.fields.is_empty() { String::new() } else { format!(" ({})", ch.fields.join(", ")) };
        println!("{sign} {} {}{fields}", ch.kind, ch.key);
    }
    for t in &report.slave_tokens {
        println!("token of slave {}:{}: {}", t.hostname, t.port, t.token);
    }
    let (changes, unchanged) = (report.changes.len(), report.unchanged);
    let verb = if dry_run { "would change" } else { "changed" };
    if changes == 0 {
        eprintln!("no differences ({unchanged} unchanged)");
    } else {
        eprintln!("{verb} {changes}, {unchanged} unchanged");
    }
}

/// `mirrorctl copy --from URL --to URL`: what one master has, into another.
pub async fn copy(
    from: &Client,
    to: &Client,
    prune: bool,
    dry_run: bool,
    comment: Option<&str>,
    as_json: bool,
) -> Result<()> {
    let doc: ConfigDocument = from.get("/export").await?;
    let comment = comment.map_or_else(|| format!("copied from {}", from.url), str::to_owned);
    send(to, &doc, prune, dry_run, Some(&comment), as_json).await?;
    Ok(())
}
