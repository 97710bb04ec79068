//! Validated names, parsed once where they enter (a request body, a query, a configuration file,
//! a database row) and carried as types from then on: a `ProjectId` in hand is a valid id, a
//! `MirrorPath` cannot climb out of its root, a `Host` cannot be read as an option.

use std::path::{Component, Path};

use serde::{Deserialize, Deserializer, Serialize};

/// Declares a `String` newtype whose every value passed `$check`. serde and the database read it
/// through the check (a bad value is refused with the check's message) and write it as text.
macro_rules! checked_text {
    ($(#[$meta:meta])* $name:ident, $check:path) => {
        $(#[$meta])*
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The value if it follows the rule; otherwise why not.
            pub fn parse(value: impl Into<String>) -> Result<Self, String> {
                let value = value.into();
                $check(&value)?;
                Ok($name(value))
            }

            /// A value written in the code (a default). Checked in debug builds and tests.
            pub fn from_static(value: &'static str) -> Self {
                debug_assert!($check(value).is_ok(), "{value}");
                $name(value.to_owned())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::parse(s)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $name::parse(text).map_err(serde::de::Error::custom)
            }
        }

        #[cfg(feature = "sqlx")]
        sqlite_text!($name, as_str);

        #[cfg(feature = "sqlx")]
        sql_decode_text!($name, |text| $name::parse(text.to_owned()));
    };
}

/// `[A-Za-z0-9._-]+`, the rule for every id (projects, users, module names). `.` and `..` match
/// the pattern but name directories, and ids become file and path names, so they are refused; so
/// is a leading `-`, which a program would read as an option (`rsync_user: "-e"`).
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && !s.starts_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_id(s: &str) -> Result<(), String> {
    if is_valid_id(s) {
        return Ok(());
    }
    Err(format!("'{}' is not a valid id: use [A-Za-z0-9._-]+, not starting with '-'", s.escape_debug()))
}

/// The one rule for a host, wherever one is named (an upstream, a slave, the master's rsync
/// daemon): a DNS name of letters, digits and inner hyphens, an IPv4 or an IPv6 address. Never
/// something a program would read as an option, a path or a user (`-e`, `a/b`, `u@h`).
pub fn is_valid_host(host: &str) -> bool {
    let is_name = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    is_name || host.parse::<std::net::Ipv4Addr>().is_ok() || host.parse::<std::net::Ipv6Addr>().is_ok()
}

fn check_host(s: &str) -> Result<(), String> {
    if is_valid_host(s) {
        return Ok(());
    }
    Err(format!("'{}' is not a host name or IP address", s.escape_debug()))
}

/// At most this long: a module path or a mirror path.
const MAX_PATH: usize = 1024;

/// `module` or `module/path/inside`: a valid module name, then a path with no `..`.
fn check_module_path(s: &str) -> Result<(), String> {
    if s.len() > MAX_PATH || s.chars().any(char::is_control) {
        return Err("is too long or contains a control character".into());
    }
    let (name, path) = s.split_once('/').unwrap_or((s, ""));
    if !is_valid_id(name) {
        return Err(format!("module name '{}' must match [A-Za-z0-9._-]+", name.escape_debug()));
    }
    if path.split('/').any(|seg| seg == "..") {
        return Err("the path inside the module must not contain '..'".into());
    }
    Ok(())
}

/// A relative path of plain components: not empty, not absolute, no `.` or `..`, no control
/// characters. Joined to any root it stays inside it (lexically: symlinks are the confinement's job).
fn check_mirror_path(s: &str) -> Result<(), String> {
    let p = Path::new(s);
    if s.is_empty() || s.len() > MAX_PATH || p.is_absolute() || s.chars().any(char::is_control) {
        return Err("must be a relative path".into());
    }
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err("must not contain '..' or '.'".into());
    }
    Ok(())
}

/// An absolute path of plain components below `/` (never `/` itself), as a resolved tree's place
/// is stored: no `.` or `..`, no empty component, no control character.
fn check_dest(s: &str) -> Result<(), String> {
    let p = Path::new(s);
    if s.len() > 4096 || !p.is_absolute() || s.chars().any(char::is_control) || s.ends_with('/') {
        return Err("must be an absolute path".into());
    }
    let plain = s.split('/').skip(1).all(|part| !part.is_empty() && part != "." && part != "..");
    if !plain || s == "/" {
        return Err("must be an absolute path of plain components below /".into());
    }
    Ok(())
}

