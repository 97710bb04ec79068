//! Our schedules against APScheduler 3.10.4 itself: `data/apscheduler_cases.json` holds, for each
//! (fields, now), the fire times APScheduler computed (see `data/gen_apscheduler_cases.py`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use mirror_common::cron::{CronOptions, Schedule};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    fields: serde_json::Value,
    now: String,
    fires: Vec<String>,
}

#[test]
fn fire_times_match_apscheduler() {
    let cases: Vec<Case> = serde_json::from_str(include_str!("data/apscheduler_cases.json")).unwrap();
    assert!(cases.len() > 30);
    let mut failures = Vec::new();
    for case in &cases {
        let opts: CronOptions = serde_json::from_value(case.fields.clone()).unwrap();
        let schedule = Schedule::from_options(&opts).unwrap_or_else(|e| panic!("{}: {e}", case.fields));
        let now: DateTime<Utc> = DateTime::parse_from_rfc3339(&case.now).unwrap().with_timezone(&Utc);
        let mut got = Vec::new();
        let mut at = now;
        while got.len() < case.fires.len() + 1 {
            match schedule.next_fire_at_or_after(at) {
                Some(t) => {
                    got.push(t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
                    at = t + Duration::seconds(1);
                }
                None => break,
            }
        }
        // APScheduler's list stops at 6 fires or at the end of the schedule; ours must agree on both.
        let ended = case.fires.len() < 6;
        let ours = if ended { got.clone() } else { got[..got.len().min(case.fires.len())].to_vec() };
        if ours != case.fires {
            failures.push(format!(
                "{} from {}:\n  apscheduler {:?}\n  ours        {:?}",
                case.fields, case.now, case.fires, got
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
