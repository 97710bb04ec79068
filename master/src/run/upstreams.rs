//! A project with several upstreams (lug#67, and every site that mirrors from two tier-1
//! mirrors): a run uses the first that answers and is not staler than the others, and moves to
//! the next when one is down or refuses.
//!
//! Staleness is read from the project's probe (its own, or its stage profile's: Debian's
//! `project/trace/master`), fetched from each upstream before the run: an Arch `lastupdate` (a
//! Unix time), or an ftpsync trace (its `Date:` line, else its first line). An upstream whose probe
//! cannot be read is tried last; one whose probe is older than another's is tried after the
//! fresher ones. Without a probe, the order is the project's.

use chrono::Utc;
use mirror_runtime::rsync::{Ending, RsyncOutcome};

use super::Runner;
use super::plan::RunPlan;
use super::stages::probe_of;
use crate::db::projects::ProjectRow;
use crate::read::views::upstream;

/// When the tree a probe describes was made, as Unix seconds, if its text says.
pub fn freshness_of(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    if let Ok(epoch) = text.trim().parse::<i64>() {
        return Some(epoch);
    }
    if let Some(date) = text.lines().find_map(|l| l.strip_prefix("Date:")) {
        return chrono::DateTime::parse_from_rfc2822(date.trim()).ok().map(|d| d.timestamp());
    }
    let first = text.lines().next()?.trim();
    mirror_common::dates::parse_fuzzy_utc(first).ok().map(|d| d.timestamp())
}

/// Whether a failed attempt means this upstream cannot serve now (it is down, or its daemon
/// refused): the next one is tried.
pub fn moves_on(o: &RsyncOutcome) -> bool {
    o.ending == Ending::Failed && (o.daemon_refused || matches!(o.exit_code, Some(5 | 10 | 12 | 30 | 35)))
}

impl Runner {
    /// The plans of a run, one per upstream, in the order it tries them (one plan: the project
    /// has one upstream), and what the probe of the first was found to hold when it was fetched
    /// to choose (the run does not fetch it again). An upstream whose plan cannot be made is left
    /// out, with a warning.
    pub(super) async fn upstream_plans(&self, plan: RunPlan) -> (Vec<RunPlan>, Option<Result<Vec<u8>, String>>) {
        if plan.project.more_upstreams.is_empty() {
            return (vec![plan], None);
        }
        let (project, project_run) = (plan.project.clone(), plan.run_id);
        let mut plans = vec![plan];
        for (i, u) in project.more_upstreams.iter().enumerate() {
            let password = project.more_passwords.get(i).cloned().flatten();
            let row = ProjectRow { config: project.using(u), rsync_password: password, ..project.clone() };
            match self.plan(row, project_run).await {
                Ok(p) => plans.push(p),
                Err(why) => tracing::warn!(upstream = %upstream(&project), error = %why, "an upstream left out"),
            }
        }
        let Some(path) = probe_of(&project) else { return (plans, None) };
        let mut ranked = Vec::with_capacity(plans.len());
        for p in plans {
            let found = self.fetch_probe(&p, &path).await;
            if let Err(why) = &found {
                tracing::warn!(upstream = %upstream(&p.project), error = %why, "its probe cannot be read: tried last");
            }
            let freshness = found.as_ref().ok().and_then(|b| freshness_of(b));
            ranked.push((p, found, freshness));
        }
        let newest = ranked.iter().filter_map(|(_, _, f)| *f).max();
        // 0: answers, not staler than another; 1: answers, staler; 2: does not answer.
        let class = |found: &Result<Vec<u8>, String>, freshness: Option<i64>| match (found.is_ok(), freshness, newest) {
            (false, _, _) => 2,
            (true, Some(f), Some(n)) if f < n => 1,
            _ => 0,
        };
        for (p, found, freshness) in &ranked {
            if class(found, *freshness) == 1 {
                tracing::info!(upstream = %upstream(&p.project), probe = ?freshness, newest = ?newest, at = %Utc::now(), "serves an older tree: tried after the fresher ones");
            }
        }
        ranked.sort_by_key(|(_, found, freshness)| class(found, *freshness));
        let mut ranked = ranked.into_iter();
        let Some((first, found, _)) = ranked.next() else { return (Vec::new(), None) };
        (std::iter::once(first).chain(ranked.map(|(p, _, _)| p)).collect(), Some(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probes_time_comes_from_arch_and_ftpsync_files() {
        assert_eq!(freshness_of(b"1733300000\n"), Some(1_733_300_000));
        let trace =
            b"Tue Nov 24 08:00:01 UTC 2026\nDate: Tue, 24 Nov 2026 08:00:01 +0000\nArchive serial: 2026112402\n";
        assert_eq!(freshness_of(trace), Some(1_795_507_201));
        assert_eq!(freshness_of(b"Tue Nov 24 08:00:01 UTC 2026\n"), Some(1_795_507_201));
        assert_eq!(freshness_of(b"\xff\xfe"), None);
        assert_eq!(freshness_of(b"no time here\n"), None);
    }
}
