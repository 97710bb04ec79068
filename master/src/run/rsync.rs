//! The argv of a project's rsync: `rsync <defaults> <basic> <delete> --stats <source> <dest>/`.

use mirror_common::api::is_valid_id;
use mirror_common::rsync_opts::rsync_argv;

use crate::db::projects::ProjectRow;

/// The user rsync logs in as: `rsync_user`, or, when only a password is set, the project name
/// (what the 2014 service did), falling back to the id when the name is not usable as a user.
pub fn login_user(p: &ProjectRow) -> Option<&str> {
    match (&p.rsync_user, &p.rsync_password) {
        (Some(u), _) => Some(u),
        (None, Some(_)) if is_valid_id(&p.project) => Some(&p.project),
        (None, Some(_)) => Some(&p.id),
        (None, None) => None,
    }
}

/// `[user@]host::module[/path]/`, or `rsync://[user@]host:port/module[/path]/` when the project
/// has a port. The trailing slash copies the contents, whether the source is a module or a path.
/// `None` for a project with a local source (it has no upstream to pull).
pub fn source(p: &ProjectRow) -> Option<String> {
    let (host, module) = (p.rsync_host.as_ref()?, p.rsync_module.as_ref()?);
    let port = p.rsync_port.map(|port| port.0);
    Some(mirror_common::rsync_opts::daemon_source(login_user(p), host, port, module, None))
}

/// `rsync <defaults> <basic> <delete> [--temp-dir=TEMP] <safety options> --stats -- <source> <dest>/`.
/// The user, host and module are typed ([`Name`], [`Host`], [`ModulePath`]): none can begin with `-`.
/// `temp` is used unless the project's options name a temporary directory of their own.
/// `None` for a project with a local source.
pub fn argv(p: &ProjectRow, temp: &std::path::Path, mirror_name: &str) -> Option<Vec<String>> {
    with_options(p, p.rsync_options.layered(), temp, mirror_name)
}

/// The argv of a pull of `p` with `options`: progress first; then the options; the temporary
/// directory unless they name one; the trace file excluded where the project writes one.
fn with_options(
    p: &ProjectRow,
    options: Vec<String>,
    temp: &std::path::Path,
    mirror_name: &str,
) -> Option<Vec<String>> {
    let source = source(p)?;
    // How far it has got, as it goes (GET /runs/{id}); these lines are read, not logged.
    // Each change itemized: whether the run changed anything at all (a new generation) is read
    // from rsync's own accounting, attribute-only changes and deletions included.
    let mut all = vec!["--info=progress2".to_owned(), "--itemize-changes".to_owned()];
    all.extend(options);
    if !mirror_runtime::fs::names_temp_dir(&all) {
        all.push(format!("--temp-dir={}", temp.display()));
    }
    all.extend(p.trace.then(|| crate::run::trace::exclude(mirror_name)));
    all.extend(crate::run::stamps::filters(p));
    Some(rsync_argv(all, source, format!("{}/", p.dest.trim_end_matches('/'))))
}

/// Whether an option deletes on the receiving side.
pub fn is_delete_option(o: &str) -> bool {
    o.starts_with("--delete") || o == "--del"
}

/// Which pass of a two-stage run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Everything but the index files (the profile's and the project's excludes); no deletion.
    One,
    /// The rest, each file put in place at the end (`--delay-updates`), deletions after that
    /// (`--delete-delay`, in place of the project's delete option).
    Two,
}

