//! Checking the settings once they are loaded: every value that can be checked without touching
//! the file system, each error naming its key.

use super::{AlertSettings, ConfigError, Settings, invalid};

impl Settings {
    /// `[[hooks]]`: each named once, an absolute program, a timeout of at most an hour.
    fn check_hooks(&self) -> Result<(), ConfigError> {
        for (i, h) in self.hooks.iter().enumerate() {
            if self.hooks[..i].iter().any(|o| o.name == h.name) {
                return Err(invalid("hooks.name", format!("'{}' is used twice", h.name)));
            }
            if !h.command.first().is_some_and(|p| std::path::Path::new(p).is_absolute()) {
                return Err(invalid(
                    "hooks.command",
                    format!("of '{}': must start with an absolute program path", h.name),
                ));
            }
            if !(1..=3600).contains(&h.timeout_secs) {
                return Err(invalid("hooks.timeout_secs", "must be between 1 and 3600"));
            }
        }
        Ok(())
    }

    /// `[[providers]]`: each named once, an absolute program, known slots, absolute read paths,
    /// variables that do not pass for ours.
    fn check_providers(&self) -> Result<(), ConfigError> {
        for (i, p) in self.providers.iter().enumerate() {
            if self.providers[..i].iter().any(|o| o.name == p.name) {
                return Err(invalid("providers.name", format!("'{}' is used twice", p.name)));
            }
            let Some(program) = p.command.first().filter(|p| std::path::Path::new(p).is_absolute()) else {
                return Err(invalid(
                    "providers.command",
                    format!("of '{}': must start with an absolute program path", p.name),
                ));
            };
            if program.contains('{') {
                return Err(invalid("providers.command", format!("of '{}': the program cannot be a slot", p.name)));
            }
            for item in &p.command[1..] {
                mirror_common::kinds::pieces(item)
                    .map_err(|e| invalid("providers.command", format!("of '{}': {e}", p.name)))?;
            }
            if let Some(r) = p.read.iter().find(|r| !r.is_absolute()) {
                return Err(invalid("providers.read", format!("of '{}': {} is not absolute", p.name, r.display())));
            }
            let ours = |k: &str| k.starts_with("TUNASYNC_") || k.starts_with(mirror_common::kinds::PARAM_ENV_PREFIX);
            let bad = |k: &str| k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if let Some(k) = p.env.keys().find(|k| ours(k) || bad(k)) {
                return Err(invalid("providers.env", format!("of '{}': '{k}' is not a name it may set", p.name)));
            }
        }
        Ok(())
    }

