//! Reading rsync's output: its `--stats` figures, its `--itemize-changes` lines, its progress line.

use mirror_common::api::{RunProgress, RunStats};

/// Whether `line` is one of rsync's `--itemize-changes` lines (`>f+++++++++ path`,
/// `.f...p..... path`, `cL+++++++++ link -> target`, `*deleting   path`).
pub fn is_itemized(line: &str) -> bool {
    if line.starts_with("*deleting ") {
        return true;
    }
    let b = line.as_bytes();
    b.len() > 12
        && b"<>ch.".contains(&b[0])
        && b"fdLDS".contains(&b[1])
        && b[2..11].iter().all(|c| b".+ ?cstTpoguaxnbN".contains(c))
        && b[11] == b' '
}

/// Reads one output line into `stats`; lines that are not stats are ignored.
pub fn absorb(stats: &mut RunStats, line: &str) {
    if is_itemized(line) {
        stats.changes = Some(stats.changes.unwrap_or(0) + 1);
        return;
    }
    let Some((key, value)) = line.split_once(':') else { return };
    if key.trim() == "Number of files" {
        // `1,234 (reg: 1,000, dir: 234)`; no `reg:` part: no regular file.
        let reg = value.split("reg: ").nth(1).and_then(|r| r.split(", ").next());
        stats.regular_files = Some(reg.and_then(|r| parse_count(r.trim_end_matches(')'))).unwrap_or(0));
    }
    let slot = match key.trim() {
        "Number of files" => &mut stats.files_total,
        "Number of regular files transferred" => &mut stats.files_transferred,
        "Total file size" => &mut stats.total_size,
        "Total transferred file size" => &mut stats.bytes_transferred,
        "Total bytes received" => &mut stats.bytes_received,
        "Number of created files" => &mut stats.files_created,
        "Number of deleted files" => &mut stats.files_deleted,
        _ => return,
    };
    if let Some(n) = parse_count(value) {
        *slot = Some(n);
    }
}

/// Reads one line of `git fetch --verbose --progress` (or `git clone --progress`): a reference
/// it created, moved, forced or pruned (` * [new branch]  x -> x`, `   1a2b..3c4d  main -> main`,
/// ` + 1a2b...3c4d  f -> f  (forced update)`, ` - [deleted]  (none) -> old`, ` t [tag update] ...`)
/// counts in `refs_updated`; `Receiving objects: 100% (9/9), 1.20 KiB | ..., done.` gives
/// `bytes_received`.
pub fn absorb_git(stats: &mut RunStats, line: &str) {
    let b = line.as_bytes();
    if b.len() > 4 && b[0] == b' ' && b" +-t*".contains(&b[1]) && b[2] == b' ' && line.contains(" -> ") {
        stats.refs_updated = Some(stats.refs_updated.unwrap_or(0) + 1);
        return;
    }
    let Some(rest) = line.strip_prefix("Receiving objects: 100% ") else { return };
    // `(9/9), 1.20 KiB | 1.20 MiB/s, done.`
    let Some(size) = rest.split("), ").nth(1).and_then(|r| r.split(" | ").next()) else { return };
    let mut words = size.split_whitespace();
    let (Some(number), Some(unit)) = (words.next().and_then(|n| n.parse::<f64>().ok()), words.next()) else {
        return;
    };
    let scale = match unit.trim_end_matches(',') {
        "bytes" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return,
    };
    stats.bytes_received = Some((number * scale).round() as u64);
}

/// Whether a line of git's is one of its progress counters short of its last state (`Receiving
/// objects:  45% (4/9)`): a state, not an event, kept out of the log.
pub fn is_git_progress(line: &str) -> bool {
    let counter = ["Counting objects:", "Compressing objects:", "Receiving objects:", "Resolving deltas:"];
    let line = line.strip_prefix("remote: ").unwrap_or(line);
    counter.iter().any(|c| line.starts_with(c)) && !line.trim_end().ends_with("done.")
}

