//! What a project mirrors with: rsync (the 2014 kind), git (a bare mirror of a repository), or a
//! command (a provider declared in the master's configuration file, named by the project). The
//! program is never chosen by a request: git is the master's, a provider is the configuration's.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// How a project's tree is brought from its upstream.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// From an rsync daemon (`rsync_host`, `rsync_module`).
    #[default]
    Rsync,
    /// A bare mirror of a git repository at `upstream_url` (`clone --mirror`, then a pruning fetch).
    Git,
    /// The master's `[[providers]]` entry named by `provider`, run in the project's tree.
    Command,
}

impl Kind {
    pub fn is_rsync(&self) -> bool {
        *self == Kind::Rsync
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rsync => "rsync",
            Kind::Git => "git",
            Kind::Command => "command",
        }
    }
}

/// The longest `upstream_url`.
pub const MAX_URL: usize = 2048;

/// The schemes an `upstream_url` may have: git's transports it speaks over the network (not
/// `file://`, not `ext::`), and the ones mirroring tools speak.
const SCHEMES: &[&str] = &["http", "https", "ftp", "ftps", "git", "rsync", "sftp", "ssh"];

/// Schemes a git project may use (`ssh` with an `ssh_key`).
pub const GIT_SCHEMES: &[&str] = &["http", "https", "git", "ssh"];

/// An upstream's address, checked: `scheme://host[:port]/path` with a known scheme, no password,
/// and only the characters of a plain URL (letters, digits, `-._~:/?[]@%+,=`), so that it reads
/// as one word in whatever a provider hands it to (lftp's `-c` script, a shell) and can never
/// be an option (it begins with its scheme).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, example = "https://git.example.org/repo.git"))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct UpstreamUrl(String);

