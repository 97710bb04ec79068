//! A real browser for the console's tests: Debian's chromium, headless, driven over WebDriver
//! through Debian's chromedriver (started here on a free port, in a process group of its own that
//! is killed with the browser when the test ends, passed or not). Screenshots go to
//! `target/test-artifacts/console/`; pages are checked with axe-core from npm
//! (`target/axe/node_modules/axe-core/axe.min.js`, installed by scripts/test.sh).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use mirror_runtime::rsync::GroupChild;
use serde_json::{Value, json};

pub struct Browser {
    pub client: Client,
    _driver: GroupChild,
    _profile: tempfile::TempDir,
}

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/console")
}

fn axe_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/axe/node_modules/axe-core/axe.min.js")
}

impl Browser {
    /// A fresh browser (its own profile: no cookie of another test).
    pub async fn start() -> Browser {
        let port = crate::rsyncd::free_port();
        let mut command = tokio::process::Command::new("chromedriver");
        command.arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null());
        let driver = GroupChild::spawn(&mut command)
            .expect("chromedriver (Debian's chromium-driver; scripts/test.sh installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        crate::wait_for(30, "chromedriver to be ready", || async {
            let status: Value = http.get(format!("{url}/status")).send().await.ok()?.json().await.ok()?;
            (status["value"]["ready"] == json!(true)).then_some(())
        })
        .await;
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--window-size=1280,1000", format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::rustls()
            .expect("a WebDriver client")
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a chromium session through chromedriver");
        Browser { client, _driver: driver, _profile: profile }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page loads");
    }

    /// The text of the first element `css` finds.
    pub async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.expect("text")
    }

    /// Whether any element matches `css`.
    pub async fn has(&self, css: &str) -> bool {
        !self.client.find_all(Locator::Css(css)).await.expect("a search").is_empty()
    }

    /// Types `value` into the field `css` (emptied first).
    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        field.clear().await.expect("clear");
        field.send_keys(value).await.expect("typing");
    }

    /// Clicks `css` (a link or a button) and waits for the next page.
    pub async fn click(&self, css: &str) {
        let before = self.client.current_url().await.expect("url");
        let old_body = self.client.find(Locator::Css("body")).await.expect("a body");
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .expect("click");
        // The old page's body goes stale once the new page has replaced it.
        crate::wait_for(30, "the next page", || async {
            let gone = old_body.tag_name().await.is_err();
            let moved = self.client.current_url().await.ok().is_some_and(|u| u != before);
            (gone || moved).then_some(())
        })
        .await;
        crate::wait_for(30, "the page to load", || async {
            let state = self.client.execute("return document.readyState", vec![]).await.ok()?;
            (state == json!("complete")).then_some(())
        })
        .await;
    }

    /// Logs in through the form.
    pub async fn login(&self, base: &str, user: &str, password: &str) {
        self.goto(&format!("{base}/ui/")).await;
        assert!(self.client.current_url().await.expect("url").path().starts_with("/ui/login"));
        self.fill("#username", user).await;
        self.fill("#password", password).await;
        self.click("form button").await;
        assert_eq!(self.client.current_url().await.expect("url").path(), "/ui/", "logged in");
    }

    /// Saves a screenshot as `console/<name>.png`.
    pub async fn shot(&self, name: &str) {
        std::fs::create_dir_all(artifacts()).expect("the artifacts directory");
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(artifacts().join(format!("{name}.png")), png).expect("the screenshot saved");
    }

    /// axe-core's serious and critical violations on the current page (`id: help (targets)`).
    pub async fn axe(&self) -> Vec<String> {
        let source = std::fs::read_to_string(axe_path()).expect("axe-core (scripts/test.sh installs it)");
        self.client.execute(&source, vec![]).await.expect("axe-core loads");
        let script = "const done = arguments[arguments.length - 1];\
            axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations\
              .filter(v => v.impact === 'serious' || v.impact === 'critical')\
              .map(v => v.id + ': ' + v.help + ' (' + v.nodes.map(n => n.target.join(' ')).join(', ') + ')')));";
        let found = self.client.execute_async(script, vec![]).await.expect("axe-core runs");
        serde_json::from_value(found).expect("a list of violations")
    }

    /// A screenshot and an accessibility check of the current page, named `name`.
    pub async fn check_page(&self, name: &str) {
        self.shot(name).await;
        let violations = self.axe().await;
        assert!(violations.is_empty(), "{name}: accessibility violations: {violations:#?}");
    }

    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.close()).await;
    }
}