/// The argv of one stage of a two-stage project; `None` for a local source or a single-stage one.
/// Stage 1 brings the upstream's `Archive-Update-in-Progress-*` (the master looks at them, then
/// removes them); stage 2 brings none; neither touches the master's own.
pub fn stage_argv(p: &ProjectRow, temp: &std::path::Path, mirror_name: &str, stage: Stage) -> Option<Vec<String>> {
    let stages = p.stages.as_ref()?;
    let mut options = Vec::new();
    let layered = p.rsync_options.layered();
    let deletes = layered.iter().any(|o| is_delete_option(o));
    options.extend(layered.into_iter().filter(|o| !is_delete_option(o) && o != "--delay-updates"));
    match stage {
        Stage::One => options.extend(stages.stage1_filters()),
        Stage::Two => {
            options.push("--delay-updates".to_owned());
            if deletes {
                options.push("--delete-delay".to_owned());
            }
        }
    }
    // Stage 1 brings the upstream's update locks (to be looked at); stage 2 never brings one.
    let lock = mirror_common::stages::LOCK_PREFIX;
    options.push(match stage {
        Stage::One => format!("--exclude=/{lock}{mirror_name}"),
        Stage::Two => format!("--exclude=/{lock}*"),
    });
    with_options(p, options, temp, mirror_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirror_common::api::{Host, Name};

    fn project() -> ProjectRow {
        crate::db::projects::sample()
    }

    #[test]
    fn argv_layers_options_then_stats_source_dest() {
        assert_eq!(
            argv(&project(), std::path::Path::new("/srv/mirror/.mirror-sync-tmp/fedora"), "m1").unwrap(),
            [
                "--info=progress2",
                "--itemize-changes",
                "-avH",
                "--no-motd",
                "--delete",
                "--temp-dir=/srv/mirror/.mirror-sync-tmp/fedora",
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
    fn a_temporary_directory_of_the_projects_own_is_kept() {
        let mut p = project();
        p.rsync_options.basic.push("--temp-dir=/var/tmp/x".into());
        let args = argv(&p, std::path::Path::new("/srv/mirror/.mirror-sync-tmp/fedora"), "m1").unwrap();
        assert_eq!(args.iter().filter(|a| a.starts_with("--temp-dir")).count(), 1);
        assert!(args.contains(&"--temp-dir=/var/tmp/x".to_string()));
    }

    #[test]
    fn two_stages_split_the_indexes_from_the_rest_and_delay_the_deletions() {
        let mut p = project();
        p.stages = Some(mirror_common::stages::Stages {
            profile: Some(mirror_common::stages::StageProfile::Debian),
            stage1_exclude: vec![],
        });
        let temp = std::path::Path::new("/t");
        let one = stage_argv(&p, temp, "m1", Stage::One).unwrap();
        assert!(one.contains(&"--exclude=Packages*".to_owned()) && !one.iter().any(|o| o.starts_with("--delete")));
        let two = stage_argv(&p, temp, "m1", Stage::Two).unwrap();
        assert!(two.contains(&"--delay-updates".to_owned()) && two.contains(&"--delete-delay".to_owned()));
        assert!(!two.contains(&"--delete".to_owned()) && !two.contains(&"--exclude=Packages*".to_owned()));
        assert!(two.contains(&"--exclude=/Archive-Update-in-Progress-*".to_owned()));
        p.stages = None;
        assert_eq!(stage_argv(&p, temp, "m1", Stage::One), None);
    }

    #[test]
    fn a_local_source_has_no_argv() {
        let mut p = project();
        (p.rsync_host, p.rsync_module) = (None, None);
        assert_eq!(argv(&p, std::path::Path::new("/tmp"), "m1"), None);
    }

    #[test]
    fn sources() {
        let mut p = project();
        p.rsync_password = Some(mirror_common::Secret::new("pw"));
        assert_eq!(source(&p).unwrap(), "fedora@rsync.example.org::fedora/linux/");
        p.rsync_user = Some(Name::from_static("mirror"));
        p.rsync_port = Some(mirror_common::names::Port(8873));
        assert_eq!(source(&p).unwrap(), "rsync://mirror@rsync.example.org:8873/fedora/linux/");
        p.rsync_host = Some(Host::from_static("::1"));
        assert_eq!(source(&p).unwrap(), "rsync://mirror@[::1]:8873/fedora/linux/");
    }
}
