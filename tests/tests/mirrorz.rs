//! `GET /mirrorz.json` in mirrorz's format 1.7, for every state a project can be in, against a real
//! rsync daemon and a real master. The rules are mirrorz's (tests/data/mirrorz/ORIGIN.md); the
//! checker is proved on mirrorz's own example first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mirror_common::api::MirrorzSite;
use mirror_tests::rsyncd::{UPSTREAM_PASSWORD, UPSTREAM_USER, Upstream, generate_tree};
use mirror_tests::{Api, Auth, TestMaster, finished_run, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MAIN: [char; 8] = ['S', 'D', 'Y', 'F', 'P', 'C', 'R', 'U'];
const AUXILIARY: [char; 3] = ['X', 'N', 'O'];

/// Splits a status as mirrorz does (`[A-Z](\d+)?`, repeated), or `None` when it is not that.
fn codes(status: &str) -> Option<Vec<(char, Option<i64>)>> {
    let mut out = Vec::new();
    let mut rest = status;
    while let Some(c) = rest.chars().next() {
        if !c.is_ascii_uppercase() {
            return None;
        }
        let digits = rest[1..].chars().take_while(char::is_ascii_digit).count();
        let number = (digits > 0).then(|| rest[1..=digits].parse().unwrap());
        out.push((c, number));
        rest = &rest[1 + digits..];
    }
    (!out.is_empty()).then_some(out)
}

/// Everything the format's notes require of a document; the first broken rule.
fn check(doc: &Value) -> Result<(), String> {
    let site = &doc["site"];
    let url = site["url"].as_str().ok_or("site.url is required")?;
    if url.ends_with('/') || site["abbr"].as_str().is_none_or(str::is_empty) {
        return Err(format!("site.url without a trailing / and site.abbr are required: {site}"));
    }
    for info in doc["info"].as_array().ok_or("info must be a list")? {
        if info["category"].as_str().is_none() || info["distro"].as_str().is_none() || !info["urls"].is_array() {
            return Err(format!("every field of info is required: {info}"));
        }
    }
    for m in doc["mirrors"].as_array().ok_or("mirrors must be a list")? {
        let (cname, url) = (m["cname"].as_str(), m["url"].as_str());
        if cname.is_none_or(str::is_empty) || url.is_none_or(|u| u.ends_with('/')) {
            return Err(format!("cname, and url without a trailing /, are required: {m}"));
        }
        let status = m["status"].as_str().ok_or(format!("no status: {m}"))?;
        let codes = codes(status).ok_or(format!("status {status} is not [A-Z](\\d+)? repeated"))?;
        let mains: Vec<char> = codes.iter().map(|c| c.0).filter(|c| MAIN.contains(c)).collect();
        if mains.len() != 1 || codes.iter().any(|c| !MAIN.contains(&c.0) && !AUXILIARY.contains(&c.0)) {
            return Err(format!("status {status}: exactly one main status and known auxiliary ones"));
        }
        if codes.iter().any(|c| c.0 == 'O') && !matches!(mains[0], 'Y' | 'F') {
            return Err(format!("status {status}: O only while syncing or failed"));
        }
    }
    Ok(())
}

#[test]
fn the_checker_takes_mirrorzs_own_example_and_refuses_what_the_notes_forbid() {
    let example: Value = serde_json::from_str(include_str!("../data/mirrorz/readme-example.json")).unwrap();
    check(&example).unwrap();
    for bad in ["", "s", "XS1O", "S1F2", "X1", "S1O2", "S1Z", "S-1"] {
        let mut doc = example.clone();
        doc["mirrors"][0]["status"] = json!(bad);
        assert!(check(&doc).is_err(), "{bad} was taken");
    }
    let mut doc = example.clone();
    doc["site"]["url"] = json!("https://example.org/");
    assert!(check(&doc).is_err());
}

fn project(name: &str, port: u16, extra: Value) -> Value {
    let mut p = json!({
        "project": name, "rsync_host": "127.0.0.1", "rsync_port": port, "rsync_module": "data",
        "rsync_user": UPSTREAM_USER, "rsync_password": UPSTREAM_PASSWORD, "dest": format!("pub/{name}"),
        "rsync_options": {"basic": ["--no-motd"]},
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

async fn sync(api: &Api, id: &str) -> i64 {
    let r = api.post(&format!("/syncup/?id={id}"), &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.body["run_id"].as_i64().unwrap()
}

fn codes_of(doc: &Value, cname: &str) -> Vec<(char, Option<i64>)> {
    let m = doc["mirrors"].as_array().unwrap().iter().find(|m| m["cname"] == json!(cname)).unwrap();
    codes(m["status"].as_str().unwrap()).unwrap()
}

fn letters(codes: &[(char, Option<i64>)]) -> String {
    codes.iter().map(|c| c.0).collect()
}

#[tokio::test]
async fn every_state_of_a_project_reads_as_mirrorz_says() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 10);
    // A file that takes about 30 s at --bwlimit=100 (KiB/s): a run that stays `running`.
    let slow: Vec<u8> = (0..3_000 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::create_dir_all(upstream.data().join("slow")).unwrap();
    std::fs::write(upstream.data().join("slow/big.bin"), slow).unwrap();

    // Without [site], the document does not exist, and says what is missing.
    let m = TestMaster::start().await;
    let r = m.api.get("/mirrorz.json", &Auth::None).await;
    assert_eq!((r.status, r.body["field"].clone()), (StatusCode::NOT_FOUND, json!("site")), "{}", r.text);
    drop(m);

    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    settings.site = Some(MirrorzSite {
        url: "https://mirrors.example.edu".into(),
        abbr: "EXAMPLE".into(),
        name: Some("Example <Mirrors>".into()),
        big: Some("/speedtest/1000mb.bin".into()),
        ..Default::default()
    });
    let m = TestMaster::start_with(dir, settings).await;
    let add = |body: Value| {
        let api = &m.api;
        async move {
            let r = api.post("/add_project/", &body, &Auth::root()).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        }
    };
    // ok: succeeded, scheduled daily. again: succeeded, then its upstream went away (failing, with
    // the old success). broken: never succeeded. pending: never run. off: disabled. slow: running.
    // halted: stopped by an operator. tree: a local tree.
    let daily = json!({"cron_options": {"hour": "3", "minute": "0"}});
    add(project("ok", upstream.port, daily.clone())).await;
    add(project("again", upstream.port, json!({}))).await;
    add(project("broken", upstream.port, json!({"rsync_module": "nothing"}))).await;
    add(project("pending", upstream.port, daily)).await;
    add(project("off", upstream.port, json!({"enabled": false}))).await;
    let limited = json!({"rsync_module": "data/slow", "rsync_options": {"basic": ["--no-motd", "--bwlimit=100"]}});
    add(project("slow", upstream.port, limited.clone())).await;
    add(project("halted", upstream.port, limited)).await;
    add(json!({"project": "tree", "dest": "pub/tree"})).await;

    for id in ["ok", "again", "broken"] {
        let run = sync(&m.api, id).await;
        finished_run(&m.api, run, 60).await;
    }
    let r = m.api.post("/update_project/basic/", &json!({"id": "again", "rsync_module": "gone"}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let failed = finished_run(&m.api, sync(&m.api, "again").await, 60).await;
    assert_eq!(failed["status"], json!("failed"), "{failed}");
    let halted = sync(&m.api, "halted").await;
    let r = m.api.post(&format!("/runs/{halted}/stop"), &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    finished_run(&m.api, halted, 60).await;
    let running = sync(&m.api, "slow").await;
    wait_for(30, "the slow run to be running", || async {
        let r = m.api.get(&format!("/runs/{running}"), &Auth::root()).await;
        (r.body["status"] == json!("running")).then_some(())
    })
    .await;

    let r = m.api.get("/mirrorz.json", &Auth::None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let doc = r.body;
    check(&doc).unwrap_or_else(|e| panic!("{e}: {doc:#}"));
    assert_eq!(doc["version"], json!(1.7));
    assert_eq!(doc["site"]["url"], json!("https://mirrors.example.edu"));
    assert_eq!(doc["site"]["name"], json!("Example <Mirrors>"));
    assert_eq!(doc["info"], json!([]));
    assert_eq!(doc["mirrors"].as_array().unwrap().len(), 8);
    let ok = doc["mirrors"].as_array().unwrap().iter().find(|m| m["cname"] == json!("ok")).unwrap();
    assert_eq!(ok["url"], json!("/pub/ok"), "{ok}");
    assert_eq!(ok["upstream"], json!(format!("rsync://127.0.0.1:{}/data/", upstream.port)), "{ok}");
    assert!(ok["size"].as_str().is_some_and(|s| !s.is_empty()), "{ok}");

    let expected = [
        ("ok", "SX"),
        ("again", "FO"),
        ("broken", "FN"),
        ("pending", "DXN"),
        ("off", "PN"),
        ("slow", "YN"),
        ("halted", "PN"),
        ("tree", "U"),
    ];
    for (cname, want) in expected {
        assert_eq!(letters(&codes_of(&doc, cname)), want, "{cname}: {doc:#}");
    }
    // The times are the runs' own.
    let ok_run = m.api.get("/runs/?project=ok&limit=1", &Auth::root()).await.body[0].clone();
    let ended = chrono::DateTime::parse_from_rfc3339(ok_run["ended_at"].as_str().unwrap()).unwrap().timestamp();
    assert_eq!(codes_of(&doc, "ok")[0], ('S', Some(ended)));
    let next = codes_of(&doc, "ok")[1].1.unwrap();
    assert!(next > chrono::Utc::now().timestamp() && next % 3600 == 0, "{next}");
    let again = codes_of(&doc, "again");
    let failed_at = chrono::DateTime::parse_from_rfc3339(failed["ended_at"].as_str().unwrap()).unwrap().timestamp();
    assert_eq!(again[0], ('F', Some(failed_at)));
    assert!(again[1].1.unwrap() <= failed_at, "the old success: {again:?}");

    // The slow run is not left to go on.
    let r = m.api.post(&format!("/runs/{running}/stop"), &json!({}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
}
