//! Fuzzy parsing of `start_date` / `end_date`, as the 2014 API's `dateutil` parsing accepted them.
//!
//! `dateparser` does most forms, but fails on two of the seed's own examples (`2014-05-7 18:00`,
//! `Fri Jul 11 03:08:57 IST 2014`), silently reads unknown zone words as UTC, and gives a bare date
//! the current time of day. The forms it gets wrong are handled here first.

use std::sync::LazyLock;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use regex::Regex;

/// Zone abbreviations we accept, with their offsets in seconds. An abbreviation is ambiguous in
/// general (IST is India, Ireland or Israel); these are the readings the 2014 service's users meant.
const ZONE_ABBREVIATIONS: [(&str, i32); 12] = [
    ("UTC", 0),
    ("GMT", 0),
    ("Z", 0),
    ("IST", 5 * 3600 + 1800),
    ("CET", 3600),
    ("CEST", 7200),
    ("EST", -5 * 3600),
    ("EDT", -4 * 3600),
    ("CST", -6 * 3600),
    ("CDT", -5 * 3600),
    ("PST", -8 * 3600),
    ("PDT", -7 * 3600),
];

static ISO_LOOSE: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // a constant pattern, checked by the tests
    Regex::new(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$").expect("valid regex")
});

static CTIME: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // a constant pattern, checked by the tests
    Regex::new(
        r"(?i)^(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+([a-z]{3})[a-z]*\s+(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s+([a-z]{1,5})\s+(\d{4})$",
    )
    .expect("valid regex")
});

static ALPHA_WORD: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)] // a constant pattern, checked by the tests
    Regex::new(r"[A-Za-z]+").expect("valid regex")
});

/// Words that may appear in a date and are not zones.
const DATE_WORDS: [&str; 29] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed",
    "thu", "fri", "sat", "sun", "am", "pm", "t", "at", "of", "the", "st", "nd", "th",
];

fn zone_offset(word: &str) -> Option<FixedOffset> {
    ZONE_ABBREVIATIONS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .and_then(|(_, secs)| FixedOffset::east_opt(*secs))
}

fn month_number(word: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let w = word.get(..3)?.to_ascii_lowercase();
    MONTHS.iter().position(|m| *m == w).map(|p| p as u32 + 1)
}

/// A wall-clock time read in `tz` as pytz's `localize` reads it (a gap keeps the offset before
/// it, a fold takes standard time): what the 2014 service did with a date without a zone.
fn in_zone(tz: Tz, naive: NaiveDateTime) -> Result<DateTime<Utc>, String> {
    Ok(crate::zoned::Zoned::localize(tz, naive).instant())
}

