//! Where `mirrorctl` connects, how it logs in, and the HTTP calls, with the master's errors turned
//! into exit codes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mirror_common::ErrorBody;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub const DEFAULT_URL: &str = "http://127.0.0.1:5000";

/// Exit codes, as the README documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Other = 1,
    Usage = 2,
    Auth = 3,
    NotFound = 4,
    Conflict = 5,
    Server = 6,
    RunFailed = 7,
    Invalid = 8,
}

/// A failure with the exit code it ends `mirrorctl` with.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure { exit, message: message.into() }
    }
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::new(Exit::Other, e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

/// `~/.config/mirror-sync`, or `$XDG_CONFIG_HOME/mirror-sync`.
pub fn config_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("mirror-sync"))
}

#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    url: Option<String>,
}

fn read_config(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let parsed: FileConfig = config_from_toml(&text)?;
    parsed.url
}

/// The configuration files hold `url = "..."` (TOML); other keys are ignored.
fn config_from_toml(text: &str) -> Option<FileConfig> {
    let mut out = FileConfig::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("url") {
            let value = rest.trim_start().strip_prefix('=')?.trim();
            out.url = Some(value.trim_matches('"').to_owned());
        }
    }
    Some(out)
}

/// `--url`, then `MIRRORCTL_URL`, then the user's and the system's configuration file, then the default.
pub fn resolve_url(flag: Option<&str>) -> String {
    if let Some(u) = flag {
        return u.trim_end_matches('/').to_owned();
    }
    if let Some(u) = std::env::var("MIRRORCTL_URL").ok().filter(|u| !u.is_empty()) {
        return u.trim_end_matches('/').to_owned();
    }
    let files =
        [config_dir().map(|d| d.join("mirrorctl.toml")), Some(PathBuf::from("/etc/mirror-sync/mirrorctl.toml"))];
    for path in files.into_iter().flatten() {
        if let Some(u) = read_config(&path) {
            return u.trim_end_matches('/').to_owned();
        }
    }
    DEFAULT_URL.to_owned()
}

/// The token `mirrorctl login` keeps, for one master.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedToken {
    pub url: String,
    pub username: String,
    pub token: String,
    pub expires_at: String,
    /// Renews `token` without the password until it expires (`POST /refresh_token/`).
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub refresh_expires_at: Option<String>,
}

impl SavedToken {
    pub fn from_response(url: String, username: String, r: mirror_common::api::TokenResponse) -> SavedToken {
        SavedToken {
            url,
            username,
            token: r.token,
            expires_at: r.expires_at.to_text(),
            refresh_token: r.refresh_token,
            refresh_expires_at: r.refresh_expires_at.map(|t| t.to_text()),
        }
    }
}

/// Whether a saved time is still more than `margin` seconds away.
fn still_valid(at: &str, margin: i64) -> bool {
    chrono::DateTime::parse_from_rfc3339(at).is_ok_and(|t| t > chrono::Utc::now() + chrono::Duration::seconds(margin))
}

pub fn token_file() -> Option<PathBuf> {
    config_dir().map(|d| d.join("mirrorctl-token.json"))
}

/// The directory of mirrorctl's files, made 0700 whatever the umask (the token file in it is
/// 0600, and nobody else may swap it or place one there).
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// The token file: one saved token per master (a file of the older single-token shape is read
/// as a list of one).
#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    masters: Vec<SavedToken>,
}

fn read_tokens() -> TokenFile {
    let Some(text) = token_file().and_then(|p| std::fs::read_to_string(p).ok()) else {
        return TokenFile::default();
    };
    if let Ok(file) = serde_json::from_str::<TokenFile>(&text) {
        return file;
    }
    serde_json::from_str::<SavedToken>(&text).map(|one| TokenFile { masters: vec![one] }).unwrap_or_default()
}

