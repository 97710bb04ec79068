//! The argv of a project's rsync: `rsync <defaults> <basic> <delete> --stats <source> <dest>/`.

use mirror_common::api::is_valid_id;
use mirror_common::rsync_opts::{RsyncOptions, rsync_argv};

use crate::db::projects::ProjectRow;

/// The user rsync logs in as: `rsync_user`, or, when only a password is set, the project name
/// (what the 2014 service did), falling back to the id when the name is not usable as a user.
pub fn login_user(p: &ProjectRow) -> Option<String> {
    match (&p.rsync_user, &p.rsync_password) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(_)) if is_valid_id(&p.project) => Some(p.project.clone()),
        (None, Some(_)) => Some(p.id.clone()),
        (None, None) => None,
    }
}

/// `[user@]host::module[/path]/`, or `rsync://[user@]host:port/module[/path]/` when the project
/// has a port. The trailing slash copies the contents, whether the source is a module or a path.
pub fn source(p: &ProjectRow) -> String {
    let user = login_user(p).map(|u| format!("{u}@")).unwrap_or_default();
    let host = if p.rsync_host.contains(':') { format!("[{}]", p.rsync_host) } else { p.rsync_host.clone() };
    let module = p.rsync_module.trim_end_matches('/');
    match p.rsync_port {
        Some(port) => format!("rsync://{user}{host}:{port}/{module}/"),
        None => format!("{user}{host}::{module}/"),
    }
}

/// `rsync <defaults> <basic> <delete> <safety options> --stats -- <source> <dest>/`. Rows stored
/// before ids were refused a leading `-` are refused here: such a user, host or module would be
/// read as an option.
pub fn argv(p: &ProjectRow) -> anyhow::Result<Vec<String>> {
    let options: RsyncOptions = serde_json::from_str(&p.rsync_options)?;
    let user = login_user(p);
    for (what, value) in
        [("rsync_user", user.as_deref()), ("rsync_host", Some(&p.rsync_host)), ("rsync_module", Some(&p.rsync_module))]
    {
        if value.is_some_and(|v| v.starts_with('-')) {
            anyhow::bail!("{what} starts with '-': not run");
        }
    }
    Ok(rsync_argv(options.layered(), source(p), format!("{}/", p.dest.trim_end_matches('/'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> ProjectRow {
        ProjectRow {
            id: "fedora".into(),
            project: "fedora".into(),
            id_derived: true,
            rsync_host: "rsync.example.org".into(),
            rsync_module: "fedora/linux".into(),
            dest: "/srv/mirror/fedora".into(),
            rsync_password: None,
            schedule: None,
            rsync_options: r#"{"defaults":["-avH"],"basic":["--no-motd"],"delete":"--delete"}"#.into(),
            enabled: true,
            created_at: String::new(),
            updated_at: String::new(),
            rsync_user: None,
            rsync_port: None,
            timeout_secs: None,
            catch_up: false,
            last_fire_at: None,
            generation: 0,
        }
    }

    #[test]
    fn argv_layers_options_then_stats_source_dest() {
        assert_eq!(
            argv(&project()).unwrap(),
            [
                "-avH",
                "--no-motd",
                "--delete",
                "--no-devices",
                "--no-specials",
                "--chmod=ug-s",
                "--stats",
                "--",
                "rsync.example.org::fedora/linux/",
                "/srv/mirror/fedora/"
            ]
        );
    }

    #[test]
    fn sources() {
        let mut p = project();
        p.rsync_password = Some(mirror_common::Secret::new("pw"));
        assert_eq!(source(&p), "fedora@rsync.example.org::fedora/linux/");
        p.rsync_user = Some("mirror".into());
        p.rsync_port = Some(8873);
        assert_eq!(source(&p), "rsync://mirror@rsync.example.org:8873/fedora/linux/");
        p.rsync_host = "::1".into();
        assert_eq!(source(&p), "rsync://mirror@[::1]:8873/fedora/linux/");
        p.rsync_user = Some("-e".into());
        assert!(argv(&p).is_err());
    }
}
