//! Schedules with the semantics of APScheduler 3's `IntervalTrigger` (`interval_options`): a fire
//! every `weeks`/`days`/`hours`/`minutes`/`seconds` from `start_date`, up to `end_date`.
//!
//! APScheduler adds the interval to an aware instant: a fire is `start_date + n * interval` in
//! elapsed time, whatever the zone's clock does in between (a daily interval fires at 03:00 before
//! a change to summer time and at 04:00 after it). The zone only reads a `start_date` or `end_date`
//! given without an offset. Without `start_date` APScheduler starts one interval after the
//! trigger is made; here that instant (rounded up to a whole second) is written into the stored
//! form when the schedule is set, so that it survives restarts, exports and other nodes.

use chrono::{DateTime, Duration, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::FieldError;
use crate::dates::parse_fuzzy_datetime;
use crate::zoned::parse_timezone_of;

/// The longest delay a fire may be given (`jitter`, of either kind of schedule): a day.
pub const MAX_JITTER_SECS: u64 = 86_400;

/// A jitter as given (`<prefix>.jitter`): at most a day; `0` is none.
pub fn check_jitter(prefix: &str, jitter: Option<u64>) -> Result<Option<u64>, FieldError> {
    match jitter {
        Some(j) if j > MAX_JITTER_SECS => Err(FieldError::new(
            format!("{prefix}.jitter"),
            format!("must be at most {MAX_JITTER_SECS} seconds (a day)"),
        )),
        Some(0) | None => Ok(None),
        Some(j) => Ok(Some(j)),
    }
}

/// The longest interval: 100 years.
pub const MAX_INTERVAL_SECS: u64 = 100 * 366 * 86_400;

/// `interval_options` as a client sends it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalOptions {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weeks: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub days: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hours: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minutes: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seconds: u64,
    /// The first fire (dateutil's formats, as `cron_options` reads them); default: one interval
    /// after the schedule is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    /// No fire after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    /// The zone of a `start_date` or `end_date` written without an offset; default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Each fire is delayed by up to this many seconds (at most a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<u64>,
    /// Set (never stored) when `start_date` was filled in from the time of the write: a write of
    /// the same interval keeps the start it had, so a file or document declared again does not
    /// move the fires (see [`IntervalOptions::keep_start_of`]).
    #[serde(skip)]
    pub start_from_now: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The stored form: the interval as given, and `start_date` always set (RFC 3339, UTC).
pub type IntervalSpec = IntervalOptions;

impl IntervalOptions {
    /// A new schedule whose start was filled in from now keeps `old`'s start when nothing else
    /// of it differs.
    pub fn keep_start_of(&mut self, old: &IntervalSpec) {
        if self.start_from_now {
            self.start_from_now = false;
            let same = IntervalSpec { start_date: self.start_date.clone(), start_from_now: false, ..old.clone() };
            if same == *self {
                self.start_date = old.start_date.clone();
            }
        }
    }

    /// The interval in seconds; APScheduler makes an interval of nothing one second.
    pub fn every_secs(&self) -> u64 {
        let total = self.weeks.saturating_mul(7 * 86_400).saturating_add(self.days.saturating_mul(86_400));
        let total =
            total.saturating_add(self.hours.saturating_mul(3600)).saturating_add(self.minutes.saturating_mul(60));
        total.saturating_add(self.seconds).max(1)
    }
}

/// A compiled interval schedule.
#[derive(Debug, Clone)]
pub struct Interval {
    spec: IntervalSpec,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    every: Duration,
}

fn field(name: &str) -> String {
    format!("interval_options.{name}")
}

impl Interval {
    /// Validates client options into the stored form; `now` anchors a schedule without
    /// `start_date` (its first fire is one interval later).
    pub fn from_options(opts: &IntervalOptions, now: DateTime<Utc>) -> Result<Interval, FieldError> {
        let units = [("weeks", opts.weeks, 7 * 86_400), ("days", opts.days, 86_400), ("hours", opts.hours, 3600)];
        for (name, n, secs) in units.into_iter().chain([("minutes", opts.minutes, 60), ("seconds", opts.seconds, 1)]) {
            if n.saturating_mul(secs) > MAX_INTERVAL_SECS {
                return Err(FieldError::new(field(name), "the interval may be at most 100 years"));
            }
        }
        let every = opts.every_secs();
        if every > MAX_INTERVAL_SECS {
            return Err(FieldError::new("interval_options", "the interval may be at most 100 years"));
        }
        let tz = parse_timezone_of("interval_options", opts.timezone.as_deref())?;
        let date = |name: &str, v: &Option<String>| -> Result<Option<String>, FieldError> {
            v.as_deref()
                .map(|s| {
                    parse_fuzzy_datetime(s, tz)
                        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                        .map_err(|m| FieldError::new(field(name), m))
                })
                .transpose()
        };
        let first = || {
            let whole =
                if now.nanosecond() == 0 { now } else { now.with_nanosecond(0).unwrap_or(now) + Duration::seconds(1) };
            (whole + Duration::seconds(every as i64)).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        };
        let spec = IntervalSpec {
            start_date: Some(date("start_date", &opts.start_date)?.unwrap_or_else(first)),
            end_date: date("end_date", &opts.end_date)?,
            timezone: opts.timezone.as_ref().map(|_| tz.name().to_owned()),
            jitter: check_jitter("interval_options", opts.jitter)?,
            start_from_now: opts.start_date.is_none(),
            ..opts.clone()
        };
        Interval::from_spec(spec)
    }

    /// Compiles a stored schedule.
    pub fn from_spec(spec: IntervalSpec) -> Result<Interval, FieldError> {
        let instant = |name: &str, v: Option<&str>| -> Result<Option<DateTime<Utc>>, FieldError> {
            v.map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|e| FieldError::new(field(name), e.to_string()))
            })
            .transpose()
        };
        let start = instant("start_date", spec.start_date.as_deref())?
            .ok_or_else(|| FieldError::new(field("start_date"), "missing in the stored schedule"))?;
        let end = instant("end_date", spec.end_date.as_deref())?;
        let every = Duration::seconds(spec.every_secs().min(MAX_INTERVAL_SECS) as i64);
        Ok(Interval { spec, start, end, every })
    }

    pub fn spec(&self) -> &IntervalSpec {
        &self.spec
    }

    /// The first and last instants the schedule may fire at.
    pub fn bounds(&self) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
        (self.start, self.end)
    }

    /// The first fire at or after `after` (`start_date + n * interval`), or `None` past
    /// `end_date`. APScheduler's `get_next_fire_time(None, after)`; the fire after one at `t` is
    /// this at `t + 1s` (an interval is at least a second).
    pub fn next_fire_at_or_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = if self.start >= after {
            self.start
        } else {
            let gone = (after - self.start).num_microseconds()?;
            let every = self.every.num_microseconds()?;
            let n = gone.div_euclid(every) + i64::from(gone.rem_euclid(every) != 0);
            self.start.checked_add_signed(self.every.checked_mul(i32::try_from(n).ok()?)?)?
        };
        match self.end {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn interval(json: serde_json::Value, now: &str) -> Interval {
        Interval::from_options(&serde_json::from_value(json).unwrap(), utc(now)).unwrap()
    }

    #[test]
    fn fires_every_interval_from_the_start_and_stops_at_the_end() {
        let i = interval(
            serde_json::json!({"hours": 6, "start_date": "2026-03-01 01:30", "end_date": "2026-03-02 12:00"}),
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(i.next_fire_at_or_after(utc("2026-02-01T00:00:00Z")), Some(utc("2026-03-01T01:30:00Z")));
        assert_eq!(i.next_fire_at_or_after(utc("2026-03-01T01:30:00Z")), Some(utc("2026-03-01T01:30:00Z")));
        assert_eq!(i.next_fire_at_or_after(utc("2026-03-01T01:30:01Z")), Some(utc("2026-03-01T07:30:00Z")));
        assert_eq!(i.next_fire_at_or_after(utc("2026-03-02T07:30:01Z")), None);
    }

    #[test]
    fn without_a_start_the_first_fire_is_one_interval_after_it_was_set() {
        let i = interval(serde_json::json!({"minutes": 90}), "2026-05-05T10:00:00.250Z");
        assert_eq!(i.spec().start_date.as_deref(), Some("2026-05-05T11:30:01Z"));
        let nothing = interval(serde_json::json!({}), "2026-05-05T10:00:00Z");
        assert_eq!(nothing.every, Duration::seconds(1));
        // Declared again later: the start it had stays; another interval starts anew.
        let mut again = interval(serde_json::json!({"minutes": 90}), "2026-05-06T00:00:00Z").spec().clone();
        again.keep_start_of(i.spec());
        assert_eq!(again.start_date.as_deref(), Some("2026-05-05T11:30:01Z"));
        let mut other = interval(serde_json::json!({"minutes": 60}), "2026-05-06T00:00:00Z").spec().clone();
        other.keep_start_of(i.spec());
        assert_eq!(other.start_date.as_deref(), Some("2026-05-06T01:00:00Z"));
    }

    #[test]
    fn errors_name_the_field() {
        let err = |json: serde_json::Value| {
            Interval::from_options(&serde_json::from_value(json).unwrap(), Utc::now()).unwrap_err().field
        };
        assert_eq!(err(serde_json::json!({"hours": 1, "timezone": "Mars/Base"})), "interval_options.timezone");
        assert_eq!(err(serde_json::json!({"hours": 1, "start_date": "not a date"})), "interval_options.start_date");
        assert_eq!(err(serde_json::json!({"weeks": 100_000})), "interval_options.weeks");
        assert_eq!(err(serde_json::json!({"hours": 1, "jitter": 100_000})), "interval_options.jitter");
        assert!(serde_json::from_value::<IntervalOptions>(serde_json::json!({"hourz": 1})).is_err());
    }
}
