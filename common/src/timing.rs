//! When a project runs by itself: its `cron_options` or its `interval_options`, each fire delayed
//! by APScheduler's `jitter`. This is the one place a project's schedule is compiled; the
//! scheduler, the listing's `next_run_time` and the project's upcoming fires all ask it.
//!
//! APScheduler adds `random.uniform(0, jitter)` seconds to each fire. Here the delay is as
//! uniform, in whole seconds from 0 to `jitter`, but drawn from the project's id and the fire's
//! own instant rather than from a random generator: every node of a cluster and every restart
//! sees the same fire times, and `next_run_time` shows the instant the run will really start.
//! Unlike APScheduler's interval trigger, which adds the interval to the delayed fire (so its fires
//! drift later each time), the delay never moves the fires after it.

use chrono::{DateTime, Duration, Utc};

use crate::FieldError;
use crate::cron::{Schedule, ScheduleSpec};
use crate::interval::{Interval, IntervalSpec, MAX_JITTER_SECS};
use crate::project::ProjectConfig;

/// How many earlier fires a search looks at for one whose delay brings it past the instant asked.
const MAX_SCAN: usize = 100_000;

#[derive(Debug, Clone)]
enum Kind {
    Cron(Box<Schedule>),
    Interval(Interval),
}

/// A compiled schedule of one project.
#[derive(Debug, Clone)]
pub struct Timing {
    kind: Kind,
    jitter: u64,
    seed: u64,
}

impl Timing {
    /// The project's schedule; `None` when it has none (manual runs only).
    pub fn of(config: &ProjectConfig) -> Result<Option<Timing>, FieldError> {
        Timing::new(config.id.as_str(), config.schedule.as_ref(), config.interval.as_ref())
    }

    /// The schedule of project `id` from its stored forms (at most one of them).
    pub fn new(
        id: &str,
        cron: Option<&ScheduleSpec>,
        interval: Option<&IntervalSpec>,
    ) -> Result<Option<Timing>, FieldError> {
        let (kind, jitter) = match (cron, interval) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new("interval_options", "give cron_options or interval_options, not both"));
            }
            (Some(c), None) => (Kind::Cron(Box::new(Schedule::from_spec(c.clone())?)), c.jitter),
            (None, Some(i)) => (Kind::Interval(Interval::from_spec(i.clone())?), i.jitter),
            (None, None) => return Ok(None),
        };
        Ok(Some(Timing { kind, jitter: jitter.unwrap_or(0).min(MAX_JITTER_SECS), seed: fnv1a(id.as_bytes()) }))
    }

    /// The undelayed fire at or after `after`.
    fn base_at_or_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Cron(s) => s.next_fire_at_or_after(after),
            Kind::Interval(i) => i.next_fire_at_or_after(after),
        }
    }

    /// The delay of the fire due at `base`: 0 to `jitter` seconds, the same wherever and
    /// whenever it is asked.
    pub fn delay(&self, base: DateTime<Utc>) -> Duration {
        if self.jitter == 0 {
            return Duration::zero();
        }
        let mixed = splitmix64(self.seed ^ (base.timestamp() as u64).rotate_left(17));
        Duration::seconds((mixed % (self.jitter + 1)) as i64)
    }

    /// The first (delayed) fire at or after `after`, in the order of the undelayed fires; `None`
    /// when the schedule never fires again. The fire after one at `t` is this at `t + 1s`.
    pub fn next_fire_at_or_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.jitter == 0 {
            return self.base_at_or_after(after);
        }
        // A fire due up to `jitter` seconds before `after` may be delayed past it.
        let mut at = after - Duration::seconds(self.jitter as i64);
        for _ in 0..MAX_SCAN {
            let base = self.base_at_or_after(at)?;
            let fire = base + self.delay(base);
            if fire >= after {
                return Some(fire);
            }
            at = base + Duration::seconds(1);
        }
        let base = self.base_at_or_after(after)?;
        Some(base + self.delay(base))
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cron::CronOptions;

    fn cron(json: serde_json::Value) -> ScheduleSpec {
        let opts: CronOptions = serde_json::from_value(json).unwrap();
        Schedule::from_options(&opts).unwrap().spec().clone()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn jitter_delays_each_fire_within_its_bound_and_spreads_projects() {
        let spec = cron(serde_json::json!({"minute": "0", "jitter": 300}));
        assert_eq!(spec.jitter, Some(300));
        let mut first_fires = Vec::new();
        for n in 0..200 {
            let t = Timing::new(&format!("p{n}"), Some(&spec), None).unwrap().unwrap();
            let mut at = utc("2026-06-01T00:00:00Z");
            for hour in 0..24 {
                let fire = t.next_fire_at_or_after(at).unwrap();
                let base = utc("2026-06-01T00:00:00Z") + Duration::hours(hour);
                assert!(fire >= base && fire <= base + Duration::seconds(300), "{n}: {fire} for {base}");
                // The same answer whenever it is asked.
                assert_eq!(t.next_fire_at_or_after(base - Duration::minutes(30)), Some(fire));
                at = fire + Duration::seconds(1);
            }
            first_fires.push(t.next_fire_at_or_after(utc("2026-06-01T00:00:00Z")).unwrap());
        }
        first_fires.sort();
        first_fires.dedup();
        // 200 projects on `minute: 0` start at well over a hundred different seconds.
        assert!(first_fires.len() > 120, "{}", first_fires.len());
    }

    #[test]
    fn no_jitter_is_the_schedule_itself_and_both_kinds_at_once_are_refused() {
        let spec = cron(serde_json::json!({"minute": "*/5"}));
        let t = Timing::new("p", Some(&spec), None).unwrap().unwrap();
        assert_eq!(t.next_fire_at_or_after(utc("2026-01-01T00:07:00Z")), Some(utc("2026-01-01T00:10:00Z")));
        let interval: IntervalSpec =
            serde_json::from_value(serde_json::json!({"hours": 1, "start_date": "2026-01-01T00:00:00Z"})).unwrap();
        assert_eq!(Timing::new("p", Some(&spec), Some(&interval)).unwrap_err().field, "interval_options");
        assert!(Timing::new("p", None, None).unwrap().is_none());
        let too_long = crate::interval::check_jitter("cron_options", Some(86_401));
        assert_eq!(too_long.unwrap_err().field, "cron_options.jitter");
    }
}
