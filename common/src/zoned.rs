//! Wall-clock times in a zone as pytz (and so APScheduler 3) handles them: a time is a wall clock
//! with the offset it was given, which need not be the one in force at that instant. A wall time in
//! a daylight-saving gap keeps its wall clock and the offset in force before the gap; a repeated
//! one (a fold) takes standard time, the later instant. Schedules and dates must do exactly this
//! to fire when the 2014 service fired.

use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, Tz};

use crate::FieldError;

/// A wall-clock time and the UTC offset it is read with (seconds east of UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zoned {
    pub wall: NaiveDateTime,
    pub offset: i32,
}

impl Zoned {
    /// The instant it names.
    pub fn instant(self) -> DateTime<Utc> {
        (self.wall - Duration::seconds(i64::from(self.offset))).and_utc()
    }

    /// The wall clock in force at `t` in `tz` (pytz's `fromutc`).
    pub fn at(tz: Tz, t: DateTime<Utc>) -> Zoned {
        let offset = offset_at(tz, t.naive_utc());
        Zoned { wall: t.naive_utc() + Duration::seconds(i64::from(offset)), offset }
    }

    /// pytz's `localize(wall, is_dst=False)`: the offsets in force a day before and a day after
    /// (read as if the wall clock were UTC) are the candidates; those that name an instant where
    /// they are in force remain. One: it. None (a gap): the offset of six hours earlier, wall
    /// clock kept. Two (a fold): the standard-time one, else the later instant.
    pub fn localize(tz: Tz, wall: NaiveDateTime) -> Zoned {
        Self::localize_depth(tz, wall, 0)
    }

    fn localize_depth(tz: Tz, wall: NaiveDateTime, depth: u8) -> Zoned {
        let mut candidates: Vec<(i32, bool)> = Vec::with_capacity(2);
        for probe in [wall - Duration::days(1), wall + Duration::days(1)] {
            let (offset, dst) = components_at(tz, probe);
            let consistent = offset_at(tz, wall - Duration::seconds(i64::from(offset))) == offset;
            if consistent && !candidates.iter().any(|(o, _)| *o == offset) {
                candidates.push((offset, dst));
            }
        }
        match candidates[..] {
            [(offset, _)] => Zoned { wall, offset },
            [] if depth < 4 => {
                let earlier = Self::localize_depth(tz, wall - Duration::hours(6), depth + 1);
                Zoned { wall, offset: earlier.offset }
            }
            [] => Zoned { wall, offset: offset_at(tz, wall) },
            _ => {
                let standard: Vec<i32> = candidates.iter().filter(|(_, dst)| !dst).map(|(o, _)| *o).collect();
                let pool: Vec<i32> =
                    if standard.len() == 1 { standard } else { candidates.iter().map(|(o, _)| *o).collect() };
                // The later instant is the one with the smaller offset.
                let offset = pool.into_iter().min().unwrap_or(0);
                Zoned { wall, offset }
            }
        }
    }
}

/// The total offset in force at the UTC time `utc`, in seconds.
fn offset_at(tz: Tz, utc: NaiveDateTime) -> i32 {
    tz.offset_from_utc_datetime(&utc).fix().local_minus_utc()
}

/// The total offset at `utc`, and whether daylight saving is part of it.
fn components_at(tz: Tz, utc: NaiveDateTime) -> (i32, bool) {
    let offset = tz.offset_from_utc_datetime(&utc);
    (offset.fix().local_minus_utc(), !offset.dst_offset().is_zero())
}

/// An IANA zone name (absent: UTC), as pytz finds it; an error names `<prefix>.timezone`.
pub(crate) fn parse_timezone_of(prefix: &str, name: Option<&str>) -> Result<Tz, FieldError> {
    match name {
        None => Ok(Tz::UTC),
        // pytz looks names up without regard to case (`europe/berlin`), and so do we.
        Some(n) => n
            .parse::<Tz>()
            .or_else(|_| {
                chrono_tz::TZ_VARIANTS.iter().copied().find(|tz| tz.name().eq_ignore_ascii_case(n.trim())).ok_or(())
            })
            .map_err(|_| {
                FieldError::new(
                    format!("{prefix}.timezone"),
                    format!("unknown time zone '{n}' (use an IANA name such as Europe/Berlin)"),
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn gaps_keep_the_wall_clock_and_the_offset_before() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let z = Zoned::localize(berlin, wall("2026-03-29 02:30:00"));
        assert_eq!((z.wall, z.offset), (wall("2026-03-29 02:30:00"), 3600));
        assert_eq!(z.instant().to_rfc3339(), "2026-03-29T01:30:00+00:00");
    }

    #[test]
    fn folds_take_standard_time() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let z = Zoned::localize(berlin, wall("2026-10-25 02:30:00"));
        assert_eq!(z.offset, 3600);
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(Zoned::localize(ny, wall("2026-11-01 01:30:00")).offset, -5 * 3600);
    }

    #[test]
    fn ordinary_times_and_instants() {
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let z = Zoned::localize(kolkata, wall("2026-07-01 12:00:00"));
        assert_eq!(z.offset, 19800);
        assert_eq!(Zoned::at(kolkata, z.instant()), z);
    }
}