    /// `[[git_ssh_keys]]`: each named once; absolute paths a shell's single quotes hold as they
    /// are (git starts ssh through `sh -c`); the key readable by its owner only.
    fn check_git_ssh_keys(&self) -> Result<(), ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        for (i, k) in self.git_ssh_keys.iter().enumerate() {
            if self.git_ssh_keys[..i].iter().any(|o| o.name == k.name) {
                return Err(invalid("git_ssh_keys.name", format!("'{}' is used twice", k.name)));
            }
            for (field, path) in [("git_ssh_keys.key_file", &k.key_file), ("git_ssh_keys.known_hosts", &k.known_hosts)]
            {
                let text = path.to_string_lossy();
                if !path.is_absolute() || text.contains('\'') || text.chars().any(char::is_control) {
                    return Err(invalid(
                        field,
                        format!("of '{}': an absolute path without ' or control characters", k.name),
                    ));
                }
            }
            match std::fs::metadata(&k.key_file) {
                Ok(m) if m.permissions().mode() & 0o077 == 0 => {}
                Ok(_) => {
                    return Err(invalid(
                        "git_ssh_keys.key_file",
                        format!("of '{}': must not be readable by others (chmod 600)", k.name),
                    ));
                }
                Err(e) => return Err(invalid("git_ssh_keys.key_file", format!("of '{}': {e}", k.name))),
            }
        }
        Ok(())
    }

    /// `[site]`: mirrorz requires `url` (an http(s) address without a trailing `/`) and `abbr`.
    fn check_site(&self) -> Result<(), ConfigError> {
        let Some(site) = &self.site else { return Ok(()) };
        let web = site.url.starts_with("https://") || site.url.starts_with("http://");
        if !web || site.url.ends_with('/') || site.url.len() > 2048 {
            return Err(invalid("site.url", "must be an http:// or https:// address without a trailing /"));
        }
        if site.abbr.trim().is_empty() || site.abbr.len() > 64 {
            return Err(invalid("site.abbr", "must be a short name (1 to 64 characters)"));
        }
        Ok(())
    }

    /// Checks every value that can be checked without touching the file system.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_places()?;
        self.check_auth()?;
        self.check_logs()?;
        self.check_limits()?;
        self.check_runs()?;
        self.check_cluster()?;
        self.check_guards()?;
        self.alerts.validate()?;
        self.validate_targets()?;
        self.check_site()?;
        self.check_hooks()?;
        self.check_providers()?;
        self.check_git_ssh_keys()?;
        if self.run_nice.is_some_and(|n| n > 19) {
            return Err(invalid("run_nice", "must be between 0 and 19"));
        }
        if self.run_ionice.as_deref().is_some_and(|c| mirror_runtime::rsync::IoClass::parse(c).is_none()) {
            return Err(invalid("run_ionice", "must be idle, best-effort or best-effort:0 to best-effort:7"));
        }
        if self.run_memory_limit_mib.is_some_and(|m| !(16..=1 << 30).contains(&m)) {
            return Err(invalid("run_memory_limit_mib", "must be between 16 and 1073741824 (MiB)"));
        }
        if !(1..=3600).contains(&self.upstream_lock_retry_secs) || self.upstream_lock_wait_secs > 7 * 86_400 {
            return Err(invalid(
                "upstream_lock_retry_secs",
                "retry 1 to 3600 s, upstream_lock_wait_secs at most 604800 (a week)",
            ));
        }
        if !(1..=86_400).contains(&self.publish_timeout_secs) {
            return Err(invalid("publish_timeout_secs", "must be between 1 and 86400"));
        }
        if self.log.parse::<tracing_subscriber::EnvFilter>().is_err() {
            return Err(invalid(
                "log",
                format!("'{}' is not a log filter such as info or mirror_master=debug", self.log),
            ));
        }
        Ok(())
    }

    /// Where it listens, its database and mirror root, and its place among other nodes.
    fn check_places(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.database.as_os_str().is_empty() {
            return Err(invalid("database", "must not be empty"));
        }
        self.database_url()?;
        if !(3..=300).contains(&self.node_lease_secs) {
            return Err(invalid("node_lease_secs", "must be between 3 and 300"));
        }
        if self.node_dead_secs < 2 * self.node_lease_secs || self.node_dead_secs > 3600 {
            return Err(invalid("node_dead_secs", "must be at least twice node_lease_secs, and at most 3600"));
        }
        if let Some(url) = &self.api_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("api_url", "must be an http:// or https:// URL"));
        }
        if self.mirror_root.as_os_str().is_empty() {
            return Err(invalid("mirror_root", "must not be empty"));
        }
        Ok(())
    }

    /// Token lifetimes and the signing key.
    fn check_auth(&self) -> Result<(), ConfigError> {
        if self.refresh_token_ttl_secs > 366 * 86_400 {
            return Err(invalid("refresh_token_ttl_secs", "must be at most 31622400 (a year)"));
        }
        if !(1..=30 * 24 * 3600).contains(&self.token_ttl_secs) {
            return Err(invalid("token_ttl_secs", "must be between 1 and 2592000 (30 days)"));
        }
        if self.auth_cache_ttl_secs > 3600 {
            return Err(invalid("auth_cache_ttl_secs", "must be at most 3600"));
        }
        if let Some(s) = &self.jwt_secret
            && s.expose().len() < 32
        {
            return Err(invalid("jwt_secret", "must be at least 32 characters"));
        }
        Ok(())
    }

    /// The rsync program, run logs and the number of runs kept.
    fn check_logs(&self) -> Result<(), ConfigError> {
        if self.rsync_path.as_os_str().is_empty() {
            return Err(invalid("rsync_path", "must not be empty"));
        }
        if self.log_dir.as_os_str().is_empty() {
            return Err(invalid("log_dir", "must not be empty"));
        }
        if self.log_keep == 0 {
            return Err(invalid("log_keep", "must be at least 1"));
        }
        if self.log_max_bytes < 64 * 1024 {
            return Err(invalid("log_max_bytes", "must be at least 65536"));
        }
        if !(1..=1_000_000).contains(&self.runs_keep) {
            return Err(invalid("runs_keep", "must be between 1 and 1000000"));
        }
        Ok(())
    }

    /// The limits on requests and streams.
    fn check_limits(&self) -> Result<(), ConfigError> {
        self.limits()?;
        if !(1..=100_000).contains(&self.max_reads_in_flight) {
            return Err(invalid("max_reads_in_flight", "must be between 1 and 100000"));
        }
        if !(1..=100_000).contains(&self.max_streams) {
            return Err(invalid("max_streams", "must be between 1 and 100000"));
        }
        if !(1..=100_000).contains(&self.max_streams_per_user) {
            return Err(invalid("max_streams_per_user", "must be between 1 and 100000"));
        }
        if !(1..=100_000).contains(&self.max_writes_in_flight) {
            return Err(invalid("max_writes_in_flight", "must be between 1 and 100000"));
        }
        if self.overload_wait_ms > 60_000 {
            return Err(invalid("overload_wait_ms", "must be at most 60000"));
        }
        Ok(())
    }

    /// How runs are started, timed, retried and judged stale.
    fn check_runs(&self) -> Result<(), ConfigError> {
        if self.run_as.as_deref().is_some_and(|u| u.is_empty() || u.starts_with('-')) {
            return Err(invalid("run_as", "must be a user name or uid"));
        }
        if !(1..=4096).contains(&self.max_concurrent_runs) {
            return Err(invalid("max_concurrent_runs", "must be between 1 and 4096"));
        }
        if !(1..=7 * 24 * 3600).contains(&self.run_timeout_secs) {
            return Err(invalid("run_timeout_secs", "must be between 1 and 604800 (a week)"));
        }
        if self.retries > 20 {
            return Err(invalid("retries", "must be at most 20"));
        }
        if self.retry_base_ms > 600_000 {
            return Err(invalid("retry_base_ms", "must be at most 600000"));
        }
        if self.shutdown_grace_secs > 3600 {
            return Err(invalid("shutdown_grace_secs", "must be at most 3600"));
        }
        if !(60..=366 * 86_400).contains(&self.stale_after_secs) {
            return Err(invalid("stale_after_secs", "must be between 60 and 31622400 (a year)"));
        }
        Ok(())
    }

    /// The managed rsync daemon and the notifications to slaves.
    fn check_cluster(&self) -> Result<(), ConfigError> {
        let r = &self.rsyncd;
        if r.port == 0 {
            return Err(invalid("rsyncd.port", "must be a port number"));
        }
        if !(1..=3600).contains(&r.restart_max_secs) {
            return Err(invalid("rsyncd.restart_max_secs", "must be between 1 and 3600"));
        }
        if r.password.as_ref().is_some_and(|p| p.expose().is_empty() || p.expose().contains(['\n', ':'])) {
            return Err(invalid("rsyncd.password", "must be non-empty, without ':' or a newline"));
        }
        if !(1..=3600).contains(&self.reconcile_interval_secs) {
            return Err(invalid("reconcile_interval_secs", "must be between 1 and 3600"));
        }
        if !(1..=600).contains(&self.notify_timeout_secs) {
            return Err(invalid("notify_timeout_secs", "must be between 1 and 600"));
        }
        if self.notify_retries > 20 {
            return Err(invalid("notify_retries", "must be at most 20"));
        }
        Ok(())
    }

    /// The deletion guard.
    fn check_guards(&self) -> Result<(), ConfigError> {
        if self.max_shrink > 100 {
            return Err(invalid("max_shrink", "must be a percentage, 0 to 100"));
        }
        Ok(())
    }
}