checked_text! {
    /// A project's id: the key of the API, a directory name on the slaves.
    ProjectId, check_id
}

checked_text! {
    /// A name under the id rule that is not a project's: a user, an rsync module, an rsync login.
    Name, check_id
}

checked_text! {
    /// A DNS name, an IPv4 or an IPv6 address.
    Host, check_host
}

checked_text! {
    /// `module` or `module/path/inside`, as an upstream's source is named.
    ModulePath, check_module_path
}

checked_text! {
    /// A tree's place relative to a root (the master's module, a slave's root).
    MirrorPath, check_mirror_path
}

checked_text! {
    /// Where a project's tree is: absolute, already resolved under the mirror root.
    Dest, check_dest
}

impl AsRef<Path> for Dest {
    fn as_ref(&self) -> &Path {
        self.as_path()
    }
}

impl AsRef<std::ffi::OsStr> for Dest {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_ref()
    }
}

impl Dest {
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }

    /// The path a resolution returned, if it is one.
    pub fn from_path(path: &Path) -> Result<Self, String> {
        let text = path.to_str().ok_or("is not valid UTF-8")?;
        Dest::parse(text)
    }
}

impl ModulePath {
    /// The module's name (before the first `/`).
    pub fn module(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }
}

impl MirrorPath {
    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl Host {
    /// As written in a URL or an rsync source: an IPv6 address in brackets.
    pub fn bracketed(&self) -> std::borrow::Cow<'_, str> {
        if self.0.contains(':') { format!("[{}]", self.0).into() } else { self.0.as_str().into() }
    }
}

/// A port given as `7000` or `"7000"`, as the seed's example does.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Port(pub u16);

impl TryFrom<u16> for Port {
    type Error = String;

    fn try_from(p: u16) -> Result<Port, String> {
        if p == 0 { Err("port must be 1-65535".to_owned()) } else { Ok(Port(p)) }
    }
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a port number (1-65535), as a number or a string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Port, E> {
                u16::try_from(v).ok().filter(|p| *p > 0).map(Port).ok_or_else(|| E::custom("port must be 1-65535"))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Port, E> {
                u64::try_from(v).map_err(|_| E::custom("port must be 1-65535")).and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Port, E> {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| E::custom(format!("'{v}' is not a port number")))
                    .and_then(|v| self.visit_u64(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["fedora", "a.b_c-d", "X1"] {
            assert!(ProjectId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "-e", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(ProjectId::parse(bad).is_err(), "{bad}");
        }
        let id: ProjectId = serde_json::from_str("\"fedora\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"fedora\"");
        assert!(serde_json::from_str::<ProjectId>("\"../x\"").is_err());
    }

    #[test]
    fn hosts() {
        for ok in ["rsync.example.org", "localhost", "127.0.0.1", "::1", "fe80::1", "a-b.c", "ftp-1.osuosl.org"] {
            assert!(Host::parse(ok).is_ok(), "{ok}");
        }
        for bad in
            ["", "-e", "a/b", "u@h", "a..b", "a_b", "-a.b", "a-.b", "h:1", " h", "a b", "host;rm", "[::1]", "host::mod"]
        {
            assert!(Host::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Host::parse("::1").unwrap().bracketed(), "[::1]");
        assert_eq!(Host::parse("h.org").unwrap().bracketed(), "h.org");
    }

    #[test]
    fn module_paths() {
        for ok in ["fedora", "fedora/linux/releases", "m/a..b", "debian-cd/12.0"] {
            assert!(ModulePath::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/x", "-m", "m/../x", "m/..", "a b/c", "m/\n", "../x", "mod\nx"] {
            assert!(ModulePath::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ModulePath::parse("fedora/linux").unwrap().module(), "fedora");
    }

    #[test]
    fn dests() {
        assert_eq!(Dest::parse("/srv/mirror/a").unwrap().as_path(), Path::new("/srv/mirror/a"));
        for bad in ["", "/", "srv/a", "/srv/../x", "/srv/./a", "/srv//a", "/srv/a/", "/a\nb"] {
            assert!(Dest::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mirror_paths() {
        assert_eq!(MirrorPath::parse("pub/fedora").unwrap().as_path(), Path::new("pub/fedora"));
        for bad in ["", "/etc", "../x", "a/../../x", "./a", "a\0b", "a\nb"] {
            assert!(MirrorPath::parse(bad).is_err(), "{bad:?}");
        }
    }
}
