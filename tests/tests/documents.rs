//! Hostile documents (issue 31) against the real `mirror-master` binary: alias bombs, deep
//! nesting in JSON and YAML (block and flow), duplicate keys at every level, and oversized
//! documents, sent to `POST /import` and placed in `projects_dir`. Each is refused with a 400 or
//! 413 that names what is wrong, within a second; the next request is answered at once, and the
//! master's memory is back within 50 MB of where it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use mirror_tests::{Auth, MasterProcess, ROOT_PASSWORD};
use reqwest::StatusCode;

/// `levels` levels of nine aliases each to the level below: 9^levels strings once expanded.
fn alias_bomb(levels: usize, pad_to: usize) -> String {
    let mut doc = String::from("projects:\n  - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..levels {
        let prev = format!("*a{}", i - 1);
        doc.push_str(&format!("  - &a{i} [{}]\n", [prev.as_str(); 9].join(", ")));
    }
    // Padding before the aliases, so that the reader must get through it first.
    let mut pad = String::from("# a site's notes\n");
    while pad.len() + doc.len() < pad_to {
        pad.push_str("# lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\n");
    }
    pad + &doc
}

fn deep_block(levels: usize) -> String {
    let mut doc = String::new();
    for i in 0..levels {
        doc.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
    }
    doc
}

/// The documents, each with what its refusal must name.
fn hostile() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        ("alias bomb, 40 KiB", alias_bomb(12, 40 * 1024).into_bytes(), "alias"),
        ("alias bomb, 391 KiB", alias_bomb(30, 391 * 1024).into_bytes(), "alias"),
        (
            "JSON nested 200,000 deep",
            format!("{{\"projects\": {}{}}}", "[".repeat(200_000), "]".repeat(200_000)).into_bytes(),
            "deeper",
        ),
        (
            "YAML flow nested 1,000,000 deep",
            format!("projects: {}{}\n", "[".repeat(1_000_000), "]".repeat(1_000_000)).into_bytes(),
            "",
        ),
        ("YAML block nested 1,000 deep", deep_block(1_000).into_bytes(), "deeper"),
        ("the top-level key twice", b"projects: []\nprojects: []\n".to_vec(), "projects"),
        (
            "a user's role twice",
            b"users:\n  - username: mallory\n    role: user\n    role: root\n".to_vec(),
            "users[0].role",
        ),
        (
            "a key twice three levels down",
            b"projects:\n  - id: p\n    rsync_options:\n      basic: [--no-motd]\n      basic: []\n".to_vec(),
            "projects[0].rsync_options.basic",
        ),
        (
            "duplicate keys in JSON",
            br#"{"users": [{"username": "mallory", "role": "user", "role": "root"}]}"#.to_vec(),
            "users[0].role",
        ),
        ("a 9 MiB document", vec![b'#'; 9 * 1024 * 1024], ""),
    ]
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

#[tokio::test]
async fn hostile_documents_are_refused_quickly_by_import_and_projects_dir() {
    let work = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().to_str().unwrap().to_owned();
    let env = [
        ("MIRROR_ROOT_PASSWORD", ROOT_PASSWORD),
        ("MIRROR_MASTER__CONFINE", "off"),
        ("MIRROR_MASTER__PROJECTS_DIR", dir.as_str()),
    ];
    let m = MasterProcess::start(work.path(), &env).await;
    let pid = m.child.id().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    // Warm up (the first requests allocate the master's caches and pools).
    for _ in 0..3 {
        assert_eq!(m.api.get("/list_projects/", &Auth::root()).await.status, StatusCode::OK);
    }
    let before = rss_mb(pid);
    for (what, doc, names) in hostile() {
        // POST /import.
        let started = Instant::now();
        let r = client
            .post(format!("{}/import", m.api.base))
            .basic_auth("root", Some(ROOT_PASSWORD))
            .header("content-type", "application/yaml")
            .body(doc.clone())
            .send()
            .await;
        let took = started.elapsed();
        match r {
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                assert!(
                    status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
                    "{what}: {status} {text}"
                );
                assert!(text.contains(names), "{what}: the refusal does not name {names}: {text}");
            }
            // A body far over the limit may be cut off while it is still being sent.
            Err(e) => assert!(doc.len() > 8 * 1024 * 1024, "{what}: {e}"),
        }
        assert!(took < Duration::from_secs(1), "{what}: refused after {took:?}");
        let next = Instant::now();
        assert_eq!(m.api.get("/list_projects/", &Auth::None).await.status, StatusCode::OK);
        assert!(next.elapsed() < Duration::from_secs(1), "{what}: the next request took {:?}", next.elapsed());

        // The same document as a file of projects_dir, applied by POST /reload.
        let file = files.path().join("hostile.yaml");
        std::fs::write(&file, &doc).unwrap();
        let started = Instant::now();
        let r = m.api.post("/reload", &serde_json::json!({}), &Auth::root()).await;
        assert!(started.elapsed() < Duration::from_secs(1), "{what}: reload refused after {:?}", started.elapsed());
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::PAYLOAD_TOO_LARGE,
            "{what}: {} {}",
            r.status,
            r.text
        );
        assert!(r.text.contains("hostile.yaml"), "{what}: the refusal does not name the file: {}", r.text);
        std::fs::remove_file(&file).unwrap();
        let now = rss_mb(pid);
        println!("{what}: import refused in {} ms; master at {now:.0} MB (from {before:.0} MB)", took.as_millis());
        assert!(now < before + 50.0, "{what}: the master grew from {before:.0} MB to {now:.0} MB");
    }
    // And nothing was applied: the master holds no project.
    let listed = m.api.get("/list_projects/", &Auth::root()).await.body;
    assert_eq!(listed, serde_json::json!([]));
    m.kill().await;
}
