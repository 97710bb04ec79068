//! The OpenAPI document against the running master: schemathesis (pip; `scripts/test.sh` installs
//! it in `target/schemathesis-venv`) drives every operation, logged in as root, with generated
//! valid and invalid input. No answer may be a 5xx, and every answer must match its schema.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use mirror_tests::{Auth, TestMaster, basic_header};
use reqwest::StatusCode;
use serde_json::json;

fn schemathesis() -> PathBuf {
    match std::env::var_os("MIRROR_SCHEMATHESIS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/schemathesis-venv/bin/schemathesis"),
    }
}

#[tokio::test]
async fn every_operation_answers_as_its_schema_says_and_never_with_a_5xx() {
    let m = TestMaster::start().await;
    let spec = m.api.get("/openapi.json", &Auth::None).await;
    assert_eq!(spec.status, StatusCode::OK);
    assert_eq!(spec.body["openapi"], json!("3.1.0"));
    assert!(spec.body["paths"]["/add_project/"]["post"].is_object(), "{}", spec.text);
    let docs = m.api.get("/docs/", &Auth::None).await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs.text.contains("swagger-ui"), "the page is served from the binary: {}", docs.text);

    // Something to read and change.
    let project = json!({"project": "fedora", "rsync_host": "rsync.example.org", "rsync_module": "fedora",
                         "dest": "fedora", "cron_options": {"hour": "*/6"}});
    assert_eq!(m.api.post("/add_project/", &project, &Auth::root()).await.status, StatusCode::CREATED);

    let work = tempfile::tempdir().unwrap();
    let Auth::Basic(user, password) = Auth::root() else { unreachable!() };
    let out = tokio::process::Command::new(schemathesis())
        .current_dir(work.path())
        .args([
            "run",
            &format!("{}/openapi.json", m.api.base),
            "--header",
            &format!("Authorization: {}", basic_header(&user, &password)),
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--max-examples",
            "30",
            "--seed",
            "20261124",
            "--no-color",
            // An event stream never ends: there is no response to check (tests/tests/events.rs).
            "--exclude-path",
            "/events",
        ])
        .output()
        .await
        .expect("schemathesis (scripts/test.sh installs it in target/schemathesis-venv)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found failures:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    let operations: usize =
        spec.body["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum::<usize>() - 1;
    assert!(report.contains(&format!("Tested: {operations}")), "all {operations} operations tested:\n{report}");
}
