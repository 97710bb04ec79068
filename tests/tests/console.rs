//! The operator's console (`/ui/`) in a real browser (Debian's chromium through chromedriver),
//! against a real master with a real rsync upstream and a real slave: log in, add a project, sync
//! it and follow its live log to the end, stop a run, edit while another client edits (the
//! conflict), save after the diff, revert a version; a `user` sees no root page and is refused
//! by the server too; a cross-site form is refused; the session ends at logout and at a password
//! change. Every page is screenshotted (`target/test-artifacts/console/`) and checked by axe-core.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mirror_tests::browser::Browser;
use mirror_tests::cluster::{start_cluster_master, start_slaves};
use mirror_tests::console::{csrf_of, get_with, post_with, raw_client, session_cookie};
use mirror_tests::rsyncd::{Upstream, generate_tree};
use mirror_tests::{Auth, ROOT_PASSWORD, TestMaster, USER_PASSWORD, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn project(m: &TestMaster, id: &str) -> Value {
    let r = m.api.get(&format!("/projects/{id}"), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body
}

/// The project's current version (its newest in the history).
async fn version_of(m: &TestMaster, id: &str) -> i64 {
    let r = m.api.get(&format!("/projects/{id}/history?limit=1"), &Auth::root()).await;
    r.body["versions"][0]["version"].as_i64().expect("a version")
}

/// The newest run of `id`, from the API.
async fn newest_run(m: &TestMaster, id: &str) -> Value {
    let r = m.api.get(&format!("/runs/?project={id}&limit=1"), &Auth::root()).await;
    r.body[0].clone()
}

/// The YAML the console is given for a new project pulling `upstream`'s open module slowly.
fn new_yaml(upstream: &Upstream, bwlimit: u32) -> String {
    format!(
        "project: \"<b>Fedora</b> & <script>alert(1)</script>\"\nrsync_host: 127.0.0.1\nrsync_port: {}\n\
         rsync_module: open/\ndest: pub/fedora\nrsync_options:\n  basic: [\"--bwlimit={bwlimit}\"]\n\
         cron_options:\n  hour: \"*/6\"\n  minute: \"7\"\n",
        upstream.port
    )
}

/// Waits until the browser's page has `css` (after a redirect or a script).
async fn wait_css(b: &Browser, css: &str, secs: u64) {
    wait_for(secs, css, || async { b.has(css).await.then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_adds_syncs_follows_stops_edits_and_reverts_in_the_browser() {
    let upstream = Upstream::start().await;
    generate_tree(&upstream.data(), 10);
    // ~3 s of pulling at --bwlimit=200 (KiB/s): the run goes on while its page loads.
    std::fs::write(upstream.data().join("slow.bin"), vec![7u8; 600 * 1024]).unwrap();
    let m = start_cluster_master().await;
    let _slaves = start_slaves(&m.api, 1).await;
    let base = m.api.base.clone();
    let b = Browser::start().await;

    // Logging in: the login page first (a page without a session goes there).
    b.goto(&format!("{base}/ui/")).await;
    b.check_page("login").await;
    b.login(&base, "root", ROOT_PASSWORD).await;
    b.check_page("projects-empty").await;

    // Adding a project; its name, which holds markup, is shown as text.
    b.click("a[href='/ui/projects/new']").await;
    b.check_page("new-project").await;
    b.fill("#id", "fedora").await;
    b.fill("#config", &new_yaml(&upstream, 200)).await;
    b.click("main form button").await;
    assert_eq!(b.client.current_url().await.unwrap().path(), "/ui/projects/fedora");
    assert!(b.text("h1 small").await.contains("<script>alert(1)</script>"), "the name is shown as text");
    let scripts =
        b.client.execute("return document.querySelectorAll('main script, main b').length", vec![]).await.unwrap();
    assert_eq!(scripts, json!(0), "no markup of the name reached the page");
    assert_eq!(project(&m, "fedora").await["rsync_module"], json!("open/"));

    // Sync now, then the run's page follows its output live until the run ends.
    b.click("button[formaction='/ui/projects/fedora/sync']").await;
    assert!(b.text("main .notice").await.contains("queued"));
    b.click("a[href^='/ui/runs/']").await;
    let status_at_load = b.text("#run-status").await;
    assert!(
        ["running", "queued"].contains(&status_at_load.as_str()),
        "the run was going when its page loaded: {status_at_load}"
    );
    wait_for(60, "the live log to reach the run's end", || async {
        let state = b.client.execute("return document.getElementById('log').dataset.follow", vec![]).await.ok()?;
        (state == json!("ended")).then_some(())
    })
    .await;
    let log = b.text("#log").await;
    assert!(log.contains("slow.bin") && log.contains("total size is"), "the whole output arrived live: {log}");
    b.check_page("run-followed").await;
    assert_eq!(newest_run(&m, "fedora").await["status"], json!("success"));

    // Stopping a run from its page.
    std::fs::write(upstream.data().join("slower.bin"), vec![8u8; 3000 * 1024]).unwrap();
    b.goto(&format!("{base}/ui/projects/fedora")).await;
    b.click("button[formaction='/ui/projects/fedora/sync']").await;
    b.click("a[href^='/ui/runs/']").await;
    wait_css(&b, "#log", 10).await;
    b.check_page("run-going").await;
    b.click("main form button").await;
    wait_for(30, "the run to stop", || async {
        (newest_run(&m, "fedora").await["status"] == json!("stopped")).then_some(())
    })
    .await;

    // The project's page: charts, runs, configuration, versions, slaves.
    b.goto(&format!("{base}/ui/projects/fedora")).await;
    b.check_page("project").await;
    assert!(b.has("figure.chart svg path.bar").await && b.has("#slaves-h").await);

    // An edit while another client changes the project: a conflict, and the other change is kept.
    let version = version_of(&m, "fedora").await;
    b.fill("#f-project", "Fedora (edited in the browser)").await;
    let other = json!({
        "project": "Fedora (edited by a script)", "rsync_host": "127.0.0.1", "rsync_port": upstream.port,
        "rsync_module": "open/", "dest": "pub/fedora", "rsync_options": {"basic": ["--bwlimit=200"]},
        "cron_options": {"hour": "*/6", "minute": "7"},
    });
    let put = m.api.call(reqwest::Method::PUT, "/projects/fedora", Some(&other), &Auth::root()).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    b.click("form[aria-label='Edit as a form'] button").await;
    assert!(b.text("main .error").await.contains("Conflict"), "the conflict is shown");
    b.check_page("conflict").await;
    assert_eq!(project(&m, "fedora").await["project"], json!("Fedora (edited by a script)"));
    assert_eq!(version_of(&m, "fedora").await, version + 1);

    // Again from the current version: the diff first, then the save.
    b.click("main a[href='/ui/projects/fedora']").await;
    b.fill("#f-project", "Fedora (edited in the browser)").await;
    b.click("form[aria-label='Edit as a form'] button").await;
    assert!(b.text(".diff del").await.contains("edited by a script"));
    assert!(b.text(".diff ins").await.contains("edited in the browser"));
    b.check_page("diff").await;
    assert_eq!(version_of(&m, "fedora").await, version + 1, "nothing saved before the confirmation");
    b.click("main form button").await;
    assert!(b.text("main .notice").await.contains("Saved"));
    assert_eq!(project(&m, "fedora").await["project"], json!("Fedora (edited in the browser)"));

    // Reverting to the script's version.
    b.goto(&format!("{base}/ui/projects/fedora/versions/{}", version + 1)).await;
    b.check_page("version").await;
    b.click("main form button").await;
    assert!(b.text("main .notice").await.contains("Reverted"));
    let now = project(&m, "fedora").await;
    assert_eq!(now["project"], json!("Fedora (edited by a script)"));
    assert_eq!(version_of(&m, "fedora").await, version + 3);

    // The other pages.
    for (path, name) in [
        ("/ui/cluster", "cluster"),
        ("/ui/slaves", "slaves"),
        ("/ui/users", "users"),
        ("/ui/alerts", "alerts"),
        ("/ui/account", "account"),
    ] {
        b.goto(&format!("{base}{path}")).await;
        assert!(!b.has("main .error").await, "{path} is shown");
        b.check_page(name).await;
    }
    b.goto(&format!("{base}/ui/?state=failed")).await;
    b.goto(&format!("{base}/ui/")).await;
    assert!(b.has("svg.spark").await, "a sparkline per project");
    b.check_page("projects").await;

    // Rotating a slave's token: shown once.
    b.goto(&format!("{base}/ui/slaves")).await;
    b.click("main form button").await;
    assert!(b.text("code.secret").await.len() >= 40);
    b.goto(&format!("{base}/ui/slaves")).await;
    assert!(!b.has("code.secret").await, "the token is not shown again");
    b.close().await;
}

fn simple_project(upstream: &Upstream) -> Value {
    json!({"id": "fedora", "project": "Fedora", "rsync_host": "127.0.0.1", "rsync_port": upstream.port, "rsync_module": "open/",
           "dest": "pub/fedora", "cron_options": {"hour": "*/6", "minute": "7"}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_sees_no_root_page_and_the_server_refuses_its_root_forms() {
    let upstream = Upstream::start().await;
    let m = TestMaster::start().await;
    let r = m.api.post("/add_project/", &simple_project(&upstream), &Auth::root()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let base = m.api.base.clone();
    let b = Browser::start().await;
    b.login(&base, "alice", USER_PASSWORD).await;
    assert!(b.has("a[href='/ui/projects/fedora']").await);
    assert!(b.has("button[formaction='/ui/projects/fedora/disable']").await, "a user acts on projects");
    for root_page in ["slaves", "users", "alerts"] {
        assert!(!b.has(&format!("nav a[href='/ui/{root_page}']")).await, "no link to {root_page}");
        b.goto(&format!("{base}/ui/{root_page}")).await;
        assert!(b.text("main .error").await.contains("root role"), "{root_page} is refused");
    }
    b.check_page("refused").await;
    // A form of a root's action (a new root user), made in the page with the user's own valid
    // CSRF token: refused.
    b.goto(&format!("{base}/ui/")).await;
    let forge = "const f = document.createElement('form'); f.method = 'post'; f.action = '/ui/users';\
        for (const [k, v] of [['csrf', document.querySelector('input[name=csrf]').value], ['username', 'mallory'],\
                              ['password', 'mallory-password-1'], ['role', 'root']]) {\
          const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }\
        document.body.appendChild(f); f.submit();";
    b.client.execute(forge, vec![]).await.unwrap();
    wait_for(10, "the answer to the forged form", || async {
        (b.client.current_url().await.ok()?.path() == "/ui/users" && b.has("main .error").await).then_some(())
    })
    .await;
    assert!(b.text("main .error").await.contains("root role"));
    let users = m.api.get("/list_users/", &Auth::root()).await.body;
    assert!(!users.as_array().unwrap().iter().any(|u| u["username"] == json!("mallory")), "{users}");
    // And the user's own action works.
    b.goto(&format!("{base}/ui/")).await;
    b.click("button[formaction='/ui/projects/fedora/disable']").await;
    assert_eq!(project(&m, "fedora").await["enabled"], json!(false));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cross_site_post_is_refused() {
    let upstream = Upstream::start().await;
    let m = TestMaster::start().await;
    m.api.post("/add_project/", &simple_project(&upstream), &Auth::root()).await;
    let base = m.api.base.clone();
    // Another site (localhost is not 127.0.0.1's site) whose page posts a form to the console.
    let target = format!("{base}/ui/projects/fedora/disable");
    let page = format!(
        "<!doctype html><title>evil</title><form id=f method=post action=\"{target}\"><input name=csrf value=guess>\
         <input name=back value=list></form><script>document.getElementById('f').submit()</script>"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil = format!("http://localhost:{}/", listener.local_addr().unwrap().port());
    let app = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(page) }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let b = Browser::start().await;
    b.login(&base, "root", ROOT_PASSWORD).await;
    b.goto(&evil).await;
    wait_for(10, "the forged form to be answered", || async {
        b.client.current_url().await.ok()?.as_str().starts_with(&base).then_some(())
    })
    .await;
    b.shot("cross-site-refused").await;
    assert_eq!(project(&m, "fedora").await["enabled"], json!(true), "the cross-site form changed nothing");
    b.close().await;
    server.abort();

    // Each defence alone: a cross-site mark, a foreign Origin, a wrong or missing token.
    let cookie = session_cookie(&base, "root", ROOT_PASSWORD).await;
    let csrf = csrf_of(&base, &cookie).await;
    let form = [("csrf", csrf.as_str()), ("back", "list")];
    let path = "/ui/projects/fedora/disable";
    assert_eq!(
        post_with(&base, &cookie, path, &form, &[("sec-fetch-site", "cross-site")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post_with(&base, &cookie, path, &form, &[("origin", "http://evil.example")]).await,
        StatusCode::FORBIDDEN
    );
    let wrong = [("csrf", "x".repeat(43)), ("back", "list".into())];
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(post_with(&base, &cookie, path, &wrong, &[]).await, StatusCode::FORBIDDEN);
    assert_eq!(post_with(&base, &cookie, path, &[("back", "list")], &[]).await, StatusCode::FORBIDDEN);
    assert_eq!(project(&m, "fedora").await["enabled"], json!(true));
    let same = [("sec-fetch-site", "same-origin")];
    assert_eq!(post_with(&base, &cookie, path, &form, &same).await, StatusCode::SEE_OTHER);
    assert_eq!(project(&m, "fedora").await["enabled"], json!(false), "the console's own form works");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_ends_at_logout_at_a_password_change_and_at_the_token_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = TestMaster::settings_in(dir.path());
    settings.token_ttl_secs = 3;
    let m = TestMaster::start_with(dir, settings).await;
    let base = m.api.base.clone();
    // A wrong password is a login page again, with no session.
    let r = raw_client()
        .post(format!("{base}/ui/login"))
        .form(&[("username", "root"), ("password", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());

    // Logout ends the session on the server: the cookie kept elsewhere no longer works.
    let cookie = session_cookie(&base, "root", ROOT_PASSWORD).await;
    assert_eq!(get_with(&base, &cookie, "/ui/").await.0, StatusCode::OK);
    let csrf = csrf_of(&base, &cookie).await;
    assert_eq!(post_with(&base, &cookie, "/ui/logout", &[("csrf", &csrf)], &[]).await, StatusCode::SEE_OTHER);
    assert_eq!(get_with(&base, &cookie, "/ui/").await.0, StatusCode::SEE_OTHER, "logged out");

    // A password change (here by a root, through the API) ends the user's sessions.
    let cookie = session_cookie(&base, "alice", USER_PASSWORD).await;
    assert_eq!(get_with(&base, &cookie, "/ui/").await.0, StatusCode::OK);
    let r = m
        .api
        .post("/update_api_user/", &json!({"username": "alice", "password": "a-new-password-42"}), &Auth::root())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(get_with(&base, &cookie, "/ui/").await.0, StatusCode::SEE_OTHER, "the password changed");

    // The user's own change in the console asks for the current password, and ends the session too.
    let cookie = session_cookie(&base, "alice", "a-new-password-42").await;
    let csrf = csrf_of(&base, &cookie).await;
    let wrong = [("csrf", csrf.as_str()), ("current_password", "nope"), ("password", "another-password-43")];
    assert_eq!(post_with(&base, &cookie, "/ui/account", &wrong, &[]).await, StatusCode::FORBIDDEN);
    let right =
        [("csrf", csrf.as_str()), ("current_password", "a-new-password-42"), ("password", "another-password-43")];
    assert_eq!(post_with(&base, &cookie, "/ui/account", &right, &[]).await, StatusCode::SEE_OTHER);
    assert_eq!(get_with(&base, &cookie, "/ui/").await.0, StatusCode::SEE_OTHER);
    session_cookie(&base, "alice", "another-password-43").await;

    // The API's token lifetime (3 s here) is the session's.
    let cookie = session_cookie(&base, "root", ROOT_PASSWORD).await;
    assert_eq!(get_with(&base, &cookie, "/ui/").await.0, StatusCode::OK);
    wait_for(10, "the session to expire", || async {
        (get_with(&base, &cookie, "/ui/").await.0 == StatusCode::SEE_OTHER).then_some(())
    })
    .await;
}
