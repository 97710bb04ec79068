//! The tables of the master's settings beside the top-level keys: `[alerts]` and its webhooks,
//! `[targets]` and the S3 credentials they may use, `[rsyncd]`.

use std::path::PathBuf;

use mirror_common::api::{Host, Name};
use serde::Deserialize;

use super::Secret;

/// `[alerts]`, with one `[[alerts.webhook]]` table per receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    pub webhook: Vec<WebhookSettings>,
    /// How often staleness, slave health and lag are checked (a run's end is checked at once).
    pub check_interval_secs: u64,
    /// A slave that serves an older generation of a project this long after the project's
    /// success is lagging.
    pub lag_after_secs: u64,
    /// First retry of an undelivered event; doubled each time, up to `retry_max_secs`.
    pub retry_base_ms: u64,
    pub retry_max_secs: u64,
    /// An event not delivered within this long is given up (and shown so in `GET /alerts`).
    pub give_up_after_secs: u64,
    /// Per-request timeout of a delivery.
    pub timeout_secs: u64,
    /// Deliveries are kept (for `GET /alerts`) this many days.
    pub keep_days: u64,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            webhook: Vec::new(),
            check_interval_secs: 30,
            lag_after_secs: 3600,
            retry_base_ms: 1000,
            retry_max_secs: 300,
            give_up_after_secs: 7 * 86_400,
            timeout_secs: 10,
            keep_days: 30,
        }
    }
}

/// `[targets]`: how pushes to object stores behave.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetSettings {
    /// Requests in flight per push.
    pub max_parallel: usize,
    /// Retries of a failed request (connection errors, 5xx, throttling), with exponential backoff.
    pub retries: usize,
    /// First backoff; doubled each retry up to 15 s.
    pub retry_base_ms: u64,
    /// A request (one part of a large file) that takes longer fails and is retried.
    pub request_timeout_secs: u64,
    /// Files this large or larger go up in parts of `part_size_bytes`.
    pub multipart_threshold_bytes: u64,
    pub part_size_bytes: u64,
    /// A watched tree's changes are gathered for this long before they are pushed.
    pub watch_debounce_ms: u64,
    /// Pushes kept per project and target (the newest).
    pub pushes_keep: usize,
    /// Whether a target without `target_prefix` may have objects deleted (those whose file is
    /// gone). Off by default: such a push lists the whole bucket, and would delete what others
    /// keep there; it keeps them and says how many.
    pub delete_at_bucket_root: bool,
}

impl Default for TargetSettings {
    fn default() -> Self {
        TargetSettings {
            max_parallel: 16,
            retries: 5,
            retry_base_ms: 100,
            request_timeout_secs: 300,
            // A smaller file is read whole into memory: with max_parallel uploads, at most
            // 16 x 16 MiB; a larger one keeps two parts of 8 MiB in flight.
            multipart_threshold_bytes: 16 * 1024 * 1024,
            part_size_bytes: 8 * 1024 * 1024,
            watch_debounce_ms: 200,
            pushes_keep: 200,
            delete_at_bucket_root: false,
        }
    }
}

/// One `[[s3_credentials]]` entry: an access key and its secret, from this file, the master's
/// environment, or a file only its owner can read. Never stored in the database or shown.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Credentials {
    pub name: Name,
    /// The access key id (not a secret by itself), or `access_key_id_env`.
    pub access_key_id: Option<String>,
    /// The variable of the master's environment that holds the access key id.
    pub access_key_id_env: Option<String>,
    /// The variable of the master's environment that holds the secret access key.
    pub secret_access_key_env: Option<String>,
    /// A file (mode 0600 or stricter) whose first line is the secret access key.
    pub secret_access_key_file: Option<PathBuf>,
    /// The endpoints (`https://s3.eu-west-1.amazonaws.com`) these credentials may be used with:
    /// a target that pairs them with any other is refused. Only this file names where the master
    /// sends signed requests and the mirror's files, never an API user.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The buckets they may be used with; empty: any bucket of those endpoints.
    #[serde(default)]
    pub buckets: Vec<String>,
}