impl UpstreamUrl {
    pub fn parse(text: &str) -> Result<UpstreamUrl, String> {
        if text.is_empty() || text.len() > MAX_URL {
            return Err(format!("must be 1 to {MAX_URL} characters"));
        }
        if let Some(c) = text.chars().find(|c| !(c.is_ascii_alphanumeric() || "-._~:/?[]@%+,=".contains(*c))) {
            return Err(format!("holds {c:?}: only letters, digits and -._~:/?[]@%+,= (percent-encode the rest)"));
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err("must be scheme://host/path".into());
        };
        if !SCHEMES.contains(&scheme) {
            return Err(format!("scheme '{scheme}' is not one of {}", SCHEMES.join(", ")));
        }
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.rsplit_once('@') {
            Some((user, _)) if user.contains(':') => {
                return Err("holds a password: give credentials in the master's configuration".into());
            }
            Some((_, host)) => host,
            None => authority,
        };
        if host.is_empty() || host.starts_with(':') {
            return Err("has no host".into());
        }
        Ok(UpstreamUrl(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn scheme(&self) -> &str {
        self.0.split_once("://").map_or("", |(s, _)| s)
    }
}

impl std::fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UpstreamUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        UpstreamUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The most parameters a project may give its provider, the longest name and value.
pub const MAX_PARAMS: usize = 32;
pub const MAX_PARAM_NAME: usize = 64;
pub const MAX_PARAM_VALUE: usize = 4096;

/// The prefix of the environment variable each parameter is passed as: `depth` is
/// `MIRROR_PARAM_DEPTH`.
pub const PARAM_ENV_PREFIX: &str = "MIRROR_PARAM_";

/// A command project's parameters: each is passed to the provider's program as an environment
/// variable ([`PARAM_ENV_PREFIX`] and the name in capitals), and reaches its argv only through a
/// `{params.NAME}` slot the provider declares, as (part of) one argv item. Names: a lowercase
/// letter, then lowercase letters, digits and `_`; values: any text without control characters.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, String>))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn new(map: BTreeMap<String, String>) -> Result<Params, String> {
        if map.len() > MAX_PARAMS {
            return Err(format!("at most {MAX_PARAMS} parameters"));
        }
        for (name, value) in &map {
            let mut chars = name.chars();
            let good = name.len() <= MAX_PARAM_NAME
                && chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !good {
                return Err(format!(
                    "name '{name}': a lowercase letter, then lowercase letters, digits and _ (at most {MAX_PARAM_NAME})"
                ));
            }
            if value.len() > MAX_PARAM_VALUE {
                return Err(format!("{name}: at most {MAX_PARAM_VALUE} bytes"));
            }
            if value.chars().any(char::is_control) {
                return Err(format!("{name}: holds a control character"));
            }
        }
        Ok(Params(map))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The environment variable a parameter is passed as.
    pub fn env_name(name: &str) -> String {
        format!("{PARAM_ENV_PREFIX}{}", name.to_ascii_uppercase())
    }
}

impl<'de> Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Params::new(BTreeMap::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Where a project's tree comes from when it is not rsync: its kind, its upstream's address, and
/// for a command, the provider and its parameters. All empty for an rsync project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSpec {
    #[serde(default, skip_serializing_if = "Kind::is_rsync")]
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_url: Option<UpstreamUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<crate::names::Name>,
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub params: Params,
    /// A git project's `ssh://` upstream: the `[[git_ssh_keys]]` entry of the master's
    /// configuration it logs in with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<crate::names::Name>,
}

impl SourceSpec {
    /// The rules between its fields: rsync has none of them; git has a URL of its schemes and no
    /// provider; a command has a provider and a URL. `Err((field, message))`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let needs = |what: &str| format!("a {} project needs {what}", self.kind.as_str());
        let takes_none = |field: &'static str| (field, format!("a {} project takes no {field}", self.kind.as_str()));
        match self.kind {
            Kind::Rsync => {
                if self.upstream_url.is_some() {
                    return Err((
                        "upstream_url",
                        "an rsync project's upstream is rsync_host and rsync_module (or set kind)".into(),
                    ));
                }
                if self.provider.is_some() {
                    return Err(takes_none("provider"));
                }
                if !self.params.is_empty() {
                    return Err(takes_none("params"));
                }
                if self.ssh_key.is_some() {
                    return Err(takes_none("ssh_key"));
                }
            }
            Kind::Git => {
                let Some(url) = &self.upstream_url else { return Err(("upstream_url", needs("upstream_url"))) };
                if !GIT_SCHEMES.contains(&url.scheme()) {
                    return Err(("upstream_url", format!("a git upstream is one of {}://", GIT_SCHEMES.join("://, "))));
                }
                match (url.scheme() == "ssh", self.ssh_key.is_some()) {
                    (true, false) => {
                        return Err(("ssh_key", needs("ssh_key for an ssh:// upstream (a [[git_ssh_keys]] name)")));
                    }
                    (false, true) => return Err(("ssh_key", "is for an ssh:// upstream only".into())),
                    _ => {}
                }
                if self.provider.is_some() {
                    return Err(takes_none("provider"));
                }
                if !self.params.is_empty() {
                    return Err(takes_none("params"));
                }
            }
            Kind::Command => {
                if self.upstream_url.is_none() {
                    return Err(("upstream_url", needs("upstream_url")));
                }
                if self.provider.is_none() {
                    return Err(("provider", needs("a provider (a [[providers]] name of the master's configuration)")));
                }
                if self.ssh_key.is_some() {
                    return Err(takes_none("ssh_key"));
                }
            }
        }
        Ok(())
    }
}

/// A placeholder of a provider's argv, replaced by one value inside the one item it stands in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    UpstreamUrl,
    WorkingDir,
    MirrorName,
    LogFile,
    Param(String),
}

impl Slot {
    fn parse(name: &str) -> Option<Slot> {
        Some(match name {
            "upstream_url" => Slot::UpstreamUrl,
            "working_dir" => Slot::WorkingDir,
            "mirror_name" => Slot::MirrorName,
            "log_file" => Slot::LogFile,
            _ => Slot::Param(name.strip_prefix("params.").filter(|p| !p.is_empty())?.to_owned()),
        })
    }
}

