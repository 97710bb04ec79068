//! Every `curl` call the README and docs/ show names an operation the running master's OpenAPI
//! document has (its path, with or without the trailing slash, and its method), and every field of
//! a JSON body it sends is one that operation's body takes: the docs cannot drift from the API.
//! And the docs' tours (a `sh` block that begins by setting `M=`, the master's URL) are run as
//! written against a real master (with `mirrorctl` logged in): every call in them must be answered
//! without an error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use mirror_tests::{Auth, TestMaster};
use serde_json::Value;

/// One `curl` call of the docs.
#[derive(Debug)]
struct Call {
    at: String,
    method: String,
    path: String,
    body: Option<String>,
}

/// Splits a shell line as sh would (quotes, backslashes), up to an unquoted `#` comment.
fn words(line: &str) -> Vec<String> {
    scan(line).0
}

/// The words of a line, and whether it ends inside single quotes (a body that goes on).
fn scan(line: &str) -> (Vec<String>, bool) {
    let (mut out, mut word, mut any) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                any = true;
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '\'' {
                        closed = true;
                        break;
                    }
                    word.push(c);
                }
                if !closed {
                    return (out, true);
                }
            }
            '"' => {
                any = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => word.extend(chars.next()),
            '#' if !any => break,
            c if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => {
                any = true;
                word.push(c);
            }
        }
    }
    if any {
        out.push(word);
    }
    (out, false)
}

/// The curl calls of a Markdown file's fenced blocks, continuation lines joined.
fn calls_in(file: &Path) -> Vec<Call> {
    let text = std::fs::read_to_string(file).unwrap();
    let (mut calls, mut fenced, mut pending, mut start) = (Vec::new(), false, String::new(), 0);
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            continue;
        }
        if pending.is_empty() {
            start = n + 1;
        }
        // A body spread over lines inside quotes, or a line ending in `\`, goes on.
        pending.push_str(line.strip_suffix('\\').unwrap_or(line));
        pending.push('\n');
        if line.ends_with('\\') || scan(&pending.replace('\n', " ")).1 {
            continue;
        }
        let line = std::mem::take(&mut pending);
        let Some(at) = line.find("curl ") else { continue };
        let at_text = format!("{}:{start}", file.display());
        calls.extend(call_of(&words(&line[at..].replace('\n', " ")), at_text));
    }
    calls
}

fn call_of(words: &[String], at: String) -> Option<Call> {
    let (mut method, mut body, mut url) = (None, None, None);
    let mut it = words.iter().skip(1);
    while let Some(w) = it.next() {
        match w.as_str() {
            "-X" | "--request" => method = it.next().cloned(),
            "-d" | "--data" | "--data-binary" | "--data-raw" => body = it.next().cloned(),
            "-H" | "-u" | "-o" | "--header" | "--user" | "-w" | "--max-time" => {
                it.next();
            }
            w if w.contains("/") && (w.starts_with("$M") || w.starts_with("http") || w.starts_with('"')) => {
                url = Some(w.to_owned())
            }
            _ => {}
        }
    }
    let url = url?;
    let path = match url.strip_prefix("$M") {
        Some(p) => p.to_owned(),
        None => format!("/{}", url.splitn(4, '/').nth(3).unwrap_or_default()),
    };
    let path = path.split('?').next().unwrap_or_default().to_owned();
    let method = method.unwrap_or_else(|| if body.is_some() { "POST".into() } else { "GET".into() });
    Some(Call { at, method: method.to_lowercase(), path, body })
}

/// The OpenAPI operation `call` names, if any: a path whose segments match (a `{name}` matches
/// any), with or without the trailing slash.
fn operation<'a>(spec: &'a Value, call: &Call) -> Option<&'a Value> {
    let want: Vec<&str> = call.path.trim_end_matches('/').split('/').collect();
    spec["paths"].as_object()?.iter().find_map(|(template, item)| {
        let have: Vec<&str> = template.trim_end_matches('/').split('/').collect();
        let same = have.len() == want.len()
            && have.iter().zip(&want).all(|(h, w)| h == w || (h.starts_with('{') && !w.is_empty()));
        same.then(|| &item[call.method.as_str()]).filter(|op| op.is_object())
    })
}

/// The properties of an operation's JSON body (those of each part of an `allOf` too); `None` when
/// it has no object schema.
fn body_fields(spec: &Value, op: &Value) -> Option<Vec<String>> {
    fields_of(spec, &op["requestBody"]["content"]["application/json"]["schema"])
}

fn fields_of<'a>(spec: &'a Value, mut schema: &'a Value) -> Option<Vec<String>> {
    if let Some(r) = schema["$ref"].as_str() {
        schema = &spec["components"]["schemas"][r.rsplit('/').next()?];
    }
    if let Some(parts) = schema["allOf"].as_array() {
        return Some(parts.iter().filter_map(|p| fields_of(spec, p)).flatten().collect());
    }
    Some(schema["properties"].as_object()?.keys().cloned().collect())
}

