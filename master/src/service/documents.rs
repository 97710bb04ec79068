//! A project as a configuration document has it (`GET /export`, `POST /import`, `projects_dir`
//! files, Rainer's payloads, resource-sync's items), to and from its stored configuration.

use std::path::Path;

use mirror_common::api::{AddProject, PasswordField, ProjectDoc, UpstreamDoc, UpstreamInput};
use mirror_common::project::ProjectConfig;
use mirror_common::rsync_opts::RsyncOptionsInput;

use crate::error::Error;

/// A project's configuration as the seeds' clients get it (Rainer's payloads, resource-sync's
/// items): its document without even the `"set"` of a password, which sent back would set one.
pub fn project_config(
    config: &ProjectConfig,
    mirror_root: &Path,
) -> serde_json::Result<serde_json::Map<String, serde_json::Value>> {
    let mut config = match serde_json::to_value(project_doc(config, false, &[], mirror_root))? {
        serde_json::Value::Object(o) => o,
        _ => serde_json::Map::new(),
    };
    config.remove("rsync_password");
    Ok(config)
}

/// A project's configuration as canonical YAML (Rainer's payloads, the console's editor).
pub fn project_yaml(config: &ProjectConfig, mirror_root: &Path) -> anyhow::Result<String> {
    Ok(serde_norway::to_string(&project_config(config, mirror_root)?)?)
}

/// A project's document: `dest` relative to the mirror root, the password as `"set"`; with more
/// than one upstream, all of them as `upstreams` (`more_set`: which of the others have a password).
pub fn project_doc(row: &ProjectConfig, password_set: bool, more_set: &[bool], mirror_root: &Path) -> ProjectDoc {
    let upstreams = (!row.more_upstreams.is_empty()).then(|| {
        let set = std::iter::once(password_set).chain(more_set.iter().copied().chain(std::iter::repeat(false)));
        row.upstreams()
            .into_iter()
            .zip(set)
            .map(|(u, set)| UpstreamDoc {
                host: u.host,
                module: u.module,
                port: u.port,
                user: u.user,
                password: set.then_some(PasswordField::Set),
            })
            .collect::<Vec<_>>()
    });
    let single = upstreams.is_none();
    let dest = row
        .dest
        .as_path()
        .strip_prefix(mirror_root)
        .ok()
        .and_then(|p| p.to_str())
        .map_or_else(|| row.dest.to_string(), str::to_owned);
    let o = &row.rsync_options;
    mirror_common::from_config!(ProjectDoc, row, {
        rsync_host: row.rsync_host.clone().filter(|_| single),
        rsync_module: row.rsync_module.clone().filter(|_| single),
        dest,
        rsync_user: row.rsync_user.clone().filter(|_| single),
        rsync_port: row.rsync_port.filter(|_| single),
        rsync_password: (password_set && single).then_some(PasswordField::Set),
        upstreams,
        cron_options: row.schedule.as_ref().and_then(|s| serde_json::to_value(s).ok()),
        rsync_options: Some(RsyncOptionsInput {
            defaults: Some(o.defaults.clone()),
            basic: Some(o.basic.clone()),
            delete: o.delete.clone(),
        }),
    })
}

/// A document's project as the request that adds or replaces it (the same checks follow).
pub fn add_request(p: &ProjectDoc) -> Result<AddProject, Error> {
    let cron_options = match &p.cron_options {
        Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| Error::field("cron_options", e.to_string()))?),
        None => None,
    };
    let password = match &p.rsync_password {
        Some(PasswordField::Value(s)) => Some(s.clone()),
        _ => None,
    };
    let upstreams = p.upstreams.as_ref().map(|list| {
        list.iter()
            .map(|u| UpstreamInput {
                host: u.host.clone(),
                module: u.module.clone(),
                port: u.port,
                user: u.user.clone(),
                password: match &u.password {
                    Some(PasswordField::Value(s)) => Some(s.clone()),
                    _ => None,
                },
            })
            .collect::<Vec<_>>()
    });
    Ok(AddProject {
        upstreams,
        project: p.project.clone(),
        id: Some(p.id.clone()),
        rsync_host: p.rsync_host.clone(),
        rsync_module: p.rsync_module.clone(),
        dest: p.dest.clone(),
        rsync_password: password,
        cron_options,
        interval_options: p.interval_options.clone(),
        rsync_options: p.rsync_options.clone(),
        enabled: Some(p.enabled),
        rsync_user: p.rsync_user.clone(),
        rsync_port: p.rsync_port,
        timeout_secs: p.timeout_secs,
        catch_up: Some(p.catch_up),
        max_age_secs: p.max_age_secs,
        trace: Some(p.trace),
        max_delete: p.max_delete,
        stages: p.stages.clone(),
        flip: Some(p.flip),
        targets: Some(p.targets.clone()),
        watch: Some(p.watch),
        depends_on: Some(p.depends_on.clone()),
        probe: p.probe.clone(),
        freshness: Some(p.freshness),
        hooks: Some(p.hooks.clone()),
        kind: Some(p.kind),
        upstream_url: p.upstream_url.clone(),
        provider: p.provider.clone(),
        params: Some(p.params.clone()),
        ssh_key: p.ssh_key.clone(),
        trace_epoch_file: p.trace_epoch_file.clone(),
        node: p.node.clone(),
        comment: None,
        version: None,
    })
}