impl Settings {
    fn validate_targets(&self) -> Result<(), ConfigError> {
        let t = &self.targets;
        if !(1..=256).contains(&t.max_parallel) {
            return Err(invalid("targets.max_parallel", "must be between 1 and 256"));
        }
        if t.retries > 20 || !(1..=60_000).contains(&t.retry_base_ms) {
            return Err(invalid("targets.retries", "retries at most 20, retry_base_ms 1-60000"));
        }
        if !(1..=86_400).contains(&t.request_timeout_secs) {
            return Err(invalid("targets.request_timeout_secs", "must be between 1 and 86400"));
        }
        // S3 wants parts of 5 MiB at least (but the last) and at most 10,000 of them.
        if !(5 << 20..=5 << 30).contains(&t.part_size_bytes) || t.multipart_threshold_bytes < t.part_size_bytes {
            return Err(invalid(
                "targets.part_size_bytes",
                "must be between 5 MiB and 5 GiB, and multipart_threshold_bytes at least as large",
            ));
        }
        if !(1..=60_000).contains(&t.watch_debounce_ms) {
            return Err(invalid("targets.watch_debounce_ms", "must be between 1 and 60000"));
        }
        if !(1..=100_000).contains(&t.pushes_keep) {
            return Err(invalid("targets.pushes_keep", "must be between 1 and 100000"));
        }
        let mut names = std::collections::HashSet::new();
        for c in &self.s3_credentials {
            if !names.insert(c.name.as_str()) {
                return Err(invalid("s3_credentials.name", format!("'{}' is used twice", c.name)));
            }
            if c.access_key_id.is_some() == c.access_key_id_env.is_some() {
                return Err(invalid(
                    "s3_credentials.access_key_id",
                    format!("of '{}': give access_key_id or access_key_id_env", c.name),
                ));
            }
            if c.endpoints.is_empty() {
                return Err(invalid(
                    "s3_credentials.endpoints",
                    format!(
                        "of '{}': list the endpoints these credentials may be used with \
                         (endpoints = [\"https://...\"]); see docs/targets.md",
                        c.name
                    ),
                ));
            }
            for e in &c.endpoints {
                if mirror_common::targets::check_endpoint(e).is_err() {
                    return Err(invalid(
                        "s3_credentials.endpoints",
                        format!("of '{}': '{e}' is not an http:// or https:// URL without credentials", c.name),
                    ));
                }
            }
            if c.secret_access_key_env.is_some() == c.secret_access_key_file.is_some() {
                return Err(invalid(
                    "s3_credentials.secret_access_key_file",
                    format!("of '{}': give secret_access_key_file or secret_access_key_env", c.name),
                ));
            }
        }
        Ok(())
    }
}