/// Keeps `saved` as the token for its master, beside those of other masters, in a file readable
/// by its owner only (0600, created so: never readable by others).
pub fn save_token(saved: &SavedToken) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = token_file().ok_or_else(|| Failure::new(Exit::Other, "no home directory for the token file"))?;
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let mut file = read_tokens();
    file.masters.retain(|t| t.url != saved.url);
    file.masters.push(saved.clone());
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(serde_json::to_string(&file)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

fn load_token(url: &str) -> Option<SavedToken> {
    read_tokens().masters.into_iter().find(|t| t.url == url)
}

/// The saved token for `url`, renewed first with its refresh token when it has expired or has
/// less than a minute left (the renewed one is saved). `None` when there is none that works.
async fn saved_login(url: &str) -> Option<String> {
    let saved = load_token(url)?;
    if still_valid(&saved.expires_at, 60) {
        return Some(saved.token);
    }
    let renewed = match (&saved.refresh_token, &saved.refresh_expires_at) {
        (Some(refresh), Some(until)) if still_valid(until, 0) => renew(url, refresh).await,
        _ => None,
    };
    match renewed {
        Some(r) => {
            let fresh = SavedToken::from_response(url.to_owned(), saved.username, r);
            let token = fresh.token.clone();
            if let Err(e) = save_token(&fresh) {
                eprintln!("mirrorctl: the renewed token could not be saved: {}", e.message);
            }
            Some(token)
        }
        None => still_valid(&saved.expires_at, 0).then_some(saved.token),
    }
}

async fn renew(url: &str, refresh: &str) -> Option<mirror_common::api::TokenResponse> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).redirect(same_origin()).build().ok()?;
    let body = mirror_common::api::RefreshToken { refresh_token: refresh.to_owned() };
    let resp = http.post(format!("{url}/refresh_token/")).json(&body).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

/// How requests log in.
#[derive(Clone)]
pub enum Login {
    None,
    Basic(String, String),
    Bearer(String),
}

/// `MIRRORCTL_TOKEN`, then the saved token for this master (renewed when it has expired), then
/// `MIRRORCTL_USER` and `MIRRORCTL_PASSWORD`, else none (the public views still work).
pub async fn resolve_login(url: &str) -> Login {
    if let Some(t) = std::env::var("MIRRORCTL_TOKEN").ok().filter(|t| !t.is_empty()) {
        return Login::Bearer(t);
    }
    if let Some(token) = saved_login(url).await {
        return Login::Bearer(token);
    }
    match (std::env::var("MIRRORCTL_USER"), std::env::var("MIRRORCTL_PASSWORD")) {
        (Ok(u), Ok(p)) if !u.is_empty() => Login::Basic(u, p),
        _ => Login::None,
    }
}

/// The login for a master other than the one `mirrorctl` is pointed at (`copy`'s other side):
/// its own saved token only. The environment's credentials belong to the master of `--url`
/// (`MIRRORCTL_URL`, the configuration file): they are never sent to another.
pub async fn resolve_login_elsewhere(url: &str) -> Login {
    saved_login(url).await.map_or(Login::None, Login::Bearer)
}

