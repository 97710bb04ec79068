//! The master's settings: embedded defaults, then an optional TOML file, then `MIRROR_MASTER__*`
//! environment variables. Checked when loaded; a bad value stops the start with its name.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub listen: String,
    pub database: PathBuf,
    pub mirror_root: PathBuf,
    pub public_read: bool,
    pub token_ttl_secs: u64,
    pub auth_cache_ttl_secs: u64,
    pub jwt_secret: Option<Secret>,
    pub log: String,
    /// Creates a `root` user at first start when there is no user. Set from `MIRROR_ROOT_PASSWORD`.
    #[serde(skip)]
    pub initial_root_password: Option<Secret>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:5000".into(),
            database: "mirror-master.db".into(),
            mirror_root: "mirror".into(),
            public_read: true,
            token_ttl_secs: 3600,
            auth_cache_ttl_secs: 60,
            jwt_secret: None,
            log: "info".into(),
            initial_root_password: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

impl Settings {
    /// Loads defaults, then `file` if given, then the environment (`MIRROR_MASTER__LISTEN`, ...).
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(f) = file {
            builder = builder.add_source(config::File::from(f).format(config::FileFormat::Toml).required(true));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("MIRROR_MASTER").prefix_separator("__").separator("__").try_parsing(true),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|_| invalid("listen", format!("'{}' is not an address:port such as 127.0.0.1:5000", self.listen)))
    }

    /// Checks every value that can be checked without touching the file system.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.database.as_os_str().is_empty() {
            return Err(invalid("database", "must not be empty"));
        }
        if self.mirror_root.as_os_str().is_empty() {
            return Err(invalid("mirror_root", "must not be empty"));
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
        if self.log.parse::<tracing_subscriber::EnvFilter>().is_err() {
            return Err(invalid(
                "log",
                format!("'{}' is not a log filter such as info or mirror_master=debug", self.log),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_secrets_do_not_print() {
        let mut s = Settings::default();
        assert!(s.validate().is_ok());
        s.jwt_secret = Some(Secret::new("x".repeat(40)));
        assert!(!format!("{s:?}").contains("xxxx"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let s = Settings { listen: "nowhere".into(), ..Settings::default() };
        assert!(s.validate().unwrap_err().to_string().contains("listen"));
        let s = Settings { token_ttl_secs: 0, ..Settings::default() };
        assert!(s.validate().unwrap_err().to_string().contains("token_ttl_secs"));
        let s = Settings { jwt_secret: Some(Secret::new("short")), ..Settings::default() };
        assert!(s.validate().unwrap_err().to_string().contains("jwt_secret"));
    }
}
