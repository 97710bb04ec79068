//! Bench (issue 15): the first push of 10,000 small files to a real S3-compatible server
//! (s3s-fs, in this process, over loopback), then an unchanged re-push of them (goal: under 2 s),
//! then the same re-push by a master that knows nothing of the bucket (reads each object's stored
//! hash). Prints figures; asserts nothing about time. Run with `bench/targets.sh`.
//!
//! With `BENCH_S3_ENDPOINT` (and `BENCH_S3_KEY`, `BENCH_S3_SECRET`) it pushes to that server's
//! bucket `bench` instead (which must exist and be empty); requests are then not counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use mirror_tests::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use mirror_tests::{Auth, TestMaster, wait_for};
use serde_json::{Value, json};

const FILES: usize = 10_000;

async fn push(m: &TestMaster) -> (Value, f64) {
    let api = &m.api;
    let before = api.get("/targets/pushes?id=bench&limit=1", &Auth::root()).await.body[0]["id"].as_i64().unwrap_or(0);
    let started = Instant::now();
    api.post("/targets/sync?id=bench", &json!({}), &Auth::root()).await;
    let p = wait_for(600, "the push", || async {
        let p = api.get("/targets/pushes?id=bench&limit=1", &Auth::root()).await.body[0].clone();
        (p["id"].as_i64().unwrap_or(0) > before && p["status"] != json!("running")).then_some(p)
    })
    .await;
    (p, started.elapsed().as_secs_f64())
}

struct Store {
    local: Option<S3Server>,
    endpoint: String,
    key: String,
    secret: String,
}

impl Store {
    fn take_requests(&self) -> std::collections::BTreeMap<String, u64> {
        self.local.as_ref().map(S3Server::take_requests).unwrap_or_default()
    }
}

async fn master(s3: &Store, tree: Option<&std::path::Path>) -> TestMaster {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestMaster::settings_in(dir.path());
    s.s3_credentials = vec![mirror_tests::s3::credentials(dir.path(), &s3.key, &s3.secret, &s3.endpoint)];
    let m = TestMaster::start_with(dir, s).await;
    let body = json!({"project": "bench", "source": "bench", "targets": [
        {"name": "cdn", "endpoint": s3.endpoint, "bucket": "bench", "credentials": "local"}
    ]});
    m.api.post("/add_project/", &body, &Auth::root()).await;
    let root = m.mirror_root().join("bench");
    match tree {
        Some(src) => {
            // The same tree, as a copy (new files: each is hashed and its object's hash read).
            copy(src, &root);
        }
        None => {
            for i in 0..FILES {
                let d = root.join(format!("d{:02}", i % 100));
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join(format!("f{i}.txt")), format!("small file {i}\n").repeat(1 + i % 20)).unwrap();
            }
        }
    }
    m
}

fn copy(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn line(what: &str, p: &Value, secs: f64, requests: &std::collections::BTreeMap<String, u64>) {
    println!(
        "{what:<44} {secs:>7.2} s  uploaded {:>5}  unchanged {:>5}  requests {requests:?}",
        p["uploaded"], p["unchanged"]
    );
}

#[tokio::main]
async fn main() {
    let s3 = match std::env::var("BENCH_S3_ENDPOINT") {
        Ok(endpoint) => Store {
            local: None,
            endpoint,
            key: std::env::var("BENCH_S3_KEY").unwrap_or_else(|_| "test".into()),
            secret: std::env::var("BENCH_S3_SECRET").unwrap_or_else(|_| "test".into()),
        },
        Err(_) => {
            let local = S3Server::start(&["bench"]).await;
            let endpoint = local.endpoint();
            Store { local: Some(local), endpoint, key: ACCESS_KEY.into(), secret: SECRET_KEY.into() }
        }
    };
    println!("server: {}", if s3.local.is_some() { "s3s-fs (in process)" } else { s3.endpoint.as_str() });
    let m = master(&s3, None).await;
    let (p, secs) = push(&m).await;
    line("first push of 10,000 small files", &p, secs, &s3.take_requests());
    let (p, secs) = push(&m).await;
    line("unchanged re-push (learns listing stand-ins)", &p, secs, &s3.take_requests());
    let (p, secs) = push(&m).await;
    line("unchanged re-push (steady state)", &p, secs, &s3.take_requests());
    let tree = m.mirror_root().join("bench");
    let fresh = master(&s3, Some(&tree)).await;
    let (p, secs) = push(&fresh).await;
    line("unchanged re-push by a master without memory", &p, secs, &s3.take_requests());
}