impl S3Credentials {
    /// Whether a target may use these credentials with `endpoint` and `bucket`: `Err` names the
    /// field at fault (`endpoint` or `bucket`) and why.
    pub fn allows(&self, endpoint: &str, bucket: &str) -> Result<(), (&'static str, String)> {
        let norm = |e: &str| e.trim_end_matches('/').to_ascii_lowercase();
        if !self.endpoints.iter().any(|e| norm(e) == norm(endpoint)) {
            return Err((
                "endpoint",
                format!(
                    "the credentials '{}' may be used only with the endpoints the master's configuration lists for them: {}",
                    self.name,
                    self.endpoints.join(", ")
                ),
            ));
        }
        if !self.buckets.is_empty() && !self.buckets.iter().any(|b| b == bucket) {
            return Err((
                "bucket",
                format!(
                    "the credentials '{}' may be used only with the buckets {}",
                    self.name,
                    self.buckets.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

/// What a webhook may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    RunFailed,
    RunRecovered,
    Stale,
    FreshAgain,
    SlaveDown,
    SlaveBack,
    SlaveLagging,
    /// A push to an object-store target failed (after succeeding, or as its first result).
    PushFailed,
    PushRecovered,
}

impl AlertEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::RunFailed => "run_failed",
            AlertEvent::RunRecovered => "run_recovered",
            AlertEvent::Stale => "stale",
            AlertEvent::FreshAgain => "fresh_again",
            AlertEvent::SlaveDown => "slave_down",
            AlertEvent::SlaveBack => "slave_back",
            AlertEvent::SlaveLagging => "slave_lagging",
            AlertEvent::PushFailed => "push_failed",
            AlertEvent::PushRecovered => "push_recovered",
        }
    }
}

/// One receiver of alerts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// How the webhook is named in logs and `GET /alerts` (its URL may hold a secret).
    pub name: Name,
    /// `http://` or `https://`; never printed.
    pub url: Secret,
    /// The events it wants; empty: all of them.
    #[serde(default)]
    pub events: Vec<AlertEvent>,
    /// Signs each body: `X-Mirror-Sync-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    pub secret: Option<Secret>,
    /// The signing secret from a file readable by its owner only (its first line).
    pub secret_file: Option<PathBuf>,
}

/// The master's rsync daemon: one read-only module over the mirror root, which slaves pull from.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RsyncdSettings {
    /// true: the master writes rsyncd.conf and a 0600 secrets file under `dir`, and runs
    /// `rsync --daemon --no-detach` as its child. false: an rsync daemon is run by other means.
    pub manage: bool,
    /// How slaves reach the daemon (and, when managed, the address it listens on).
    pub host: Host,
    pub port: u16,
    pub module: Name,
    pub user: Name,
    /// The module's password. Unset with `manage`: generated once, kept in the database, and
    /// written to `<dir>/slave.password` (0600) for the slaves' `rsync_password_file`.
    pub password: Option<Secret>,
    pub dir: PathBuf,
    /// While the daemon cannot run (rsync missing, the port taken), it is tried again after a
    /// backoff of at most this many seconds.
    pub restart_max_secs: u64,
}

impl Default for RsyncdSettings {
    fn default() -> Self {
        RsyncdSettings {
            manage: true,
            host: Host::from_static("127.0.0.1"),
            port: 8730,
            module: Name::from_static("mirror"),
            user: Name::from_static("mirror"),
            password: None,
            dir: "rsyncd".into(),
            restart_max_secs: 30,
        }
    }
}

/// One `[[hooks]]` entry: a program a project may run after its runs, by name. Only this file names
/// programs; the API names the hook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSettings {
    pub name: Name,
    /// The program (an absolute path) and its arguments, run as argv (never through a shell).
    pub command: Vec<String>,
    /// It is stopped after this long (its run stays as it ended).
    #[serde(default = "hook_timeout")]
    pub timeout_secs: u64,
}

fn hook_timeout() -> u64 {
    300
}

/// One `[[providers]]` entry: the program a `kind: command` project runs, by name. Only this file
/// names programs, the paths they may read, and fixed variables; a project names the provider and
/// gives its `upstream_url` and `params`, which reach the argv only through the `{...}` slots
/// here, each inside the one item that holds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub name: Name,
    /// The program (an absolute path) and its arguments, run as argv (never through a shell).
    /// Slots: `{upstream_url}`, `{working_dir}` (the project's tree), `{mirror_name}` (its id),
    /// `{log_file}`, `{params.NAME}`; `${...}` is left as it is (a shell's own).
    pub command: Vec<String>,
    /// Paths the confined program may read besides the system's libraries and its own binary (the
    /// programs a script runs, `/etc/ssl/certs`, its configuration files).
    #[serde(default)]
    pub read: Vec<PathBuf>,
    /// Variables set for every run of the provider (after the project's `MIRROR_PARAM_*`).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
}

/// One `[[git_ssh_keys]]` entry: a private key (a file of mode 0600) git projects with an `ssh://`
/// upstream log in with, and the hosts it may talk to (an OpenSSH `known_hosts` file: an unknown or
/// changed host key ends the run).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSshKey {
    pub name: Name,
    pub key_file: PathBuf,
    pub known_hosts: PathBuf,
}

impl ProviderSettings {
    /// Each parameter its slots use, with whether a slot of it begins an argv item.
    pub fn param_slots(&self) -> Vec<(String, bool)> {
        use mirror_common::kinds::{Piece, Slot, pieces};
        let mut out: Vec<(String, bool)> = Vec::new();
        for item in &self.command[1..] {
            let Ok(cut) = pieces(item) else { continue };
            for (i, piece) in cut.iter().enumerate() {
                if let Piece::Slot(Slot::Param(name)) = piece {
                    match out.iter_mut().find(|(n, _)| n == name) {
                        Some(seen) => seen.1 |= i == 0,
                        None => out.push((name.clone(), i == 0)),
                    }
                }
            }
        }
        out
    }
}
