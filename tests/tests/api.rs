//! The master's API end to end: a real master on port 0 with its own SQLite file, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mirror_tests::{Auth, TestMaster, token_expiring_in};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn seed_project(name: &str) -> Value {
    // The 2014 README's example payload, with a dest under the test's mirror root.
    json!({
        "project": name,
        "rsync_module": "fedora/linux",
        "rsync_host": "rsync.fedora.org",
        "dest": format!("{name}/"),
        "rsync_password": "testpassword",
        "cron_options": {"minute": "*", "start_date": "2014-05-7 18:00"},
        "rsync_options": {"basic": [], "defaults": ["-avH"], "delete": "--delete"},
    })
}

/// The listing as a logged-in caller sees it (local paths and accounts included).
async fn projects(m: &TestMaster) -> Vec<Value> {
    let r = m.api.get("/list_projects/", &Auth::user()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body.as_array().unwrap().clone()
}

fn assert_error(r: &mirror_tests::Reply, status: StatusCode, field: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.text);
    assert!(r.content_type.starts_with("application/json"), "{}", r.content_type);
    assert_eq!(r.body["success"], json!(false), "{}", r.text);
    assert!(r.body["error"].is_string() && r.body["message"].is_string(), "{}", r.text);
    if let Some(f) = field {
        assert_eq!(r.body["field"], json!(f), "{}", r.text);
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Needs {
    Nothing,
    AnyUser,
    Root,
}

/// Every endpoint, with a request that a permitted caller gets past authentication with.
fn endpoints() -> Vec<(Method, &'static str, Option<Value>, Needs)> {
    let id = json!({"id": "no-such-project"});
    vec![
        (Method::GET, "/list_projects/", None, Needs::Nothing),
        (Method::GET, "/get_token/", None, Needs::AnyUser),
        (Method::POST, "/add_project/", Some(json!({"project": "p"})), Needs::AnyUser),
        (Method::POST, "/remove_project/", Some(id.clone()), Needs::AnyUser),
        (Method::GET, "/enable_project/?id=no-such-project", None, Needs::AnyUser),
        (Method::GET, "/disable_project/?id=no-such-project", None, Needs::AnyUser),
        (Method::GET, "/disable_project/id=no-such-project", None, Needs::AnyUser),
        (Method::POST, "/update_project/basic/", Some(id.clone()), Needs::AnyUser),
        (
            Method::POST,
            "/update_project/schedule/",
            Some(json!({"id": "no-such-project", "minute": "5"})),
            Needs::AnyUser,
        ),
        (Method::POST, "/add_slave/", Some(json!({"hostname": "slave1.example", "port": "7000"})), Needs::Root),
        (Method::GET, "/list_slaves/", None, Needs::Root),
        (Method::POST, "/remove_slave/", Some(json!({"hostname": "no-such-slave"})), Needs::Root),
        (Method::POST, "/create_api_user/", Some(json!({"username": "bob", "password": "pw"})), Needs::Root),
        (Method::GET, "/list_users/", None, Needs::Root),
        (Method::POST, "/remove_api_user/", Some(json!({"username": "nobody"})), Needs::Root),
    ]
}

#[tokio::test]
async fn every_endpoint_checks_credentials_and_roles() {
    let m = TestMaster::start().await;
    let root_token = m.api.token(&Auth::root()).await;
    let user_token = m.api.token(&Auth::user()).await;
    let callers = [
        ("none", Auth::None),
        ("wrong password", Auth::basic("root", "not-the-password")),
        ("unknown user", Auth::basic("mallory", "x")),
        ("expired token", Auth::Bearer(token_expiring_in("root", -60))),
        ("forged token", Auth::Bearer(format!("{root_token}x"))),
        ("user", Auth::user()),
        ("user token", Auth::Bearer(user_token)),
        ("root", Auth::root()),
        ("root token", Auth::Bearer(root_token)),
    ];
    for (method, path, body, needs) in endpoints() {
        for (who, auth) in &callers {
            let r = m.api.call(method.clone(), path, body.as_ref(), auth).await;
            let is_bad_login = matches!(*who, "wrong password" | "unknown user" | "expired token" | "forged token");
            let expected_denial = match (*who, needs) {
                _ if is_bad_login => Some(StatusCode::UNAUTHORIZED),
                ("none", Needs::Nothing) => None,
                ("none", _) => Some(StatusCode::UNAUTHORIZED),
                ("user" | "user token", Needs::Root) => Some(StatusCode::FORBIDDEN),
                _ => None,
            };
            match expected_denial {
                Some(status) => assert_error(&r, status, None),
                None => assert!(
                    r.status != StatusCode::UNAUTHORIZED && r.status != StatusCode::FORBIDDEN,
                    "{method} {path} as {who}: {} {}",
                    r.status,
                    r.text
                ),
            }
            assert!(r.content_type.starts_with("application/json"), "{method} {path} as {who}: {}", r.content_type);
            if r.status == StatusCode::UNAUTHORIZED {
                assert!(r.text.contains("\"method\""), "{}", r.text);
            }
        }
    }
}

#[tokio::test]
async fn listing_can_require_a_login() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    settings.public_read = false;
    let m = TestMaster::start_with(dir, settings).await;
    assert_error(&m.api.get("/list_projects/", &Auth::None).await, StatusCode::UNAUTHORIZED, None);
    assert_eq!(m.api.get("/list_projects/", &Auth::user()).await.status, StatusCode::OK);
}

/// A client that accepts gzip gets the same listing compressed (and told so); others get it plain.
#[tokio::test]
async fn the_listing_is_gzip_for_clients_that_accept_it() {
    let m = TestMaster::start().await;
    for i in 0..300 {
        let r = m.api.post("/add_project/", &seed_project(&format!("p{i:03}")), &Auth::root()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let url = format!("{}/list_projects/", m.api.base);
    let plain = m.api.client.get(&url).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.bytes().await.unwrap();
    let zipped = m.api.client.get(&url).header("accept-encoding", "br;q=1, gzip;q=0.8").send().await.unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert_eq!(zipped.headers()["vary"], "accept-encoding");
    let zipped = zipped.bytes().await.unwrap();
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&zipped[..]), &mut unzipped).unwrap();
    assert_eq!(unzipped, plain.to_vec());
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&unzipped).unwrap();
    assert_eq!(listed.len(), 300);
    assert!(zipped.len() * 4 < plain.len(), "{} compressed to {}", plain.len(), zipped.len());
}

