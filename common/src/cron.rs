//! Schedules with the semantics of APScheduler 3's `CronTrigger`, which the 2014 API exposed as `cron_options`.
//!
//! The next fire time is computed here, field by field, the way APScheduler does it, rather than by
//! translating to a cron string: ISO `week`, `start_date`, `end_date` and zoned times have no cron form,
//! and a cron library's DST handling differs from APScheduler's.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize};

use crate::dates::parse_fuzzy_datetime;
use crate::error::FieldError;
use crate::zoned::Zoned;

/// The time fields, most significant first, as APScheduler orders them.
pub const FIELD_NAMES: [&str; 8] = ["year", "month", "day", "week", "day_of_week", "hour", "minute", "second"];

const MIN_VALUES: [u32; 8] = [1970, 1, 1, 1, 0, 0, 0, 0];
const MAX_VALUES: [u32; 8] = [9999, 12, 31, 53, 6, 23, 59, 59];
/// What a field less significant than the last one given defaults to.
const DEFAULT_VALUES: [&str; 8] = ["*", "1", "1", "*", "*", "0", "0", "0"];

const YEAR: usize = 0;
const MONTH: usize = 1;
const DAY: usize = 2;
const WEEK: usize = 3;
const DAY_OF_WEEK: usize = 4;

const MONTH_NAMES: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const POSITION_NAMES: [&str; 6] = ["1st", "2nd", "3rd", "4th", "5th", "last"];

/// `cron_options` as a client sends it: every field optional, numbers or strings.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronOptions {
    #[serde(default, deserialize_with = "field_value", skip_serializing_if = "Option::is_none")]
    pub year: Option<String>,
    #[serde(default, deserialize_with = "field_value", skip_serializing_if = "Option::is_none")]
    pub month: Option<String>,
    #[serde(default, deserialize_with = "field_value", skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(default, deserialize_with = "field_value", skip_serializing_if = "Option::is_none")]
    pub week: Option<String>,
    #[serde(default, deserialize_with = "field_value", skip_serializing_if = "Option::is_none")]
    pub day_of_week: Option<String>,
    #[serde(default, deserialize_with = "field_value", skip_serializing_if = "Option::is_none")]
    pub hour: Option<String>,
    #[serde(default, deserialize_with = "field_value", skip_serializing_if = "Option::is_none")]
    pub minute: Option<String>,
    #[serde(default, deserialize_with = "field_value", skip_serializing_if = "Option::is_none")]
    pub second: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// APScheduler's `jitter`: each fire is delayed by up to this many seconds (at most a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<u64>,
}

/// A field value may be written `5` or `"5"`, as APScheduler accepts both.
fn field_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a non-negative integer")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            if v < 0 {
                return Err(E::custom("a negative number is not a valid value"));
            }
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

impl CronOptions {
    fn field(&self, i: usize) -> Option<&str> {
        [&self.year, &self.month, &self.day, &self.week, &self.day_of_week, &self.hour, &self.minute, &self.second][i]
            .as_deref()
    }

    /// True when no time field is given: such a project has no schedule (manual runs only).
    pub fn has_no_time_field(&self) -> bool {
        (0..FIELD_NAMES.len()).all(|i| self.field(i).is_none())
    }
}

/// The normalised schedule, as stored and listed: every time field filled in, as strings.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub year: String,
    pub month: String,
    pub day: String,
    pub week: String,
    pub day_of_week: String,
    pub hour: String,
    pub minute: String,
    pub second: String,
    /// RFC 3339, UTC, with the fraction of a second given (APScheduler keeps microseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    /// IANA zone name; absent means UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Each fire is delayed by up to this many seconds (drawn per project and fire: `timing.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<u64>,
}

impl ScheduleSpec {
    fn fields(&self) -> [&str; 8] {
        [&self.year, &self.month, &self.day, &self.week, &self.day_of_week, &self.hour, &self.minute, &self.second]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    /// `*` or `*/step`
    All { step: Option<u32> },
    /// `a`, `a-b`, `a/step`, `a-b/step`, and the names of months and weekdays
    Range { first: u32, last: Option<u32>, step: Option<u32> },
    /// `2nd fri`, `last sun` (day field only); `position` 0..=4 for 1st..5th, 5 for last
    WeekdayPosition { position: u32, weekday: u32 },
    /// `last` (day field only)
    LastDayOfMonth,
}

/// A compiled schedule that computes fire times.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: ScheduleSpec,
    fields: [Vec<Expr>; 8],
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    tz: Tz,
}

