//! Pictures drawn on the server as inline SVG: readable without JavaScript, no style attribute (the
//! Content-Security-Policy allows none): colours come from classes in the console's stylesheet.
//! Each chart is a few paths whatever the number of runs, so a page of them stays small.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use mirror_common::api::RunStatus;

use super::html::esc;
use crate::db::flips::FlipAt;
use crate::db::runs::{RunPoint, RunRow};
use mirror_common::time::Timestamp;

fn is_failure(status: RunStatus) -> bool {
    matches!(status, RunStatus::Failed | RunStatus::Timeout | RunStatus::Interrupted)
}

/// A run's duration in seconds, once it has ended.
pub fn duration(r: &RunRow) -> Option<f64> {
    seconds_between(r.started_at, r.ended_at)
}

fn seconds_between(start: Option<Timestamp>, end: Option<Timestamp>) -> Option<f64> {
    let (start, end) = (start?, end?);
    let ms = (end.to_datetime() - start.to_datetime()).num_milliseconds();
    Some(ms.max(0) as f64 / 1000.0)
}

/// A sparkline of run durations (oldest left), with a mark at each failure: `runs` oldest first.
pub fn sparkline(runs: &[RunPoint]) -> String {
    const W: f64 = 120.0;
    const H: f64 = 20.0;
    if runs.is_empty() {
        return "<small>no runs</small>".into();
    }
    let values: Vec<f64> = runs.iter().map(|r| seconds_between(r.started_at, r.ended_at).unwrap_or(0.0)).collect();
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(0.001);
    let step = if runs.len() > 1 { W / (runs.len() - 1) as f64 } else { 0.0 };
    let mut line = String::new();
    let mut marks = String::new();
    for (i, (r, v)) in runs.iter().zip(&values).enumerate() {
        let x = i as f64 * step;
        let y = H - 1.0 - v / max * (H - 2.0);
        let _ = write!(line, "{}{x:.0} {y:.0}", if i == 0 { "M" } else { "L" });
        if is_failure(r.status) {
            let _ = write!(marks, "M{x:.0} 0V{H:.0}");
        }
    }
    let bad = runs.iter().filter(|r| is_failure(r.status)).count();
    let label = format!("last {} runs: {} failed", runs.len(), bad);
    format!(
        "<svg class=\"spark\" width=\"120\" height=\"20\" viewBox=\"-2 0 124 20\" role=\"img\" aria-label=\"{label}\">\
         <title>{label}</title><path class=\"bad\" d=\"{marks}\"/><path class=\"line\" d=\"{line}\"/></svg>"
    )
}

/// A bar per run (oldest left; failures in the failure colour) of `value` of each run.
pub fn bars(
    title: &str,
    runs: &[RunRow],
    value: impl Fn(&RunRow) -> Option<f64>,
    unit: impl Fn(f64) -> String,
) -> String {
    const W: f64 = 400.0;
    const H: f64 = 60.0;
    let values: Vec<Option<f64>> = runs.iter().map(&value).collect();
    let max = values.iter().flatten().copied().fold(0.0_f64, f64::max);
    let step = W / runs.len().max(1) as f64;
    let (mut ok, mut bad, mut none) = (String::new(), String::new(), String::new());
    for (i, (r, v)) in runs.iter().zip(&values).enumerate() {
        let x = i as f64 * step + step / 2.0;
        let target = if is_failure(r.status) { &mut bad } else { &mut ok };
        match v {
            Some(v) if max > 0.0 => {
                let h = (v / max * (H - 4.0)).max(1.0);
                let _ = write!(target, "M{x:.1} {H}v-{h:.1}");
            }
            // Failed without the figure: a full-height mark says so.
            _ if is_failure(r.status) => {
                let _ = write!(bad, "M{x:.1} {H}V0");
            }
            _ => {
                let _ = write!(none, "M{x:.1} {H}v-1");
            }
        }
    }
    let width = step.clamp(1.0, 8.0) * 0.7;
    let failures = runs.iter().filter(|r| is_failure(r.status)).count();
    let label = format!("{title} of the last {} runs (largest {}; {failures} failed)", runs.len(), unit(max));
    format!(
        "<figure class=\"chart\"><svg width=\"400\" height=\"60\" viewBox=\"0 0 400 60\" role=\"img\" \
         aria-label=\"{0}\"><title>{0}</title><path class=\"bar\" stroke-width=\"{width:.1}\" d=\"{ok}\"/>\
         <path class=\"bar bad\" stroke-width=\"{width:.1}\" d=\"{bad}\"/><path class=\"bar none\" d=\"{none}\"/></svg>\
         <figcaption>{1} <small>(largest {2}; {failures} failed)</small></figcaption></figure>",
        esc(&label),
        esc(title),
        esc(&unit(max))
    )
}