impl AlertSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=3600).contains(&self.check_interval_secs) {
            return Err(invalid("alerts.check_interval_secs", "must be between 1 and 3600"));
        }
        if !(1..=366 * 86_400).contains(&self.lag_after_secs) {
            return Err(invalid("alerts.lag_after_secs", "must be between 1 and 31622400 (a year)"));
        }
        if !(1..=600_000).contains(&self.retry_base_ms) || !(1..=86_400).contains(&self.retry_max_secs) {
            return Err(invalid("alerts.retry_base_ms", "retry_base_ms 1-600000 and retry_max_secs 1-86400"));
        }
        if !(60..=366 * 86_400).contains(&self.give_up_after_secs) {
            return Err(invalid("alerts.give_up_after_secs", "must be between 60 and 31622400 (a year)"));
        }
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(invalid("alerts.timeout_secs", "must be between 1 and 300"));
        }
        if !(1..=3660).contains(&self.keep_days) {
            return Err(invalid("alerts.keep_days", "must be between 1 and 3660"));
        }
        let mut names = std::collections::HashSet::new();
        for w in &self.webhook {
            if !names.insert(w.name.as_str()) {
                return Err(invalid("alerts.webhook.name", format!("'{}' is used twice", w.name)));
            }
            let url = w.url.expose();
            let parsed = reqwest::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
            if parsed.is_none_or(|u| u.host_str().is_none()) || url.len() > 4096 {
                return Err(invalid(
                    "alerts.webhook.url",
                    format!("of '{}' must be an http:// or https:// URL", w.name),
                ));
            }
            if w.secret.is_some() && w.secret_file.is_some() {
                return Err(invalid("alerts.webhook.secret", format!("of '{}': give secret or secret_file", w.name)));
            }
        }
        Ok(())
    }
}