impl Schedule {
    /// Validates client options and fills in the fields APScheduler would default.
    /// `now` anchors fuzzy dates that omit parts. Errors name the field, as `cron_options.<field>`.
    pub fn from_options(opts: &CronOptions) -> Result<Schedule, FieldError> {
        if opts.has_no_time_field() {
            return Err(FieldError::new(
                "cron_options",
                "a schedule needs at least one of year, month, day, week, day_of_week, hour, minute, second",
            ));
        }
        let tz = parse_timezone(opts.timezone.as_deref())?;
        let last_given = (0..FIELD_NAMES.len()).rev().find(|&i| opts.field(i).is_some()).unwrap_or(0);
        let mut values: [String; 8] = Default::default();
        for (i, value) in values.iter_mut().enumerate() {
            *value = match opts.field(i) {
                Some(v) => v.to_owned(),
                None if i > last_given => DEFAULT_VALUES[i].to_owned(),
                None => "*".to_owned(),
            };
        }
        let date = |name: &str, v: &Option<String>| -> Result<Option<String>, FieldError> {
            v.as_deref()
                .map(|s| {
                    parse_fuzzy_datetime(s, tz)
                        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                        .map_err(|m| FieldError::new(format!("cron_options.{name}"), m))
                })
                .transpose()
        };
        let [year, month, day, week, day_of_week, hour, minute, second] = values;
        let spec = ScheduleSpec {
            year,
            month,
            day,
            week,
            day_of_week,
            hour,
            minute,
            second,
            start_date: date("start_date", &opts.start_date)?,
            end_date: date("end_date", &opts.end_date)?,
            timezone: opts.timezone.as_ref().map(|_| tz.name().to_owned()),
            jitter: crate::interval::check_jitter("cron_options", opts.jitter)?,
        };
        // An end before the start is accepted, as APScheduler does: such a schedule never fires
        // (the API refuses schedules that never fire, with their own message).
        Schedule::from_spec(spec)
    }

    /// Compiles a stored (already normalised) schedule.
    pub fn from_spec(mut spec: ScheduleSpec) -> Result<Schedule, FieldError> {
        let tz = parse_timezone(spec.timezone.as_deref())?;
        let mut fields: [Vec<Expr>; 8] = Default::default();
        let mut normalised: [String; 8] = Default::default();
        for (i, raw) in spec.fields().iter().enumerate() {
            let name = FIELD_NAMES[i];
            let (exprs, norm) = parse_field(i, raw).map_err(|m| FieldError::new(format!("cron_options.{name}"), m))?;
            fields[i] = exprs;
            normalised[i] = norm;
        }
        let [year, month, day, week, day_of_week, hour, minute, second] = normalised;
        (spec.year, spec.month, spec.day, spec.week) = (year, month, day, week);
        (spec.day_of_week, spec.hour, spec.minute, spec.second) = (day_of_week, hour, minute, second);
        let instant = |name: &str, v: &Option<String>| -> Result<Option<DateTime<Utc>>, FieldError> {
            v.as_deref()
                .map(|s| {
                    DateTime::parse_from_rfc3339(s)
                        .map(|d| d.with_timezone(&Utc))
                        .map_err(|e| FieldError::new(format!("cron_options.{name}"), e.to_string()))
                })
                .transpose()
        };
        let start = instant("start_date", &spec.start_date)?;
        let end = instant("end_date", &spec.end_date)?;
        Ok(Schedule { spec, fields, start, end, tz })
    }

    pub fn spec(&self) -> &ScheduleSpec {
        &self.spec
    }

    /// The first and last instants the schedule may fire at, if it has them.
    pub fn bounds(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        (self.start, self.end)
    }