#[tokio::test]
async fn the_seed_project_lifecycle() {
    let m = TestMaster::start().await;
    let r = m.api.post("/add_project/", &seed_project("fedora"), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body, json!({"method": "add_project", "project": "fedora", "id": "fedora", "success": true}));

    let list = projects(&m).await;
    assert_eq!(list.len(), 1);
    let p = &list[0];
    let dest = m.mirror_root().join("fedora");
    assert_eq!(p["dest"], json!(dest.to_str().unwrap()));
    assert_eq!(p["enabled"], json!(true));
    assert_eq!(p["rsync_host"], json!("rsync.fedora.org"));
    assert_eq!(p["rsync_module"], json!("fedora/linux"));
    assert_eq!(p["rsync_password_set"], json!(true));
    assert_eq!(
        p["cron_options"],
        json!({"year": "*", "month": "*", "day": "*", "week": "*", "day_of_week": "*", "hour": "*",
               "minute": "*", "second": "0", "start_date": "2014-05-07T18:00:00Z"})
    );
    assert_eq!(
        p["rsync_options"],
        json!({"defaults": ["-avH"], "basic": [], "delete": "--delete", "delete_option": "--delete"})
    );
    let next = chrono::DateTime::parse_from_rfc3339(p["next_run_time"].as_str().unwrap()).unwrap();
    let until = next.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!((0..=61).contains(&until), "next run in {until}s");
    assert!(!projects(&m).await.iter().any(|p| p.to_string().contains("testpassword")));

    // One project's own view: the listing's fields, the next fire times, the newest runs.
    let one = m.api.get("/projects/fedora", &Auth::user()).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    assert_eq!((one.body["id"].clone(), one.body["dest"].clone()), (json!("fedora"), p["dest"].clone()));
    let fires: Vec<&str> =
        one.body["next_fire_times"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(fires.len(), 5, "{}", one.text);
    assert_eq!(fires[0], p["next_run_time"].as_str().unwrap());
    let minutes: Vec<i64> = fires
        .windows(2)
        .map(|w| {
            let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
            (t(w[1]) - t(w[0])).num_seconds()
        })
        .collect();
    assert_eq!(minutes, vec![60; 4], "every minute: {fires:?}");
    assert_eq!(one.body["recent_runs"], json!([]));
    assert!(!one.text.contains("testpassword"));
    let public = m.api.get("/projects/fedora", &Auth::None).await;
    assert!(
        public.body.get("dest").is_none() && public.body["next_fire_times"].as_array().unwrap().len() == 5,
        "{}",
        public.text
    );
    assert_error(&m.api.get("/projects/nothing", &Auth::user()).await, StatusCode::NOT_FOUND, Some("id"));

    // Duplicate id, and a dest inside another project's: 409.
    assert_error(
        &m.api.post("/add_project/", &seed_project("fedora"), &Auth::user()).await,
        StatusCode::CONFLICT,
        Some("id"),
    );
    let mut inside = seed_project("other");
    inside["dest"] = json!("fedora/sub");
    assert_error(&m.api.post("/add_project/", &inside, &Auth::user()).await, StatusCode::CONFLICT, Some("dest"));

    // Disable and enable, in the three forms the 2014 README used.
    let r = m.api.get("/disable_project/?id=fedora", &Auth::user()).await;
    assert_eq!(r.body, json!({"method": "disable_project", "success": true, "id": "fedora", "enabled": false}));
    assert_eq!(projects(&m).await[0]["enabled"], json!(false));
    assert_eq!(projects(&m).await[0]["next_run_time"], Value::Null);
    assert_eq!(m.api.get("/enable_project/id=fedora", &Auth::user()).await.status, StatusCode::OK);
    assert_eq!(projects(&m).await[0]["enabled"], json!(true));
    assert_eq!(m.api.post("/disable_project?id=fedora", &json!({}), &Auth::user()).await.status, StatusCode::OK);
    assert_eq!(m.api.get("/enable_project?id=fedora", &Auth::user()).await.status, StatusCode::OK);
    assert_error(&m.api.get("/enable_project/?id=nope", &Auth::user()).await, StatusCode::NOT_FOUND, Some("id"));
    assert_error(&m.api.get("/enable_project/", &Auth::user()).await, StatusCode::BAD_REQUEST, Some("id"));

    // A new name renames an id derived from it, as the seed documents.
    let r = m
        .api
        .post(
            "/update_project/basic/",
            &json!({"id": "fedora", "project": "fedora-new", "rsync_host": "10.0.0.5"}),
            &Auth::user(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["id"], json!("fedora-new"));
    let list = projects(&m).await;
    assert_eq!((list[0]["id"].clone(), list[0]["rsync_host"].clone()), (json!("fedora-new"), json!("10.0.0.5")));
    assert_eq!(list[0]["cron_options"]["minute"], json!("*"), "basic update keeps the schedule");

    // An explicit id stays when the name changes.
    let mut explicit = seed_project("ubuntu");
    explicit["id"] = json!("ubu");
    assert_eq!(m.api.post("/add_project/", &explicit, &Auth::root()).await.status, StatusCode::CREATED);
    let r = m.api.post("/update_project/basic/", &json!({"id": "ubu", "project": "Ubuntu Linux"}), &Auth::user()).await;
    assert_eq!(r.body["id"], json!("ubu"), "{}", r.text);

    // Renaming onto an existing id is a conflict and changes nothing.
    let mut third = seed_project("debian");
    third["cron_options"] = Value::Null;
    assert_eq!(m.api.post("/add_project/", &third, &Auth::user()).await.status, StatusCode::CREATED);
    let r =
        m.api.post("/update_project/basic/", &json!({"id": "debian", "project": "fedora-new"}), &Auth::user()).await;
    assert_error(&r, StatusCode::CONFLICT, Some("project"));
    assert!(projects(&m).await.iter().any(|p| p["id"] == json!("debian")));
    let debian = projects(&m).await.into_iter().find(|p| p["id"] == json!("debian")).unwrap();
    assert_eq!((debian["cron_options"].clone(), debian["next_run_time"].clone()), (Value::Null, Value::Null));

    // Password: removed with null, never listed.
    let r = m.api.post("/update_project/basic/", &json!({"id": "ubu", "rsync_password": null}), &Auth::user()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ubu = projects(&m).await.into_iter().find(|p| p["id"] == json!("ubu")).unwrap();
    assert_eq!(ubu["rsync_password_set"], json!(false));

    // A schedule update replaces the whole schedule.
    let r = m
        .api
        .post(
            "/update_project/schedule/",
            &json!({"id": "fedora-new", "hour": "3", "start_date": "Fri Jul 11 03:08:57 IST 2014"}),
            &Auth::user(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let cron = &projects(&m).await.into_iter().find(|p| p["id"] == json!("fedora-new")).unwrap()["cron_options"];
    assert_eq!(
        *cron,
        json!({"year": "*", "month": "*", "day": "*", "week": "*", "day_of_week": "*", "hour": "3",
               "minute": "0", "second": "0", "start_date": "2014-07-10T21:38:57Z"})
    );
    // With no time field, the project becomes manual-only.
    let r = m.api.post("/update_project/schedule/", &json!({"id": "fedora-new"}), &Auth::user()).await;
    assert_eq!((r.status, r.body["cron_options"].clone()), (StatusCode::OK, Value::Null), "{}", r.text);

    // Remove: success, then 404 with success:false.
    let r = m.api.post("/remove_project/", &json!({"id": "debian"}), &Auth::user()).await;
    assert_eq!(r.body, json!({"method": "remove_project", "success": true, "id": "debian"}));
    assert_error(
        &m.api.post("/remove_project/", &json!({"id": "debian"}), &Auth::user()).await,
        StatusCode::NOT_FOUND,
        Some("id"),
    );
    assert_eq!(projects(&m).await.len(), 2);
}

#[tokio::test]
async fn hostile_input_is_refused_and_nothing_is_written() {
    let m = TestMaster::start().await;
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), m.mirror_root().join("escape")).unwrap();
    let base = seed_project("p");
    let with = |key: &str, value: Value| {
        let mut b = base.clone();
        let mut target = &mut b;
        let parts: Vec<&str> = key.split('.').collect();
        for k in &parts[..parts.len() - 1] {
            target = &mut target[*k];
        }
        target[parts[parts.len() - 1]] = value;
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("id", json!("../../etc")), "id"),
        (with("id", json!("a b")), "id"),
        (with("id", json!("..")), "id"),
        (with("project", json!("has space")), "project"),
        (with("project", json!(5)), "project"),
        (with("dest", json!("/etc/cron.d")), "dest"),
        (with("dest", json!("../../../etc")), "dest"),
        (with("dest", json!("p/../../outside")), "dest"),
        (with("dest", json!("escape/inside-the-link")), "dest"),
        (with("dest", json!("")), "dest"),
        (with("dest", json!(".")), "dest"),
        (with("rsync_host", json!("-oProxyCommand=touch /tmp/pwned")), "rsync_host"),
        (with("rsync_host", json!("host; rm -rf /")), "rsync_host"),
        (with("rsync_module", json!("mod/../../etc")), "rsync_module"),
        (with("rsync_module", json!("mod\nx")), "rsync_module"),
        (with("rsync_password", json!("line\nbreak")), "rsync_password"),
        (with("rsync_options.basic", json!(["-e", "sh -c id"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["--rsh=/bin/sh"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["-a", "--rsync-path=sudo rsync"])), "rsync_options.basic[1]"),
        (with("rsync_options.defaults", json!(["-avHe"])), "rsync_options.defaults[0]"),
        (with("rsync_options.basic", json!(["--config=/etc/rsyncd.conf"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["--daemon"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["--server"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["--write-batch=/tmp/b"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["--log-file=/etc/passwd"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["--password-file=/etc/shadow"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["--files-from=/etc/passwd"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["--exclude-from=/etc/passwd"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["--temp-dir=/tmp"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["--backup-dir=../../../etc"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["--link-dest=/var/lib"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["--exclude=x\ny"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["--exclude=x\u{0}"])), "rsync_options.basic[0]"),
        (with("rsync_options.basic", json!(["/etc/passwd"])), "rsync_options.basic[0]"),
        (with("rsync_options.delete", json!("--rsh=sh")), "rsync_options.delete"),
        (with("rsync_options.basic", json!("-a")), "rsync_options.basic"),
        (with("rsync_options.colour", json!("red")), "rsync_options.colour"),
        (with("cron_options.minute", json!("61")), "cron_options.minute"),
        (with("cron_options.hour", json!("*/0")), "cron_options.hour"),
        (with("cron_options.day", json!("9th fri")), "cron_options.day"),
        (with("cron_options.start_date", json!("someday")), "cron_options.start_date"),
        (with("cron_options.start_date", json!("Fri Jul 11 03:08:57 XYZ 2014")), "cron_options.start_date"),
        (with("cron_options.timezone", json!("Mars/Olympus")), "cron_options.timezone"),
        (with("cron_options.year", json!("2001")), "cron_options"),
        (with("cron_options.seconds", json!("5")), "cron_options.seconds"),
        (with("colour", json!("blue")), "colour"),
    ];
    for (body, field) in &cases {
        let r = m.api.post("/add_project/", body, &Auth::root()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, Some(field));
    }
    let mut missing = base.clone();
    missing.as_object_mut().unwrap().remove("dest");
    assert_error(&m.api.post("/add_project/", &missing, &Auth::root()).await, StatusCode::BAD_REQUEST, Some("dest"));
    for raw in ["{\"project\": ", "[]", "", "null", "not json"] {
        let r = m
            .api
            .client
            .post(format!("{}/add_project/", m.api.base))
            .basic_auth("root", Some(mirror_tests::ROOT_PASSWORD))
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{raw:?}");
    }
    assert!(projects(&m).await.is_empty(), "nothing may be written");
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());

    // The same rules hold for updates, which leave the project as it was.
    assert_eq!(m.api.post("/add_project/", &base, &Auth::root()).await.status, StatusCode::CREATED);
    let before = projects(&m).await;
    for (body, field) in [
        (json!({"id": "p", "dest": "/etc"}), "dest"),
        (json!({"id": "p", "rsync_options": {"basic": ["-e"]}}), "rsync_options.basic[0]"),
        (json!({"id": "p", "rsync_host": "a b"}), "rsync_host"),
        (json!({"id": "p", "project": "x y"}), "project"),
        (json!({"id": "p", "cron_options": {}}), "cron_options"),
    ] {
        assert_error(
            &m.api.post("/update_project/basic/", &body, &Auth::root()).await,
            StatusCode::BAD_REQUEST,
            Some(field),
        );
    }
    for (body, field) in [
        (json!({"id": "p", "minute": "99"}), "minute"),
        (json!({"id": "p", "start_date": "2014-01-01"}), "cron_options"),
        (json!({"minute": "5"}), "id"),
        (json!({"id": "p", "minit": "5"}), "minit"),
    ] {
        assert_error(
            &m.api.post("/update_project/schedule/", &body, &Auth::root()).await,
            StatusCode::BAD_REQUEST,
            Some(field),
        );
    }
    assert_eq!(projects(&m).await, before);
}

#[tokio::test]
async fn slaves_follow_the_seed() {
    let m = TestMaster::start().await;
    let r = m.api.post("/add_slave/", &json!({"hostname": "localhost", "port": "7000"}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["success"], json!(true));
    let r = m.api.post("/add_slave/", &json!({"hostname": "localhost", "port": 7000}), &Auth::root()).await;
    assert_eq!(
        (r.status, r.body["success"].clone(), r.body["details"].clone()),
        (StatusCode::OK, json!(true), json!("Already added"))
    );
    m.api.post("/add_slave/", &json!({"hostname": "localhost", "port": 7001}), &Auth::root()).await;
    m.api.post("/add_slave/", &json!({"hostname": "slave2.example.org"}), &Auth::root()).await;
    let list = m.api.get("/list_slaves/", &Auth::root()).await.body;
    let pairs: Vec<(String, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["hostname"].as_str().unwrap().into(), s["port"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        vec![("localhost".into(), 7000), ("localhost".into(), 7001), ("slave2.example.org".into(), 7000)]
    );

    assert_error(
        &m.api.post("/add_slave/", &json!({"hostname": "-x", "port": 1}), &Auth::root()).await,
        StatusCode::BAD_REQUEST,
        Some("hostname"),
    );
    assert_error(
        &m.api.post("/add_slave/", &json!({"hostname": "h", "port": "99999"}), &Auth::root()).await,
        StatusCode::BAD_REQUEST,
        Some("port"),
    );
    assert_error(
        &m.api.post("/remove_slave/", &json!({"hostname": "localhost"}), &Auth::root()).await,
        StatusCode::BAD_REQUEST,
        Some("port"),
    );
    let r = m.api.post("/remove_slave/", &json!({"hostname": "slave2.example.org"}), &Auth::root()).await;
    assert_eq!(r.body["success"], json!(true), "{}", r.text);
    let r = m.api.post("/remove_slave/", &json!({"hostname": "slave2.example.org"}), &Auth::root()).await;
    assert_error(&r, StatusCode::NOT_FOUND, Some("hostname"));
    assert_eq!(
        m.api.post("/remove_slave/", &json!({"hostname": "localhost", "port": "7001"}), &Auth::root()).await.status,
        StatusCode::OK
    );
    assert_eq!(m.api.get("/list_slaves/", &Auth::root()).await.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn users_roles_and_tokens() {
    let m = TestMaster::start().await;
    let r = m.api.post("/create_api_user/", &json!({"username": "superman", "password": "S"}), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["role"], json!("user"));
    assert_error(
        &m.api.post("/create_api_user/", &json!({"username": "superman", "password": "other"}), &Auth::root()).await,
        StatusCode::CONFLICT,
        Some("username"),
    );
    assert_error(
        &m.api.post("/create_api_user/", &json!({"username": "bad name", "password": "x"}), &Auth::root()).await,
        StatusCode::BAD_REQUEST,
        Some("username"),
    );
    assert_error(
        &m.api
            .post("/create_api_user/", &json!({"username": "x", "password": "x", "role": "god"}), &Auth::root())
            .await,
        StatusCode::BAD_REQUEST,
        Some("role"),
    );
    let list = m.api.get("/list_users/", &Auth::root()).await;
    assert!(!list.text.contains("argon2") && !list.text.contains("password"), "{}", list.text);
    let names: Vec<&str> = list.body.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["alice", "root", "superman"]);

    // Tokens work on every role-checked endpoint; the listed role is the current one.
    let superman = Auth::basic("superman", "S");
    let r = m.api.get("/get_token/", &superman).await;
    assert_eq!((r.body["method"].clone(), r.body["duration"].clone()), (json!("get_token"), json!(3600)));
    let token = Auth::Bearer(r.body["token"].as_str().unwrap().into());
    assert_eq!(m.api.post("/add_project/", &seed_project("viatoken"), &token).await.status, StatusCode::CREATED);
    assert_eq!(m.api.get("/list_users/", &token).await.status, StatusCode::FORBIDDEN);
    // A token that is still valid keeps working; one a second past expiry does not.
    assert_eq!(m.api.get("/get_token/", &token).await.status, StatusCode::OK);
    assert_eq!(
        m.api.get("/get_token/", &Auth::Bearer(token_expiring_in("superman", -1))).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Once removed, the user's cached Basic login and its token stop working at once.
    assert_eq!(m.api.get("/get_token/", &superman).await.status, StatusCode::OK);
    let r = m.api.post("/remove_api_user/", &json!({"username": "superman"}), &Auth::root()).await;
    assert_eq!(r.body, json!({"method": "remove_api_user", "success": true, "username": "superman"}));
    assert_eq!(m.api.get("/get_token/", &superman).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(m.api.get("/get_token/", &token).await.status, StatusCode::UNAUTHORIZED);
    assert_error(
        &m.api.post("/remove_api_user/", &json!({"username": "superman"}), &Auth::root()).await,
        StatusCode::NOT_FOUND,
        Some("username"),
    );
    // The last root cannot be removed.
    assert_error(
        &m.api.post("/remove_api_user/", &json!({"username": "root"}), &Auth::root()).await,
        StatusCode::CONFLICT,
        Some("username"),
    );

    // A cached login never lets a wrong password in.
    assert_eq!(m.api.get("/get_token/", &Auth::user()).await.status, StatusCode::OK);
    assert_eq!(m.api.get("/get_token/", &Auth::basic("alice", "wrong")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        m.api.get("/get_token/", &Auth::basic("alice", &format!("{}x", mirror_tests::USER_PASSWORD))).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn paths_methods_and_content_types() {
    let m = TestMaster::start().await;
    // Every route answers without its trailing slash too.
    for (method, path, body, _) in endpoints() {
        let bare = match path.split_once('?') {
            Some((p, q)) => format!("{}?{q}", p.trim_end_matches('/')),
            None => path.trim_end_matches('/').to_owned(),
        };
        let with_slash = m.api.call(method.clone(), path, body.as_ref(), &Auth::root()).await;
        let without = m.api.call(method.clone(), &bare, body.as_ref(), &Auth::root()).await;
        // The route matched: not the fallback's "no such endpoint", and the same answer as with the slash.
        assert_ne!(without.body["message"], json!("no such endpoint"), "{bare}");
        assert!(without.content_type.starts_with("application/json"), "{bare}");
        if !path.starts_with("/add") && !path.starts_with("/create") {
            assert_eq!(
                (without.status, &without.body["method"]),
                (with_slash.status, &with_slash.body["method"]),
                "{bare}"
            );
        }
    }
    let r = m.api.call(Method::DELETE, "/add_project/", None, &Auth::root()).await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, None);
    assert_eq!(r.body["method"], json!("add_project"));
    assert_error(&m.api.get("/no/such/thing", &Auth::None).await, StatusCode::NOT_FOUND, None);
    // curl -d sends a form content type: the JSON body is still read.
    let r = m
        .api
        .client
        .post(format!("{}/add_project/", m.api.base))
        .basic_auth("root", Some(mirror_tests::ROOT_PASSWORD))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(seed_project("curl").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}