fn doc_files() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs")).unwrap().flatten().map(|e| e.path()).collect();
    docs.sort();
    files.extend(docs.into_iter().filter(|p| p.extension().is_some_and(|e| e == "md")));
    files
}

#[tokio::test]
async fn every_curl_call_in_the_docs_names_an_operation_and_fields_the_master_has() {
    let m = TestMaster::start().await;
    let spec = m.api.get("/openapi.json", &Auth::None).await.body;
    let calls: Vec<Call> = doc_files().iter().flat_map(|f| calls_in(f)).collect();
    assert!(calls.len() > 30, "the docs' curl calls were not found: {calls:?}");
    let mut wrong = Vec::new();
    for call in &calls {
        let Some(op) = operation(&spec, call) else {
            wrong.push(format!("{}: {} {} is no operation of /openapi.json", call.at, call.method, call.path));
            continue;
        };
        let Some(body) = call.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else { continue };
        let (Some(given), Some(fields)) = (body.as_object(), body_fields(&spec, op)) else { continue };
        for key in given.keys().filter(|k| !fields.contains(k)) {
            wrong.push(format!("{}: {} {} takes no field '{key}'", call.at, call.method, call.path));
        }
    }
    assert!(wrong.is_empty(), "{} of {} curl calls drifted:\n{}", wrong.len(), calls.len(), wrong.join("\n"));
}

/// The `sh` blocks of `text` whose first line sets `M=` (the master's URL): the docs' tours.
fn tours(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        match (&mut block, line.trim_end()) {
            (None, "```sh") => block = Some(String::new()),
            (Some(b), "```") => {
                if b.starts_with("M=") {
                    out.push(std::mem::take(b));
                }
                block = None;
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

/// Runs one tour against `m` with its built programs on `PATH` and `mirrorctl` logged in as root:
/// the tour's own first line (`M=...; A=...`) gives way to this master and login, and every curl
/// fails on an HTTP error (printing the answer), stopping the tour there.
async fn run_tour(m: &TestMaster, tour: &str) -> std::process::Output {
    let rest = tour.split_once('\n').map_or("", |(_, rest)| rest);
    let script = format!(
        "set -euo pipefail\ncurl() {{ command curl --fail-with-body --show-error \"$@\"; }}\n\
         M={}; A=\"-u root:{}\"\n{rest}",
        m.api.base,
        mirror_tests::ROOT_PASSWORD
    );
    let programs = mirror_tests::binary("mirrorctl").parent().unwrap().to_path_buf();
    let path = format!("{}:{}", programs.display(), std::env::var("PATH").unwrap_or_default());
    let home = tempfile::tempdir().unwrap();
    tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("PATH", path)
        .env("HOME", home.path())
        .env("MIRRORCTL_URL", &m.api.base)
        .env("MIRRORCTL_USER", "root")
        .env("MIRRORCTL_PASSWORD", mirror_tests::ROOT_PASSWORD)
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_tours_run_as_written_against_a_real_master() {
    let upstream = mirror_tests::rsyncd::Upstream::start().await;
    mirror_tests::rsyncd::generate_tree(&upstream.data(), 4);
    let mut ran = Vec::new();
    for file in doc_files() {
        for tour in tours(&std::fs::read_to_string(&file).unwrap()) {
            // Each on a master of its own; a tour that adds no project finds `fedora` there.
            let m = TestMaster::start().await;
            if !tour.contains("/add_project/") {
                let fedora = serde_json::json!({"project": "fedora", "rsync_host": "127.0.0.1",
                    "rsync_port": upstream.port, "rsync_module": "open/", "dest": "pub/fedora"});
                let r = m.api.post("/add_project/", &fedora, &Auth::root()).await;
                assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.text);
            }
            let out = run_tour(&m, &tour).await;
            assert!(
                out.status.success(),
                "the tour of {} failed:\n{}\n{}",
                file.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            ran.push(file.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert_eq!(ran, ["api.md", "runs.md"], "the docs' tours");
}

#[test]
fn shell_words_and_calls_are_read_as_sh_would() {
    assert_eq!(
        words(r#"curl -s $A "$M/runs/7" -d '{"a": 1}'  # a comment"#),
        ["curl", "-s", "$A", "$M/runs/7", "-d", r#"{"a": 1}"#]
    );
    let call = call_of(&words("curl -s $A -X POST \"$M/runs/7/stop?x=1\""), String::new()).unwrap();
    assert_eq!((call.method.as_str(), call.path.as_str()), ("post", "/runs/7/stop"));
    let call = call_of(&words("curl http://master:8080/add_project/ -d '{}'"), String::new()).unwrap();
    assert_eq!((call.method.as_str(), call.path.as_str()), ("post", "/add_project/"));
}