    /// The first fire time at or after `after` (rounded up to a whole second), or `None` when the
    /// schedule never fires again. To get the fire after one at `t`, pass `t + 1s`.
    pub fn next_fire_at_or_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = match self.start {
            Some(s) if s > after => s,
            _ => after,
        };
        // Like APScheduler, the search walks a zoned instant: increments add wall-clock differences to
        // the instant (so both passes of a repeated hour are seen), and set values are localised anew.
        let mut date = Zoned::at(self.tz, ceil_to_second(start));
        let mut fieldnum: isize = 0;
        let mut steps = 0u32;
        while fieldnum >= 0 && (fieldnum as usize) < FIELD_NAMES.len() {
            steps += 1;
            if steps > MAX_SEARCH_STEPS {
                return None;
            }
            let i = fieldnum as usize;
            let local = date.wall;
            let current = field_value_of(i, &local);
            match self.next_value(i, &local) {
                None => (date, fieldnum) = increment_field(self.tz, date, fieldnum - 1)?,
                Some(next) if next > current => {
                    if is_real(i) {
                        date = Zoned::localize(self.tz, set_field(&local, i, next)?);
                        fieldnum += 1;
                    } else {
                        (date, fieldnum) = increment_field(self.tz, date, fieldnum)?;
                    }
                }
                Some(_) => fieldnum += 1,
            }
            if self.end.is_some_and(|e| date.instant() > e) {
                return None;
            }
        }
        if fieldnum < 0 {
            return None;
        }
        Some(date.instant())
    }

    fn next_value(&self, i: usize, date: &NaiveDateTime) -> Option<u32> {
        self.fields[i].iter().filter_map(|e| expr_next_value(e, i, date)).min()
    }
}

fn parse_timezone(name: Option<&str>) -> Result<Tz, FieldError> {
    crate::zoned::parse_timezone_of("cron_options", name)
}

fn ceil_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    if t.nanosecond() == 0 { t } else { t.with_nanosecond(0).unwrap_or(t) + Duration::seconds(1) }
}

fn is_real(i: usize) -> bool {
    i != WEEK && i != DAY_OF_WEEK
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    match (NaiveDate::from_ymd_opt(ny, nm, 1), NaiveDate::from_ymd_opt(year, month, 1)) {
        (Some(a), Some(b)) => (a - b).num_days() as u32,
        _ => 31,
    }
}

fn field_value_of(i: usize, d: &NaiveDateTime) -> u32 {
    match i {
        YEAR => d.year() as u32,
        MONTH => d.month(),
        DAY => d.day(),
        WEEK => d.iso_week().week(),
        DAY_OF_WEEK => d.weekday().num_days_from_monday(),
        5 => d.hour(),
        6 => d.minute(),
        _ => d.second(),
    }
}

fn field_min(i: usize) -> u32 {
    MIN_VALUES[i]
}

fn field_max(i: usize, d: &NaiveDateTime) -> u32 {
    if i == DAY { days_in_month(d.year(), d.month()) } else { MAX_VALUES[i] }
}

fn expr_next_value(expr: &Expr, i: usize, d: &NaiveDateTime) -> Option<u32> {
    match *expr {
        Expr::All { step } => step_next(field_value_of(i, d), field_min(i), field_max(i, d), step),
        Expr::Range { first, last, step } => {
            let minval = field_min(i).max(first);
            let maxval = match last {
                Some(l) => field_max(i, d).min(l),
                None => field_max(i, d),
            };
            step_next(field_value_of(i, d), minval, maxval, step)
        }
        Expr::WeekdayPosition { position, weekday } => {
            let first_wday = NaiveDate::from_ymd_opt(d.year(), d.month(), 1)?.weekday().num_days_from_monday() as i64;
            let last_day = days_in_month(d.year(), d.month()) as i64;
            let mut first_hit = weekday as i64 - first_wday + 1;
            if first_hit <= 0 {
                first_hit += 7;
            }
            let target = if position < 5 {
                first_hit + position as i64 * 7
            } else {
                first_hit + ((last_day - first_hit) / 7) * 7
            };
            (target <= last_day && target >= d.day() as i64).then_some(target as u32)
        }
        Expr::LastDayOfMonth => {
            let last = days_in_month(d.year(), d.month());
            (last >= d.day()).then_some(last)
        }
    }
}

fn step_next(current: u32, minval: u32, maxval: u32, step: Option<u32>) -> Option<u32> {
    let mut next = current.max(minval);
    if let Some(step) = step.filter(|s| *s > 0) {
        next += (step - (next - minval) % step) % step;
    }
    (next <= maxval).then_some(next)
}

/// The six real fields of a wall-clock time.
fn real_values(d: &NaiveDateTime) -> [u32; 6] {
    [d.year() as u32, d.month(), d.day(), d.hour(), d.minute(), d.second()]
}

fn real_index(i: usize) -> usize {
    match i {
        0..=2 => i,
        _ => i - 2,
    }
}

fn from_real_values(v: [u32; 6]) -> Option<NaiveDateTime> {
    NaiveDate::from_ymd_opt(v[0] as i32, v[1], v[2])?.and_hms_opt(v[3], v[4], v[5])
}