/// One argv item of a provider, cut at its slots: `{name}` (not `${name}`, a shell's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Slot(Slot),
}

/// Cuts `item` into text and slots; `Err` names a `{...}` that is no slot.
pub fn pieces(item: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = item;
    while let Some(at) = rest.find('{') {
        let (before, from) = rest.split_at(at);
        text.push_str(before);
        let shell_own = text.ends_with('$');
        match from.find('}') {
            Some(end) if !shell_own => {
                let name = &from[1..end];
                let slot = Slot::parse(name).ok_or_else(|| {
                    format!("{{{name}}} is no slot (upstream_url, working_dir, mirror_name, log_file, params.NAME)")
                })?;
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(Piece::Slot(slot));
                rest = &from[end + 1..];
            }
            _ => {
                text.push('{');
                rest = &from[1..];
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for good in ["https://git.example.org/a.git", "git://[::1]:9418/x", "ftp://u@h/p?x=1,2", "rsync://h/m/"] {
            assert_eq!(UpstreamUrl::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "-oProxyCommand=x",
            "file:///etc",
            "ext::sh -c x",
            "https://h/a b",
            "https://h/a;b",
            "https://h/'a'",
            "https://u:pw@h/",
            "https:///path",
            "https://h/$(x)",
            "https://h/a\nb",
        ] {
            assert!(UpstreamUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn params() {
        let p = |k: &str, v: &str| Params::new(BTreeMap::from([(k.to_owned(), v.to_owned())]));
        assert!(p("depth", "-1; rm -rf / 'q' \"q\"").is_ok());
        assert!(p("Depth", "1").is_err() && p("1a", "1").is_err() && p("a-b", "1").is_err());
        assert!(p("a", "x\ny").is_err() && p("a", &"x".repeat(MAX_PARAM_VALUE + 1)).is_err());
        assert_eq!(Params::env_name("depth_2"), "MIRROR_PARAM_DEPTH_2");
    }

    #[test]
    fn slots() {
        assert_eq!(
            pieces("mirror --delete {upstream_url} .").unwrap(),
            [Piece::Text("mirror --delete ".into()), Piece::Slot(Slot::UpstreamUrl), Piece::Text(" .".into())]
        );
        assert_eq!(pieces("{params.depth}").unwrap(), [Piece::Slot(Slot::Param("depth".into()))]);
        assert_eq!(pieces("echo ${HOME} {").unwrap(), [Piece::Text("echo ${HOME} {".into())]);
        assert!(pieces("{nope}").is_err() && pieces("{params.}").is_err());
    }

    #[test]
    fn source_rules() {
        let url = |u: &str| Some(UpstreamUrl::parse(u).unwrap());
        let git = SourceSpec { kind: Kind::Git, upstream_url: url("git://h/r"), ..Default::default() };
        assert!(git.check().is_ok());
        let ftp = SourceSpec { upstream_url: url("ftp://h/r"), ..git.clone() };
        assert_eq!(ftp.check().unwrap_err().0, "upstream_url");
        let ssh = SourceSpec { upstream_url: url("ssh://git@h/r.git"), ..git.clone() };
        assert_eq!(ssh.check().unwrap_err().0, "ssh_key");
        let key = Some(crate::names::Name::from_static("github"));
        assert!(SourceSpec { ssh_key: key.clone(), ..ssh }.check().is_ok());
        assert_eq!(SourceSpec { ssh_key: key, ..git.clone() }.check().unwrap_err().0, "ssh_key");
        let cmd = SourceSpec { kind: Kind::Command, ..git.clone() };
        assert_eq!(cmd.check().unwrap_err().0, "provider");
        let rsync = SourceSpec { kind: Kind::Rsync, ..git };
        assert_eq!(rsync.check().unwrap_err().0, "upstream_url");
    }
}
