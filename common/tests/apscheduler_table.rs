//! Our schedules and dates against the 2014 service's: `data/apscheduler_cases.json` holds
//! thousands of cases drawn from a fixed seed, each with what APScheduler 3.10.4 + dateutil 2.9 +
//! pytz 2025.2 did (see `data/gen_apscheduler_cases.py`): the refusal, or the next ten fire times.
//! Every case must agree, except the deliberate differences listed in `DELIBERATE`. The same for
//! `IntervalTrigger` (`data/apscheduler_interval_cases.json`), and `jitter`'s bound
//! (`data/apscheduler_jitter_cases.json`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use mirror_common::cron::{CronOptions, Schedule};
use mirror_common::interval::{Interval, IntervalOptions};
use mirror_common::timing::Timing;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    fields: serde_json::Map<String, serde_json::Value>,
    timezone: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    now: String,
    #[serde(default)]
    fires: Vec<String>,
    error: Option<String>,
    #[serde(default)]
    truncated: bool,
    /// The instants APScheduler made of `start_date` and `end_date`.
    parsed_start: Option<String>,
    parsed_end: Option<String>,
}

const FIRES: usize = 10;

fn options(case: &Case) -> CronOptions {
    let mut all = case.fields.clone();
    for (key, value) in [("timezone", &case.timezone), ("start_date", &case.start_date), ("end_date", &case.end_date)] {
        if let Some(v) = value {
            all.insert(key.into(), serde_json::Value::String(v.clone()));
        }
    }
    serde_json::from_value(serde_json::Value::Object(all)).unwrap()
}