/// Sets field `i` to `value` and every less significant real field to its minimum.
fn set_field(d: &NaiveDateTime, i: usize, value: u32) -> Option<NaiveDateTime> {
    let mut v = real_values(d);
    let r = real_index(i);
    v[r] = value;
    for (k, slot) in v.iter_mut().enumerate().skip(r + 1) {
        *slot = if k == 2 || k == 1 { 1 } else { 0 };
    }
    from_real_values(v)
}

/// APScheduler's `_increment_field_value`: add one to field `fieldnum` (moving to a more significant
/// field when it is at its maximum, or when it is not a real field), resetting the less significant
/// ones. Returns `None` when even the year cannot be incremented.
fn increment_field(tz: Tz, date: Zoned, mut fieldnum: isize) -> Option<(Zoned, isize)> {
    let local = date.wall;
    let d = &local;
    let mut values = real_values(d);
    let mut i: isize = 0;
    while i < FIELD_NAMES.len() as isize {
        if i < 0 {
            return Some((date, -1));
        }
        let f = i as usize;
        if !is_real(f) {
            if i == fieldnum {
                fieldnum -= 1;
                i -= 1;
            } else {
                i += 1;
            }
            continue;
        }
        let r = real_index(f);
        if i < fieldnum {
            values[r] = field_value_of(f, d);
            i += 1;
        } else if i > fieldnum {
            values[r] = field_min(f);
            i += 1;
        } else {
            let value = field_value_of(f, d);
            if value == field_max(f, d) {
                fieldnum -= 1;
                i -= 1;
            } else {
                values[r] = value + 1;
                i += 1;
            }
        }
    }
    if fieldnum < 0 {
        return Some((date, -1));
    }
    let difference = from_real_values(values)? - local;
    Some((Zoned::at(tz, date.instant() + difference), fieldnum))
}

/// The longest field value accepted, in bytes.
pub const MAX_FIELD_LEN: usize = 256;
/// The most comma-separated expressions in one field (enough to list every second of a minute).
pub const MAX_FIELD_ITEMS: usize = 64;
/// Steps the next-fire search may take. A schedule that fires at all finds its next fire in a few
/// hundred; one that never does (`day: 30, month: 2`) would otherwise walk to year 9999.
const MAX_SEARCH_STEPS: u32 = 20_000;

/// Parses one field's comma-separated expressions; returns them and the normalised text.
fn parse_field(i: usize, raw: &str) -> Result<(Vec<Expr>, String), String> {
    if raw.len() > MAX_FIELD_LEN {
        return Err(format!("longer than {MAX_FIELD_LEN} characters"));
    }
    let text = raw.trim().to_ascii_lowercase();
    if text.is_empty() {
        return Err("empty value".into());
    }
    if text.split(',').count() > MAX_FIELD_ITEMS {
        return Err(format!("more than {MAX_FIELD_ITEMS} comma-separated expressions"));
    }
    let mut exprs = Vec::new();
    let mut parts = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let expr = parse_expr(i, part)?;
        validate_expr(i, &expr, part)?;
        exprs.push(expr);
        parts.push(collapse_spaces(part));
    }
    Ok((exprs, parts.join(",")))
}

fn collapse_spaces(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn parse_number(s: &str, what: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{what}' is not a valid expression"));
    }
    s.parse::<u32>().map_err(|_| format!("'{what}' is out of range"))
}

/// The leading run of ASCII digits of `s`, and the rest.
fn digits(s: &str) -> (&str, &str) {
    s.split_at(s.bytes().take_while(u8::is_ascii_digit).count())
}

/// The leading run of ASCII letters of `s`, and the rest.
fn letters(s: &str) -> (&str, &str) {
    s.split_at(s.bytes().take_while(u8::is_ascii_alphabetic).count())
}

/// `*` or `*/step`, the whole part.
fn all_expr(part: &str) -> Option<Result<Expr, String>> {
    let rest = part.strip_prefix('*')?;
    if rest.is_empty() {
        return Some(Ok(Expr::All { step: None }));
    }
    let step = rest.strip_prefix('/').filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))?;
    Some(parse_number(step, part).map(|s| Expr::All { step: Some(s) }))
}