/// Parses a human-written date and time. Without a zone in the text, it is read in `tz`
/// (UTC unless the schedule names a zone). A date without a time means midnight.
pub fn parse_fuzzy_datetime(input: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty date".into());
    }
    if s.len() > 64 {
        return Err("date text is too long".into());
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Ok(d.with_timezone(&Utc));
    }
    if let Some(c) = ISO_LOOSE.captures(s) {
        let num = |i: usize| c.get(i).map_or(Ok(0), |m| m.as_str().parse::<u32>());
        let (y, mo, d, h, mi, se) = (num(1), num(2), num(3), num(4), num(5), num(6));
        let (Ok(y), Ok(mo), Ok(d), Ok(h), Ok(mi), Ok(se)) = (y, mo, d, h, mi, se) else {
            return Err(format!("'{s}' is not a valid date"));
        };
        let naive = NaiveDate::from_ymd_opt(y as i32, mo, d)
            .and_then(|date| date.and_hms_opt(h, mi, se))
            .ok_or_else(|| format!("'{s}' is not a valid date"))?;
        return in_zone(tz, naive);
    }
    if let Some(c) = CTIME.captures(s) {
        let get = |i: usize| c.get(i).map_or("", |m| m.as_str());
        let month = month_number(get(1)).ok_or_else(|| format!("'{}' is not a month", get(1)))?;
        let zone = zone_offset(get(6)).ok_or_else(|| {
            format!("unknown time zone abbreviation '{}' (use a numeric offset such as +05:30)", get(6))
        })?;
        let n = |i: usize| get(i).parse::<u32>().unwrap_or(0);
        let naive = NaiveDate::from_ymd_opt(n(7) as i32, month, n(2))
            .and_then(|date| date.and_hms_opt(n(3), n(4), n(5)))
            .ok_or_else(|| format!("'{s}' is not a valid date"))?;
        return zone
            .from_local_datetime(&naive)
            .single()
            .map(|d| d.with_timezone(&Utc))
            .ok_or_else(|| format!("'{s}' is not a valid date"));
    }
    // dateparser reads any zone word it does not know as UTC: refuse those instead.
    for word in ALPHA_WORD.find_iter(s).map(|m| m.as_str()) {
        let lower = word.to_ascii_lowercase();
        let known_date_word =
            DATE_WORDS.iter().any(|w| lower.starts_with(w)) && word.len() > 2 || DATE_WORDS.contains(&lower.as_str());
        if !known_date_word && zone_offset(word).is_none() {
            return Err(format!("'{word}' is not understood (unknown word or time zone abbreviation)"));
        }
    }
    let has_time = s.contains(':');
    let parsed = dateparser::parse_with_timezone(s, &tz)
        .map_err(|e| format!("'{s}' is not a date dateparser understands: {e}"))?;
    if has_time {
        Ok(parsed)
    } else {
        // dateparser gives a bare date the current time of day; a date alone means its midnight.
        let date = parsed.with_timezone(&tz).date_naive();
        date.and_hms_opt(0, 0, 0).ok_or_else(|| format!("'{s}' is not a valid date")).and_then(|n| in_zone(tz, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_seed_examples_parse() {
        assert_eq!(parse_fuzzy_datetime("2014-05-7 18:00", Tz::UTC).unwrap(), utc("2014-05-07T18:00:00Z"));
        assert_eq!(parse_fuzzy_datetime("2014-03-10 09:30", Tz::UTC).unwrap(), utc("2014-03-10T09:30:00Z"));
        assert_eq!(parse_fuzzy_datetime("Fri Jul 11 03:08:57 IST 2014", Tz::UTC).unwrap(), utc("2014-07-10T21:38:57Z"));
    }

    #[test]
    fn naive_times_are_read_in_the_schedule_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(parse_fuzzy_datetime("2024-07-01 12:00", berlin).unwrap(), utc("2024-07-01T10:00:00Z"));
    }

    #[test]
    fn other_forms() {
        assert_eq!(parse_fuzzy_datetime("2014-05-07T18:00:00+02:00", Tz::UTC).unwrap(), utc("2014-05-07T16:00:00Z"));
        assert_eq!(parse_fuzzy_datetime("2014-05-07", Tz::UTC).unwrap(), utc("2014-05-07T00:00:00Z"));
        assert_eq!(parse_fuzzy_datetime("May 7, 2014", Tz::UTC).unwrap(), utc("2014-05-07T00:00:00Z"));
        assert_eq!(parse_fuzzy_datetime("Fri Jul 11 03:08:57 UTC 2014", Tz::UTC).unwrap(), utc("2014-07-11T03:08:57Z"));
    }

    #[test]
    fn unknown_zones_and_garbage_are_refused() {
        assert!(parse_fuzzy_datetime("Fri Jul 11 03:08:57 XYZ 2014", Tz::UTC).is_err());
        assert!(parse_fuzzy_datetime("2014-07-11 03:08 QQT", Tz::UTC).is_err());
        assert!(parse_fuzzy_datetime("tomorrow-ish", Tz::UTC).is_err());
        assert!(parse_fuzzy_datetime("2014-02-30 10:00", Tz::UTC).is_err());
        assert!(parse_fuzzy_datetime("", Tz::UTC).is_err());
    }
}