/// What we make of a case: `Err` with our refusal, or the fire times (one more than recorded, to
/// see that we stop where APScheduler stops).
fn ours(case: &Case) -> Result<Vec<String>, String> {
    let schedule = Schedule::from_options(&options(case)).map_err(|e| e.to_string())?;
    let (start, end) = schedule.bounds();
    let text = |t: Option<DateTime<Utc>>| t.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
    if text(start) != case.parsed_start || text(end) != case.parsed_end {
        return Err(format!("read the dates as {:?} and {:?}", text(start), text(end)));
    }
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339(&case.now).unwrap().with_timezone(&Utc);
    let mut got = Vec::new();
    let mut at = now;
    while got.len() <= FIRES {
        let Some(t) = schedule.next_fire_at_or_after(at) else { break };
        got.push(t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        at = t + Duration::seconds(1);
    }
    Ok(got)
}

fn agrees(case: &Case, ours: &Result<Vec<String>, String>) -> bool {
    match (&case.error, ours) {
        (Some(_), Err(_)) => true,
        (Some(_), Ok(_)) | (None, Err(_)) => false,
        (None, Ok(got)) => {
            let ended = !case.truncated && case.fires.len() < FIRES;
            let n = if ended { got.len() } else { case.fires.len().min(got.len()) };
            got[..n] == case.fires[..]
        }
    }
}

#[test]
fn schedules_and_dates_match_the_2014_service() {
    let cases: Vec<Case> = serde_json::from_str(include_str!("data/apscheduler_cases.json")).unwrap();
    assert!(cases.len() >= 2000, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let got = ours(case);
        if !agrees(case, &got) {
            failures.push(format!(
                "{:?} tz={:?} start={:?} end={:?} now={}\n  2014: {}\n  ours: {:?}",
                case.fields,
                case.timezone,
                case.start_date,
                case.end_date,
                case.now,
                case.error.clone().unwrap_or_else(|| format!("{:?}", case.fires)),
                got
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// A case of `data/apscheduler_interval_cases.json` (APScheduler's `IntervalTrigger`).
#[derive(Deserialize)]
struct IntervalCase {
    fields: serde_json::Map<String, serde_json::Value>,
    timezone: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    now: String,
    #[serde(default)]
    fires: Vec<String>,
    error: Option<String>,
    parsed_start: Option<String>,
    parsed_end: Option<String>,
}

fn with_dates(
    fields: &serde_json::Map<String, serde_json::Value>,
    dates: [(&str, &Option<String>); 3],
) -> serde_json::Value {
    let mut all = fields.clone();
    for (key, value) in dates {
        if let Some(v) = value {
            all.insert(key.into(), serde_json::Value::String(v.clone()));
        }
    }
    serde_json::Value::Object(all)
}

fn instant(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn micros(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn ours_interval(case: &IntervalCase) -> Result<Vec<String>, String> {
    let dates = [("timezone", &case.timezone), ("start_date", &case.start_date), ("end_date", &case.end_date)];
    let opts: IntervalOptions = serde_json::from_value(with_dates(&case.fields, dates)).unwrap();
    let now = instant(&case.now);
    let interval = Interval::from_options(&opts, now).map_err(|e| e.to_string())?;
    let (start, end) = interval.bounds();
    if Some(micros(start)) != case.parsed_start || end.map(micros) != case.parsed_end {
        return Err(format!("read the dates as {start} and {end:?}"));
    }
    let mut got = Vec::new();
    let mut at = now;
    while got.len() < FIRES {
        let Some(t) = interval.next_fire_at_or_after(at) else { break };
        got.push(micros(t));
        at = t + Duration::microseconds(1);
    }
    Ok(got)
}

#[test]
fn interval_schedules_match_apscheduler() {
    let cases: Vec<IntervalCase> = serde_json::from_str(include_str!("data/apscheduler_interval_cases.json")).unwrap();
    assert!(cases.len() >= 1500, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let got = ours_interval(case);
        let agrees = match (&case.error, &got) {
            (Some(_), Err(_)) => true,
            (None, Ok(fires)) => *fires == case.fires,
            _ => false,
        };
        if !agrees {
            failures.push(format!(
                "{:?} tz={:?} start={:?} end={:?} now={}\n  APScheduler: {}\n  ours: {:?}",
                case.fields,
                case.timezone,
                case.start_date,
                case.end_date,
                case.now,
                case.error.clone().unwrap_or_else(|| format!("{:?}", case.fires)),
                got
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// A case of `data/apscheduler_jitter_cases.json`: a schedule, its fires without jitter, and a
/// jitter below its shortest gap.
#[derive(Deserialize)]
struct JitterCase {
    kind: String,
    fields: serde_json::Map<String, serde_json::Value>,
    timezone: Option<String>,
    start_date: Option<String>,
    now: String,
    fires: Vec<String>,
    jitter: u64,
}

#[test]
fn jitter_delays_every_fire_within_its_bound() {
    let cases: Vec<JitterCase> = serde_json::from_str(include_str!("data/apscheduler_jitter_cases.json")).unwrap();
    assert!(cases.len() >= 600, "{} cases", cases.len());
    let mut delayed = 0;
    for (n, case) in cases.iter().enumerate() {
        let mut opts =
            with_dates(&case.fields, [("timezone", &case.timezone), ("start_date", &case.start_date), ("x", &None)]);
        opts["jitter"] = serde_json::json!(case.jitter);
        let now = instant(&case.now);
        let timing = if case.kind == "cron" {
            let spec =
                Schedule::from_options(&serde_json::from_value::<CronOptions>(opts).unwrap()).unwrap().spec().clone();
            Timing::new(&format!("p{n}"), Some(&spec), None)
        } else {
            let spec = Interval::from_options(&serde_json::from_value(opts).unwrap(), now).unwrap().spec().clone();
            Timing::new(&format!("p{n}"), None, Some(&spec))
        };
        let timing = timing.unwrap().unwrap();
        let mut at = now;
        // A fire due before `now` but delayed past it comes first here (APScheduler, asked at
        // `now`, starts from the next undelayed fire); the rest must follow APScheduler's.
        let first = timing.next_fire_at_or_after(at).unwrap();
        if first < instant(&case.fires[0]) {
            at = first + Duration::seconds(1);
        }
        for base in &case.fires {
            let base = instant(base);
            let fire = timing.next_fire_at_or_after(at).unwrap();
            let bound = base + Duration::seconds(case.jitter as i64);
            assert!(fire >= base && fire <= bound, "case {n}: {fire} outside [{base}, {bound}]");
            delayed += usize::from(fire > base);
            at = fire + Duration::seconds(1);
        }
    }
    // Delays are spread, not all zero.
    assert!(delayed > cases.len() * 8, "{delayed} fires delayed");
}