/// Seconds as `1h 02m`, `3m 05s`, `12.3s`.
pub fn seconds(s: f64) -> String {
    let whole = s as u64;
    match whole {
        0..=59 => format!("{s:.1}s"),
        60..=3599 => format!("{}m {:02}s", whole / 60, whole % 60),
        _ => format!("{}h {:02}m", whole / 3600, whole % 3600 / 60),
    }
}

/// The lanes of a timeline: each run goes to the first lane free at its start.
const LANES: usize = 12;

/// The last day of runs (bars in lanes, coloured by outcome) and slave flips (ticks on the lowest
/// line), `from` to `to`.
pub fn timeline(runs: &[RunRow], flips: &[FlipAt], from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    const W: f64 = 960.0;
    const LANE: f64 = 12.0;
    let span = (to - from).num_seconds().max(1) as f64;
    let x_of = |t: DateTime<Utc>| ((t - from).num_seconds() as f64 / span * W).clamp(0.0, W);
    let mut lane_end = [f64::MIN; LANES];
    let mut paths: [String; 3] = Default::default();
    let mut order: Vec<&RunRow> = runs.iter().filter(|r| r.started_at.is_some()).collect();
    order.sort_by_key(|r| r.started_at.map(|t| t.to_datetime()));
    let mut dropped = 0;
    for r in order {
        let start = x_of(r.started_at.map_or(to, |t| t.to_datetime()));
        let end = x_of(r.ended_at.map_or(to, |t| t.to_datetime())).max(start + 1.0);
        let Some(lane) = lane_end.iter().position(|e| *e <= start) else {
            dropped += 1;
            continue;
        };
        lane_end[lane] = end + 1.0;
        let class = match r.status {
            RunStatus::Success => 0,
            RunStatus::Queued | RunStatus::Running => 2,
            _ if is_failure(r.status) => 1,
            _ => 2,
        };
        let y = lane as f64 * LANE + LANE / 2.0;
        let _ = write!(paths[class], "M{start:.1} {y:.0}H{end:.1}");
    }
    let flip_y = LANES as f64 * LANE + 4.0;
    let mut ticks = String::new();
    for f in flips {
        let x = x_of(f.flipped_at.to_datetime());
        let _ = write!(ticks, "M{x:.1} {flip_y:.0}v10");
    }
    let height = flip_y + 24.0;
    let mut hours = String::new();
    for h in 0..=24 {
        let x = W * f64::from(h) / 24.0;
        let _ = write!(hours, "M{x:.1} 0V{:.0}", flip_y + 14.0);
    }
    let label = format!(
        "{} runs and {} flips from {} to {}{}",
        runs.len(),
        flips.len(),
        from.format("%Y-%m-%d %H:%M UTC"),
        to.format("%Y-%m-%d %H:%M UTC"),
        if dropped > 0 { format!(" ({dropped} runs not drawn: more than {LANES} at once)") } else { String::new() }
    );
    format!(
        "<figure class=\"chart wide\"><svg width=\"100%\" height=\"{height:.0}\" viewBox=\"0 0 {W} {height:.0}\" \
         preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{label}\"><title>{label}</title>\
         <path class=\"grid\" d=\"{hours}\"/><path class=\"run ok\" stroke-width=\"8\" d=\"{}\"/>\
         <path class=\"run bad\" stroke-width=\"8\" d=\"{}\"/><path class=\"run going\" stroke-width=\"8\" d=\"{}\"/>\
         <path class=\"flip\" d=\"{ticks}\"/><text x=\"0\" y=\"{:.0}\">{}</text>\
         <text x=\"{W}\" y=\"{:.0}\" text-anchor=\"end\">now</text></svg><figcaption>{label}. Green: success, red: \
         failed, blue: going; the ticks below are slave flips.</figcaption></figure>",
        paths[0],
        paths[1],
        paths[2],
        height - 2.0,
        from.format("%H:%M"),
        height - 2.0,
    )
}