/// `a`, `a-b`, `a/step` or `a-b/step` in digits, the whole part.
fn range_expr(part: &str) -> Option<Result<Expr, String>> {
    let (first, mut rest) = digits(part);
    if first.is_empty() {
        return None;
    }
    let mut last = None;
    if let Some(r) = rest.strip_prefix('-') {
        let (l, r) = digits(r);
        if l.is_empty() {
            return None;
        }
        (last, rest) = (Some(l), r);
    }
    let mut step = None;
    if let Some(r) = rest.strip_prefix('/') {
        let (st, r) = digits(r);
        if st.is_empty() {
            return None;
        }
        (step, rest) = (Some(st), r);
    }
    if !rest.is_empty() {
        return None;
    }
    let parsed = (|| {
        let first = parse_number(first, part)?;
        let last = last.map(|l| parse_number(l, part)).transpose()?;
        let step = step.map(|s| parse_number(s, part)).transpose()?;
        // A single value with no step means exactly that value.
        let last = if last.is_none() && step.is_none() { Some(first) } else { last };
        Ok(Expr::Range { first, last, step })
    })();
    Some(parsed)
}

/// A name or `name-name` at the start of the part (what follows is ignored, as APScheduler's
/// pattern matches only a prefix: `jan-6` is January, `mon-fri/2` is Monday to Friday).
fn named_range_expr(i: usize, part: &str) -> Option<Result<Expr, String>> {
    let (first, rest) = letters(part);
    if first.is_empty() {
        return None;
    }
    let last = rest.strip_prefix('-').map(|r| letters(r).0).filter(|l| !l.is_empty());
    let (names, offset): (&[&str], u32) = if i == MONTH { (&MONTH_NAMES, 1) } else { (&WEEKDAY_NAMES, 0) };
    let what = if i == MONTH { "month" } else { "weekday" };
    let number = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .map(|p| p as u32 + offset)
            .ok_or_else(|| format!("'{name}' is not a {what} name (in '{part}')"))
    };
    let parsed = (|| {
        let first = number(first)?;
        let last = match last {
            Some(l) => number(l)?,
            None => first,
        };
        Ok(Expr::Range { first, last: Some(last), step: None })
    })();
    Some(parsed)
}

/// `1st`..`5th` or `last`, spaces, then a weekday, at the start of the part (day field).
fn position_expr(part: &str) -> Option<Result<Expr, String>> {
    let position = POSITION_NAMES.iter().position(|p| part.starts_with(p))?;
    let rest = &part[POSITION_NAMES[position].len()..];
    let after = rest.trim_start_matches(' ');
    if after.len() == rest.len() {
        return None;
    }
    // `\w+`: letters, digits and underscores.
    let end = after.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
    if end == 0 {
        return None;
    }
    let name = &after[..end];
    Some(match WEEKDAY_NAMES.iter().position(|w| *w == name) {
        Some(w) => Ok(Expr::WeekdayPosition { position: position as u32, weekday: w as u32 }),
        None => Err(format!("'{name}' is not a weekday name (in '{part}')")),
    })
}

/// One expression, tried as APScheduler 3 tries them, in its order: `*`, numbers, then for the day
/// `Nth weekday` and `last`, for the month and the weekday their names.
fn parse_expr(i: usize, part: &str) -> Result<Expr, String> {
    let found = all_expr(part).or_else(|| range_expr(part)).or_else(|| match i {
        DAY => position_expr(part).or_else(|| part.starts_with("last").then_some(Ok(Expr::LastDayOfMonth))),
        MONTH | DAY_OF_WEEK => named_range_expr(i, part),
        _ => None,
    });
    found.unwrap_or_else(|| Err(format!("'{part}' is not a valid expression for {}", FIELD_NAMES[i])))
}