/// `1,234,567`, `1.234.567`, `1234 bytes` or, with `-h`, `1.23M`.
fn parse_count(text: &str) -> Option<u64> {
    let word = text.split_whitespace().next()?;
    let (number, scale) = match word.char_indices().last()? {
        (i, 'K') => (&word[..i], 1e3),
        (i, 'M') => (&word[..i], 1e6),
        (i, 'G') => (&word[..i], 1e9),
        (i, 'T') => (&word[..i], 1e12),
        _ => (word, 1.0),
    };
    if scale > 1.0 {
        return number.replace(',', "").parse::<f64>().ok().map(|v| (v * scale).round() as u64);
    }
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Reads rsync's progress line (`  1,200,000  13%  3.44MB/s  0:00:00 (xfr#4, to-chk=26/31)`);
/// `None` for any other line.
pub fn progress(line: &str) -> Option<RunProgress> {
    let mut words = line.split_whitespace();
    let bytes = words.next()?;
    if !bytes.bytes().all(|b| b.is_ascii_digit() || b == b',') {
        return None;
    }
    let bytes = bytes.replace(',', "").parse().ok()?;
    let percent = words.next()?.strip_suffix('%')?.parse::<u8>().ok()?.min(100);
    let rate = words.next().filter(|r| r.ends_with("/s"))?.to_owned();
    let elapsed = words.next()?;
    if elapsed.split(':').count() != 3 {
        return None;
    }
    let mut progress = RunProgress { bytes, percent, rate, ..RunProgress::default() };
    let rest: String = words.collect::<Vec<_>>().join(" ");
    if let Some(inner) = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        for part in inner.split(", ") {
            if let Some(n) = part.strip_prefix("xfr#") {
                progress.files_transferred = n.parse().ok()?;
            } else if let Some(chk) = part.strip_prefix("to-chk=").or_else(|| part.strip_prefix("ir-chk=")) {
                let (left, known) = chk.split_once('/')?;
                progress.files_to_check = left.parse().ok();
                progress.files_known = known.parse().ok();
            }
        }
    }
    Some(progress)
}

#[cfg(test)]
mod tests {
    use super::absorb;
    use mirror_common::api::RunStats;

    #[test]
    fn stats_are_parsed() {
        let out = "Number of files: 1,235 (reg: 1,000, dir: 235)\nNumber of created files: 10\n\
                   Number of regular files transferred: 10\nTotal file size: 123,456,789 bytes\n\
                   Total transferred file size: 1,234 bytes\nTotal bytes received: 2.50K\n";
        let mut s = RunStats::default();
        out.lines().for_each(|l| absorb(&mut s, l));
        assert_eq!(
            s,
            RunStats {
                files_total: Some(1235),
                regular_files: Some(1000),
                files_transferred: Some(10),
                total_size: Some(123_456_789),
                bytes_transferred: Some(1234),
                bytes_received: Some(2500),
                files_created: Some(10),
                files_deleted: None,
                refs_updated: None,
                changes: None,
            }
        );
        // Itemized changes are counted, whatever the kind; other lines are not.
        let mut c = RunStats::default();
        for l in [
            ">f+++++++++ pool/a.deb",
            ".f...p..... mode-only",
            "cL+++++++++ link -> target",
            "*deleting   gone.txt",
            ".d..t...... dists/",
            "hf+++++++++ b => a",
            "sending incremental file list",
            "Number of files: 3",
        ] {
            absorb(&mut c, l);
        }
        assert_eq!(c.changes, Some(6));
        // An empty tree: its one directory, no regular file.
        let mut empty = RunStats::default();
        absorb(&mut empty, "Number of files: 1 (dir: 1)");
        assert_eq!((empty.files_total, empty.regular_files), (Some(1), Some(0)));
    }
}

#[cfg(test)]
mod git_tests {
    use super::*;

    #[test]
    fn a_fetch_tells_its_references_and_bytes() {
        let mut stats = RunStats::default();
        for line in [
            "From git://127.0.0.1:9418/repo",
            " = [up to date]      stable     -> stable",
            "   1a2b3c4..5d6e7f8  main       -> main",
            " + 1a2b3c4...9f8e7d6 feature    -> feature  (forced update)",
            " - [deleted]         (none)     -> old",
            " * [new tag]         v1.0       -> v1.0",
            "Receiving objects: 100% (9/9), 1.50 KiB | 1.20 MiB/s, done.",
        ] {
            absorb_git(&mut stats, line);
        }
        assert_eq!((stats.refs_updated, stats.bytes_received), (Some(4), Some(1536)));
        assert!(is_git_progress("Receiving objects:  45% (4/9)"));
        assert!(is_git_progress("remote: Counting objects: 10% (1/10)"));
        assert!(!is_git_progress("Receiving objects: 100% (9/9), done."));
    }
}