/// Redirects are followed only within the master's own origin (scheme, host and port): a
/// redirect elsewhere would carry a password, a token or a body to a host nobody named. It is
/// answered as a failure that says where it pointed.
fn same_origin() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(reqwest::Url::origin);
        if attempt.previous().len() > 5 || first.as_ref() != Some(&attempt.url().origin()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// The message for a redirect that was not followed.
fn redirect_message(status: StatusCode, headers: &reqwest::header::HeaderMap) -> Option<String> {
    if !status.is_redirection() {
        return None;
    }
    let to = headers.get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?");
    Some(format!(
        "the master answered {status}, to {}: not followed (another origin); use that URL with --url if you trust it",
        to.escape_debug()
    ))
}

pub struct Client {
    pub url: String,
    http: reqwest::Client,
    /// For answers that may last (a followed run): no overall timeout.
    follow_http: reqwest::Client,
    login: Login,
}

fn exit_for(status: StatusCode) -> Exit {
    match status.as_u16() {
        401 | 403 => Exit::Auth,
        404 => Exit::NotFound,
        409 => Exit::Conflict,
        400 | 405 | 413 | 422 => Exit::Invalid,
        _ => Exit::Server,
    }
}

impl Client {
    pub fn new(url: String, login: Login) -> Result<Client> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).redirect(same_origin()).build()?;
        let follow_http =
            reqwest::Client::builder().connect_timeout(Duration::from_secs(30)).redirect(same_origin()).build()?;
        Ok(Client { url, http, follow_http, login })
    }

    fn with_login(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.login {
            Login::None => req,
            Login::Basic(u, p) => req.basic_auth(u, Some(p)),
            Login::Bearer(t) => req.bearer_auth(t),
        }
    }

    /// A call; a non-2xx answer becomes a failure with the master's message and field, and an
    /// answer that is not the type asked for is a failure too (never an empty value).
    pub async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let mut req = self.with_login(self.http.request(method, format!("{}{path}", self.url)));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::new(Exit::Server, format!("cannot reach the master at {}: {e}", self.url)))?;
        let status = resp.status();
        if let Some(m) = redirect_message(status, resp.headers()) {
            return Err(Failure::new(Exit::Server, m));
        }
        let bytes = resp.bytes().await.map_err(|e| Failure::new(Exit::Server, e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| Failure::new(Exit::Server, format!("unexpected answer from {path}: {e}")));
        }
        let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(err) => match err.field {
                Some(f) => format!("{} ({f}: {})", err.error, err.message),
                None => format!("{}: {}", err.error, err.message),
            },
            Err(_) => format!("HTTP {status}"),
        };
        let hint = if status == StatusCode::UNAUTHORIZED { " (log in with `mirrorctl login`)" } else { "" };
        Err(Failure::new(exit_for(status), format!("{message}{hint}")))
    }

    /// A text answer written to stdout as it arrives (a run's output, followed live).
    pub async fn stream_to_stdout(&self, path: &str) -> Result<()> {
        use std::io::Write;
        let mut resp = self.open_stream(path, &[]).await?;
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = resp.chunk().await.map_err(|e| Failure::new(Exit::Server, e.to_string()))? {
            out.write_all(&chunk)?;
            out.flush()?;
        }
        Ok(())
    }

    /// Opens a long-lived GET (a followed log, a server-sent event stream), with extra headers.
    pub async fn open_stream(&self, path: &str, headers: &[(&str, String)]) -> Result<reqwest::Response> {
        let mut req = self.with_login(self.follow_http.get(format!("{}{path}", self.url)));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::new(Exit::Server, format!("cannot reach the master at {}: {e}", self.url)))?;
        let status = resp.status();
        if let Some(m) = redirect_message(status, resp.headers()) {
            return Err(Failure::new(Exit::Server, m));
        }
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            let message =
                serde_json::from_slice::<ErrorBody>(&body).map_or_else(|_| format!("HTTP {status}"), |e| e.message);
            return Err(Failure::new(exit_for(status), message));
        }
        Ok(resp)
    }

    /// Sends a request on as it came (`mirrorctl proxy`), with this client's login; the answer
    /// as the master gave it.
    pub async fn forward(
        &self,
        method: &str,
        path: &str,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    ) -> Result<reqwest::Response> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
        let mut req = self.with_login(self.follow_http.request(method, format!("{}{path}", self.url)));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.body(body)
            .send()
            .await
            .map_err(|e| Failure::new(Exit::Server, format!("cannot reach the master at {}: {e}", self.url)))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.call(Method::PUT, path, Some(body)).await
    }
}

/// The empty body of a call that needs none.
#[derive(Serialize)]
pub struct Empty {}

/// A value checked here as the master would check it: refused with the master's exit code for
/// invalid input, naming the field.
pub fn invalid<T>(field: &str, checked: std::result::Result<T, String>) -> Result<T> {
    checked.map_err(|why| Failure::new(Exit::Invalid, format!("invalid ({field}: {why})")))
}

/// A value for a query string.
pub fn query(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_name_the_url() {
        let c = config_from_toml("# comment\nurl = \"http://m.example:5000\"\nother = 1\n").unwrap();
        assert_eq!(c.url.as_deref(), Some("http://m.example:5000"));
        assert_eq!(query("a b&c"), "a%20b%26c");
        assert_eq!(exit_for(StatusCode::CONFLICT), Exit::Conflict);
    }
}