fn validate_expr(i: usize, expr: &Expr, part: &str) -> Result<(), String> {
    let (min, max) = (MIN_VALUES[i], MAX_VALUES[i]);
    match *expr {
        Expr::All { step } => {
            if step == Some(0) {
                return Err(format!("'{part}': the step must be higher than 0"));
            }
            if let Some(s) = step
                && s > max - min
            {
                return Err(format!("'{part}': the step ({s}) is higher than the field's range ({})", max - min));
            }
        }
        Expr::Range { first, last, step } => {
            if step == Some(0) {
                return Err(format!("'{part}': the step must be higher than 0"));
            }
            if first < min || first > max {
                return Err(format!("'{part}': {first} is outside {min}-{max}"));
            }
            if let Some(l) = last {
                if l < min || l > max {
                    return Err(format!("'{part}': {l} is outside {min}-{max}"));
                }
                if l < first {
                    return Err(format!("'{part}': the first value of a range must not be higher than the last"));
                }
            }
            if let Some(s) = step {
                // APScheduler takes the field's maximum when the range has no end, or ends at 0.
                let span = i64::from(last.filter(|l| *l != 0).unwrap_or(max)) - i64::from(first);
                if i64::from(s) > span {
                    return Err(format!("'{part}': the step ({s}) is higher than the range ({span})"));
                }
            }
        }
        Expr::WeekdayPosition { .. } | Expr::LastDayOfMonth => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: serde_json::Value) -> CronOptions {
        serde_json::from_value(v).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn defaults_follow_the_least_significant_field() {
        let s = Schedule::from_options(&opts(serde_json::json!({"minute": "*"}))).unwrap();
        let spec = s.spec();
        assert_eq!(
            (spec.year.as_str(), spec.month.as_str(), spec.day.as_str(), spec.hour.as_str(), spec.second.as_str()),
            ("*", "*", "*", "*", "0")
        );
        let s = Schedule::from_options(&opts(serde_json::json!({"day": 5}))).unwrap();
        let spec = s.spec();
        assert_eq!((spec.month.as_str(), spec.day.as_str(), spec.hour.as_str()), ("*", "5", "0"));
        assert_eq!((spec.week.as_str(), spec.day_of_week.as_str()), ("*", "*"));
    }

    #[test]
    fn invalid_values_name_the_field() {
        for (v, field) in [
            (serde_json::json!({"minute": "61"}), "cron_options.minute"),
            (serde_json::json!({"hour": "5-2"}), "cron_options.hour"),
            (serde_json::json!({"second": "*/0"}), "cron_options.second"),
            (serde_json::json!({"day_of_week": "funday"}), "cron_options.day_of_week"),
            (serde_json::json!({"day": "6th fri"}), "cron_options.day"),
            (serde_json::json!({"month": "13"}), "cron_options.month"),
            (serde_json::json!({"minute": "1,,2"}), "cron_options.minute"),
            (serde_json::json!({"minute": "*", "timezone": "Mars/Base"}), "cron_options.timezone"),
            (serde_json::json!({"minute": "*", "start_date": "not a date at all"}), "cron_options.start_date"),
            (serde_json::json!({}), "cron_options"),
        ] {
            let err = Schedule::from_options(&opts(v.clone())).unwrap_err();
            assert_eq!(err.field, field, "{v}: {}", err.message);
        }
    }

    #[test]
    fn every_second_and_every_minute() {
        let s = Schedule::from_options(&opts(serde_json::json!({"second": "*"}))).unwrap();
        let now = utc("2024-01-01T00:00:00.5Z");
        assert_eq!(s.next_fire_at_or_after(now), Some(utc("2024-01-01T00:00:01Z")));
        let s = Schedule::from_options(&opts(serde_json::json!({"minute": "*/5"}))).unwrap();
        assert_eq!(s.next_fire_at_or_after(utc("2024-01-01T00:07:00Z")), Some(utc("2024-01-01T00:10:00Z")));
    }

    #[test]
    fn a_past_year_never_fires() {
        let s = Schedule::from_options(&opts(serde_json::json!({"year": 2001}))).unwrap();
        assert_eq!(s.next_fire_at_or_after(utc("2024-01-01T00:00:00Z")), None);
    }
}

#[cfg(test)]
mod deliberate_differences {
    use super::*;

    fn schedule(json: serde_json::Value) -> Schedule {
        Schedule::from_options(&serde_json::from_value(json).unwrap()).unwrap()
    }

    /// Europe/Dublin's negative DST makes pytz's next fire equal its start; ours always moves on.
    #[test]
    fn dublin_fires_move_forward() {
        let s = schedule(serde_json::json!({"minute": "*/20", "timezone": "Europe/Dublin"}));
        let mut at = DateTime::parse_from_rfc3339("2026-03-28T22:00:00Z").unwrap().with_timezone(&Utc);
        let mut last = None;
        for _ in 0..200 {
            let t = s.next_fire_at_or_after(at).unwrap();
            assert!(last.is_none_or(|l| t > l), "{t} after {last:?}");
            last = Some(t);
            at = t + Duration::seconds(1);
        }
    }

    /// After 2037 the zone's rules still apply (pytz stops at 2037).
    #[test]
    fn daylight_saving_goes_on_after_2037() {
        let s = schedule(serde_json::json!({"hour": "12", "timezone": "Europe/Berlin"}));
        let july = DateTime::parse_from_rfc3339("2040-07-01T00:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(s.next_fire_at_or_after(july).unwrap().to_rfc3339(), "2040-07-01T10:00:00+00:00");
    }
}
