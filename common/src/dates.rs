//! `start_date` / `end_date` as the 2014 service read them: `dateutil.parser.parse` in its default
//! mode (month before day, no fuzzy skipping, missing parts from today at midnight), then a date
//! without a zone read in the schedule's zone as pytz does (see [`crate::zoned`]).
//!
//! This follows dateutil 2.9's algorithm, written anew: the text is cut into tokens (runs of letters,
//! runs of digits with their decimal point, single other characters), each token is read in turn
//! (a number by what surrounds it, a month or weekday name, AM/PM, a zone name or offset, or a word
//! that may be skipped), and the up to three numbers left for the date are assigned to year, month
//! and day by dateutil's rules. Deliberate differences, listed in the README: zone abbreviations
//! other than UTC/GMT/Z are read from a small table (dateutil drops them silently and reads the
//! time in the schedule's zone); one it does not know is refused.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;

use crate::zoned::Zoned;

/// Zone abbreviations we accept, with their offsets in seconds. An abbreviation is ambiguous in
/// general (IST is India, Ireland or Israel); these are the readings the 2014 service's users meant
/// (its README's own example is `Fri Jul 11 03:08:57 IST 2014`).
const ZONE_ABBREVIATIONS: [(&str, i32); 9] = [
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

/// The longest date text accepted.
const MAX_LEN: usize = 64;

const JUMP: [&str; 18] =
    [" ", ".", ",", ";", "-", "/", "'", "at", "on", "and", "ad", "m", "t", "of", "st", "nd", "rd", "th"];
const MONTHS: [&[&str]; 12] = [
    &["jan", "january"],
    &["feb", "february"],
    &["mar", "march"],
    &["apr", "april"],
    &["may"],
    &["jun", "june"],
    &["jul", "july"],
    &["aug", "august"],
    &["sep", "sept", "september"],
    &["oct", "october"],
    &["nov", "november"],
    &["dec", "december"],
];
const WEEKDAYS: [&[&str]; 7] = [
    &["mon", "monday"],
    &["tue", "tuesday"],
    &["wed", "wednesday"],
    &["thu", "thursday"],
    &["fri", "friday"],
    &["sat", "saturday"],
    &["sun", "sunday"],
];
const UTC_ZONES: [&str; 4] = ["UTC", "GMT", "Z", "z"];

fn lookup(table: &[&[&str]], token: &str) -> Option<u32> {
    let t = token.to_lowercase();
    table.iter().position(|names| names.contains(&t.as_str())).map(|p| p as u32)
}

fn month(token: &str) -> Option<u32> {
    lookup(&MONTHS, token).map(|m| m + 1)
}

fn weekday(token: &str) -> Option<u32> {
    lookup(&WEEKDAYS, token)
}

fn jump(token: &str) -> bool {
    JUMP.contains(&token.to_lowercase().as_str())
}

fn hms(token: &str) -> Option<u8> {
    match token.to_lowercase().as_str() {
        "h" | "hour" | "hours" => Some(0),
        "m" | "minute" | "minutes" => Some(1),
        "s" | "second" | "seconds" => Some(2),
        _ => None,
    }
}

fn ampm(token: &str) -> Option<u8> {
    match token.to_lowercase().as_str() {
        "am" | "a" => Some(0),
        "pm" | "p" => Some(1),
        _ => None,
    }
}

fn is_utc_zone(token: &str) -> bool {
    UTC_ZONES.iter().any(|z| z.eq_ignore_ascii_case(token))
}

/// dateutil's `_timelex`: letters, digits (with `.`, or `,` after two digits, inside), one token
/// per space and per other character; a dotted token with letters or several dots is cut at its dots.
// layout: table: dateutil's lexer, a state machine ported whole to be read beside the original
fn tokens(s: &str) -> Vec<String> {
    #[derive(PartialEq, Clone, Copy)]
    enum State {
        Word,
        Num,
        WordDot,
        NumDot,
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c == '\0' {
            continue;
        }
        let mut state = if c.is_alphabetic() {
            State::Word
        } else if c.is_ascii_digit() {
            State::Num
        } else {
            out.push(if c.is_whitespace() { " ".to_owned() } else { c.to_string() });
            continue;
        };
        let mut token = c.to_string();
        let mut seen_letters = false;
        while i < chars.len() {
            let n = chars[i];
            let last_dot = token.ends_with('.');
            let take = match state {
                State::Word => {
                    seen_letters = true;
                    if n.is_alphabetic() {
                        true
                    } else if n == '.' {
                        state = State::WordDot;
                        true
                    } else {
                        false
                    }
                }
                State::Num => {
                    if n.is_ascii_digit() {
                        true
                    } else if n == '.' || (n == ',' && token.chars().count() >= 2) {
                        state = State::NumDot;
                        true
                    } else {
                        false
                    }
                }
                State::WordDot => {
                    seen_letters = true;
                    if n == '.' || n.is_alphabetic() {
                        true
                    } else if n.is_ascii_digit() && last_dot {
                        state = State::NumDot;
                        true
                    } else {
                        false
                    }
                }
                State::NumDot => {
                    if n == '.' || n.is_ascii_digit() {
                        true
                    } else if n.is_alphabetic() && last_dot {
                        state = State::WordDot;
                        true
                    } else {
                        false
                    }
                }
            };
            if !take {
                break;
            }
            token.push(n);
            i += 1;
        }
        let dotted = matches!(state, State::WordDot | State::NumDot);
        if dotted && (seen_letters || token.matches('.').count() > 1 || token.ends_with(['.', ','])) {
            let mut piece = String::new();
            for ch in token.chars() {
                if ch == '.' || ch == ',' {
                    if !piece.is_empty() {
                        out.push(std::mem::take(&mut piece));
                    }
                    out.push(ch.to_string());
                } else {
                    piece.push(ch);
                }
            }
            if !piece.is_empty() {
                out.push(piece);
            }
            continue;
        }
        if state == State::NumDot && !token.contains('.') {
            token = token.replace(',', ".");
        }
        out.push(token);
    }
    out
}

/// A token read as Python's `float` reads it: digits with at most one decimal point.
fn number(token: &str) -> Option<f64> {
    let plain = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && token.matches('.').count() <= 1
        && token != ".";
    if plain { token.parse().ok() } else { None }
}

/// Python's `int()` of a digit string (or of a decimal, truncated).
fn int(token: &str) -> Result<i64, String> {
    if let Ok(v) = token.parse::<i64>() {
        return Ok(v);
    }
    number(token).map(|v| v.trunc() as i64).ok_or_else(|| format!("'{token}' is not a number"))
}

/// Year, month and day, each if known.
type YearMonthDay = (Option<i64>, Option<i64>, Option<i64>);

/// The year, month and day candidates, and which of them are known for what they are.
#[derive(Default)]
struct Ymd {
    values: Vec<i64>,
    year_at: Option<usize>,
    month_at: Option<usize>,
    day_at: Option<usize>,
    century_specified: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Label {
    None,
    Year,
    Month,
}

impl Ymd {
    /// A candidate given as text: more than two digits make it a year.
    fn push_text(&mut self, text: &str, label: Label) -> Result<(), String> {
        let long_digits = text.chars().all(|c| c.is_ascii_digit()) && text.len() > 2;
        self.push(int(text)?, label, long_digits)
    }

    /// A candidate given as a number: over 100 makes it a year.
    fn push_value(&mut self, value: f64, label: Label) -> Result<(), String> {
        self.push(value.trunc() as i64, label, value > 100.0)
    }

    fn push(&mut self, value: i64, mut label: Label, is_year: bool) -> Result<(), String> {
        if is_year {
            self.century_specified = true;
            if label == Label::Month {
                return Err("a month cannot be a year".into());
            }
            label = Label::Year;
        }
        self.values.push(value);
        let at = self.values.len() - 1;
        match label {
            Label::Month if self.month_at.is_some() => return Err("the month is given twice".into()),
            Label::Month => self.month_at = Some(at),
            Label::Year if self.year_at.is_some() => return Err("the year is given twice".into()),
            Label::Year => self.year_at = Some(at),
            Label::None => {}
        }
        Ok(())
    }

    fn could_be_day(&self, value: f64) -> bool {
        if self.day_at.is_some() {
            return false;
        }
        let max = match (self.month_at, self.year_at) {
            (None, _) => 31,
            (Some(m), None) => days_in_month(2000, self.values[m]),
            (Some(m), Some(y)) => days_in_month(self.values[y], self.values[m]),
        };
        (1.0..=max as f64).contains(&value)
    }

    /// dateutil's `resolve_ymd` with `yearfirst` and `dayfirst` false.
    fn resolve(&self) -> Result<YearMonthDay, String> {
        let v = &self.values;
        let known: Vec<(char, usize)> = [('y', self.year_at), ('m', self.month_at), ('d', self.day_at)]
            .into_iter()
            .filter_map(|(k, i)| Some((k, i?)))
            .collect();
        let get = |k: char, known: &[(char, usize)]| known.iter().find(|(key, _)| *key == k).map(|(_, i)| v[*i]);
        if (!known.is_empty() && v.len() == known.len()) || (v.len() == 3 && known.len() == 2) {
            let mut known = known.clone();
            if v.len() == 3 && known.len() == 2 {
                let missing_at = (0..3).find(|i| !known.iter().any(|(_, at)| at == i)).unwrap_or(0);
                let missing_key =
                    ['y', 'm', 'd'].into_iter().find(|k| !known.iter().any(|(key, _)| key == k)).unwrap_or('d');
                known.push((missing_key, missing_at));
            }
            return Ok((get('y', &known), get('m', &known), get('d', &known)));
        }
        let m = self.month_at;
        match v.len() {
            0 => Ok((None, None, None)),
            n if n > 3 => Err("more than three numbers for the date".into()),
            1 | 2 if v.len() == 1 || m.is_some() => {
                let (month, other) = match m {
                    Some(m) => (Some(v[m]), v[m.checked_sub(1).unwrap_or(v.len() - 1)]),
                    None => (None, v[0]),
                };
                if v.len() > 1 || m.is_none() {
                    if other > 31 { Ok((Some(other), month, None)) } else { Ok((None, month, Some(other))) }
                } else {
                    Ok((None, month, None))
                }
            }
            2 => {
                if v[0] > 31 {
                    Ok((Some(v[0]), Some(v[1]), None))
                } else if v[1] > 31 {
                    Ok((Some(v[1]), Some(v[0]), None))
                } else {
                    Ok((None, Some(v[0]), Some(v[1])))
                }
            }
            _ => Ok(match m {
                Some(0) => {
                    if v[1] > 31 {
                        (Some(v[1]), Some(v[0]), Some(v[2]))
                    } else {
                        (Some(v[2]), Some(v[0]), Some(v[1]))
                    }
                }
                Some(1) => {
                    if v[0] > 31 {
                        (Some(v[0]), Some(v[1]), Some(v[2]))
                    } else {
                        (Some(v[2]), Some(v[1]), Some(v[0]))
                    }
                }
                Some(_) => {
                    if v[1] > 31 {
                        (Some(v[1]), Some(v[2]), Some(v[0]))
                    } else {
                        (Some(v[0]), Some(v[2]), Some(v[1]))
                    }
                }
                None => {
                    if v[0] > 31 || self.year_at == Some(0) {
                        (Some(v[0]), Some(v[1]), Some(v[2]))
                    } else if v[0] > 12 {
                        (Some(v[2]), Some(v[1]), Some(v[0]))
                    } else {
                        (Some(v[2]), Some(v[0]), Some(v[1]))
                    }
                }
            }),
        }
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let (y, m) = (i32::try_from(year).unwrap_or(2000), u32::try_from(month).unwrap_or(1));
    let first = NaiveDate::from_ymd_opt(y, m, 1);
    let next = if m == 12 { NaiveDate::from_ymd_opt(y + 1, 1, 1) } else { NaiveDate::from_ymd_opt(y, m + 1, 1) };
    match (first, next) {
        (Some(a), Some(b)) => (b - a).num_days(),
        _ => 0,
    }
}

/// What the tokens said.
#[derive(Default)]
struct Res {
    hour: Option<i64>,
    minute: Option<i64>,
    second: Option<i64>,
    micro: Option<i64>,
    ampm: Option<u8>,
    weekday: Option<u32>,
    tzname: Option<String>,
    tzoffset: Option<i32>,
}

/// `ss` or `ss.ffffff`: seconds and microseconds.
fn seconds_and_micros(token: &str) -> Result<(i64, i64), String> {
    match token.split_once('.') {
        None => Ok((int(token)?, 0)),
        Some((s, f)) => {
            let mut f: String = f.chars().take(6).collect();
            while f.len() < 6 {
                f.push('0');
            }
            Ok((int(s)?, int(&f)?))
        }
    }
}

/// A minute that may have a fraction, which becomes seconds.
fn minute_and_second(value: f64) -> (i64, Option<i64>) {
    let fraction = value.fract();
    (value.trunc() as i64, (fraction != 0.0).then(|| (60.0 * fraction).trunc() as i64))
}

fn adjust_ampm(hour: i64, ampm: u8) -> i64 {
    match (hour, ampm) {
        (h, 1) if h < 12 => h + 12,
        (12, 0) => 0,
        (h, _) => h,
    }
}

struct Parser {
    t: Vec<String>,
    ymd: Ymd,
    res: Res,
}

impl Parser {
    fn at(&self, i: usize) -> Result<String, String> {
        self.t.get(i).cloned().ok_or_else(|| "the date ends too early".to_owned())
    }

    fn find_hms(&self, i: usize) -> Option<usize> {
        let t = &self.t;
        if t.get(i + 1).is_some_and(|n| hms(n).is_some()) {
            Some(i + 1)
        } else if t.get(i + 1).is_some_and(|n| n == " ") && t.get(i + 2).is_some_and(|n| hms(n).is_some()) {
            Some(i + 2)
        } else if i > 0 && hms(&t[i - 1]).is_some() {
            Some(i - 1)
        } else if i > 1 && i == t.len() - 1 && t[i - 1] == " " && hms(&t[i - 2]).is_some() {
            Some(i - 2)
        } else {
            None
        }
    }

    /// dateutil's `_parse_numeric_token`: returns the index of the last token it used.
    // layout: table: dateutil's cases, in its order, to be read beside the original
    fn numeric(&mut self, mut i: usize, value: f64) -> Result<usize, String> {
        let t = self.t.clone();
        let repr = t[i].as_str();
        let len = repr.chars().count();
        let n = t.len();
        let next_is_time = i + 1 < n && (t[i + 1] == ":" || hms(&t[i + 1]).is_some());
        if self.ymd.values.len() == 3 && (len == 2 || len == 4) && self.res.hour.is_none() && !next_is_time {
            // 19990101T23[59]
            self.res.hour = Some(int(&repr[..2])?);
            if len == 4 {
                self.res.minute = Some(int(&repr[2..])?);
            }
        } else if len == 6 || (len > 6 && repr.find('.') == Some(6)) {
            // YYMMDD or HHMMSS[.ss]
            if self.ymd.values.is_empty() && !repr.contains('.') {
                self.ymd.push_text(&repr[..2], Label::None)?;
                self.ymd.push_text(&repr[2..4], Label::None)?;
                self.ymd.push_text(&repr[4..], Label::None)?;
            } else {
                self.res.hour = Some(int(&repr[..2])?);
                self.res.minute = Some(int(&repr[2..4])?);
                let (s, us) = seconds_and_micros(&repr[4..])?;
                (self.res.second, self.res.micro) = (Some(s), Some(us));
            }
        } else if len == 8 || len == 12 || len == 14 {
            // YYYYMMDD[HHMM[SS]]
            self.ymd.push_text(&repr[..4], Label::Year)?;
            self.ymd.push_text(&repr[4..6], Label::None)?;
            self.ymd.push_text(&repr[6..8], Label::None)?;
            if len > 8 {
                self.res.hour = Some(int(&repr[8..10])?);
                self.res.minute = Some(int(&repr[10..12])?);
                if len > 12 {
                    self.res.second = Some(int(&repr[12..])?);
                }
            }
        } else if let Some(h) = self.find_hms(i) {
            // HH[ ]h, MM[ ]m, SS[.ss][ ]s
            let (new_i, kind) = if h > i { (h, hms(&t[h])) } else { (i, hms(&t[h]).map(|k| k + 1)) };
            i = new_i;
            match kind {
                Some(0) => {
                    self.res.hour = Some(value.trunc() as i64);
                    if value.fract() != 0.0 {
                        self.res.minute = Some((60.0 * value.fract()).trunc() as i64);
                    }
                }
                Some(1) => {
                    let (m, s) = minute_and_second(value);
                    (self.res.minute, self.res.second) = (Some(m), s);
                }
                Some(2) => {
                    let (s, us) = seconds_and_micros(repr)?;
                    (self.res.second, self.res.micro) = (Some(s), Some(us));
                }
                _ => {}
            }
        } else if i + 2 < n && t[i + 1] == ":" {
            // HH:MM[:SS[.ss]]
            self.res.hour = Some(value.trunc() as i64);
            let minute = number(&t[i + 2]).ok_or("the minute is not a number")?;
            let (m, s) = minute_and_second(minute);
            (self.res.minute, self.res.second) = (Some(m), s);
            if i + 4 < n && t[i + 3] == ":" {
                let (s, us) = seconds_and_micros(&t[i + 4])?;
                (self.res.second, self.res.micro) = (Some(s), Some(us));
                i += 2;
            }
            i += 2;
        } else if i + 1 < n && (t[i + 1] == "-" || t[i + 1] == "/" || t[i + 1] == ".") {
            let sep = t[i + 1].clone();
            self.ymd.push_text(repr, Label::None)?;
            if i + 2 < n && !jump(&t[i + 2]) {
                if t[i + 2].chars().all(|c| c.is_ascii_digit()) {
                    // 01-01[-01]
                    self.ymd.push_text(&t[i + 2], Label::None)?;
                } else {
                    // 01-Jan[-01]
                    let m = month(&t[i + 2]).ok_or("not a month")?;
                    self.ymd.push(i64::from(m), Label::Month, false)?;
                }
                if i + 3 < n && t[i + 3] == sep {
                    let last = self.at(i + 4)?;
                    match month(&last) {
                        Some(m) => self.ymd.push(i64::from(m), Label::Month, false)?,
                        None => self.ymd.push_text(&last, Label::None)?,
                    }
                    i += 2;
                }
                i += 1;
            }
            i += 1;
        } else if i + 1 >= n || jump(&t[i + 1]) {
            if i + 2 < n && ampm(&t[i + 2]).is_some() {
                // 12 am
                let hour = value.trunc() as i64;
                self.res.hour = Some(adjust_ampm(hour, ampm(&t[i + 2]).unwrap_or(0)));
                i += 1;
            } else {
                // a year, a month or a day
                self.ymd.push_value(value, Label::None)?;
            }
            i += 1;
        } else if let Some(a) = ampm(&t[i + 1]).filter(|_| (0.0..24.0).contains(&value)) {
            // 12am
            self.res.hour = Some(adjust_ampm(value.trunc() as i64, a));
            i += 1;
        } else if self.ymd.could_be_day(value) {
            self.ymd.push_value(value, Label::None)?;
        } else {
            return Err(format!("'{repr}' is not understood here"));
        }
        Ok(i)
    }

    fn could_be_tzname(&self, token: &str) -> bool {
        self.res.hour.is_some()
            && self.res.tzname.is_none()
            && self.res.tzoffset.is_none()
            && token.chars().count() <= 5
            && (token.chars().all(|c| c.is_ascii_uppercase()) || UTC_ZONES.contains(&token))
    }

    fn run(&mut self) -> Result<(), String> {
        let mut i = 0;
        while i < self.t.len() {
            let token = self.t[i].clone();
            let lower = token.to_lowercase();
            if ["nan", "inf", "infinity"].contains(&lower.as_str()) {
                return Err(format!("'{token}' is not a date"));
            }
            if let Some(value) = number(&token) {
                i = self.numeric(i, value)?;
            } else if let Some(w) = weekday(&token) {
                self.res.weekday = Some(w);
            } else if let Some(m) = month(&token) {
                self.ymd.push(i64::from(m), Label::Month, false)?;
                if i + 1 < self.t.len() {
                    if self.t[i + 1] == "-" || self.t[i + 1] == "/" {
                        // Jan-01[-99]
                        let sep = self.t[i + 1].clone();
                        self.ymd.push_text(&self.at(i + 2)?, Label::None)?;
                        if i + 3 < self.t.len() && self.t[i + 3] == sep {
                            self.ymd.push_text(&self.at(i + 4)?, Label::None)?;
                            i += 2;
                        }
                        i += 2;
                    } else if i + 4 < self.t.len()
                        && self.t[i + 1] == " "
                        && self.t[i + 3] == " "
                        && self.t[i + 2].eq_ignore_ascii_case("of")
                    {
                        // Jan of 01: the number is the year
                        if self.t[i + 4].chars().all(|c| c.is_ascii_digit()) {
                            let year = convert_year(int(&self.t[i + 4])?, false);
                            self.ymd.push(year, Label::Year, true)?;
                        }
                        i += 4;
                    }
                }
            } else if let Some(a) = ampm(&token) {
                match self.res.hour {
                    None => return Err("AM or PM without an hour".into()),
                    Some(h) if !(0..=12).contains(&h) => return Err("an hour over 12 with AM or PM".into()),
                    Some(h) => {
                        self.res.hour = Some(adjust_ampm(h, a));
                        self.res.ampm = Some(a);
                    }
                }
            } else if self.could_be_tzname(&token) {
                self.res.tzoffset = if is_utc_zone(&token) { Some(0) } else { None };
                self.res.tzname = Some(token.clone());
                // `GMT+3` means "my time +3 is GMT": the sign is turned around.
                if i + 1 < self.t.len() && (self.t[i + 1] == "+" || self.t[i + 1] == "-") {
                    self.t[i + 1] = if self.t[i + 1] == "+" { "-".into() } else { "+".into() };
                    self.res.tzoffset = None;
                    if is_utc_zone(&token) {
                        self.res.tzname = None;
                    }
                }
            } else if self.res.hour.is_some() && (token == "+" || token == "-") {
                let sign = if token == "+" { 1 } else { -1 };
                let digits = self.at(i + 1)?;
                let (hours, minutes) = if digits.chars().count() == 4 {
                    (int(&digits[..2])?, int(&digits[2..])?)
                } else if i + 2 < self.t.len() && self.t[i + 2] == ":" {
                    let minutes = int(&self.at(i + 3)?)?;
                    i += 2;
                    (int(&digits)?, minutes)
                } else if digits.chars().count() <= 2 {
                    (int(&digits)?, 0)
                } else {
                    return Err(format!("'{digits}' is not a zone offset"));
                };
                self.res.tzoffset = Some(sign * i32::try_from(hours * 3600 + minutes * 60).map_err(|e| e.to_string())?);
                i += 1;
            } else if !jump(&token) {
                return Err(format!("'{token}' is not understood"));
            }
            i += 1;
        }
        Ok(())
    }
}

/// A two-digit year is taken within 50 years of now, as dateutil does.
fn convert_year(year: i64, century_specified: bool) -> i64 {
    if year >= 100 || century_specified {
        return year;
    }
    let now = i64::from(Utc::now().year());
    let mut y = year + now / 100 * 100;
    if y >= now + 50 {
        y -= 100;
    } else if y < now - 50 {
        y += 100;
    }
    y
}

/// A parsed date: the wall clock, and the offset if the text named one.
struct Parsed {
    wall: NaiveDateTime,
    offset: Option<i32>,
}

fn parse(text: &str, today: NaiveDate) -> Result<Parsed, String> {
    let mut p = Parser { t: tokens(text), ymd: Ymd::default(), res: Res::default() };
    p.run()?;
    let (year, month, day) = p.ymd.resolve()?;
    let year = year.map(|y| convert_year(y, p.ymd.century_specified));
    let r = &p.res;
    let nothing = year.is_none()
        && month.is_none()
        && day.is_none()
        && r.hour.is_none()
        && r.minute.is_none()
        && r.second.is_none()
        && r.micro.is_none()
        && r.weekday.is_none()
        && r.tzname.is_none()
        && r.tzoffset.is_none();
    if nothing {
        return Err("no date in the text".into());
    }
    let y = year.unwrap_or(i64::from(today.year()));
    let m = month.unwrap_or(i64::from(today.month()));
    let d = match day {
        Some(d) => d,
        None => i64::from(today.day()).min(days_in_month(y, m).max(1)),
    };
    let date = (|| NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, u32::try_from(m).ok()?, u32::try_from(d).ok()?))()
        .ok_or_else(|| format!("{y:04}-{m:02}-{d:02} is not a date"))?;
    let part = |v: Option<i64>| u32::try_from(v.unwrap_or(0)).map_err(|_| "a negative time".to_owned());
    let wall = date
        .and_hms_micro_opt(part(r.hour)?, part(r.minute)?, part(r.second)?, part(r.micro)?)
        .ok_or_else(|| "the time of day is out of range".to_owned())?;
    let wall = match (r.weekday, day) {
        (Some(w), None) => {
            let ahead = (i64::from(w) - i64::from(wall.weekday().num_days_from_monday())).rem_euclid(7);
            wall + Duration::days(ahead)
        }
        _ => wall,
    };
    // The zone: UTC names and offsets as dateutil reads them; other names from our table.
    let offset = match (&r.tzname, r.tzoffset) {
        (Some(name), _) if is_utc_zone(name) => Some(0),
        (_, Some(off)) => Some(off),
        (Some(name), None) => Some(
            ZONE_ABBREVIATIONS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, off)| *off).ok_or_else(
                || format!("unknown time zone abbreviation '{name}' (use a numeric offset such as +05:30)"),
            )?,
        ),
        (None, None) => None,
    };
    Ok(Parsed { wall, offset })
}

/// [`parse_fuzzy_datetime`] in UTC (a date without a zone is read as UTC).
pub fn parse_fuzzy_utc(input: &str) -> Result<DateTime<Utc>, String> {
    parse_fuzzy_datetime(input, Tz::UTC)
}

/// Parses a human-written date and time as the 2014 service did. Without a zone in the text, the
/// wall clock is read in `tz` (UTC unless the schedule names a zone). A date without a time means
/// its midnight; parts left out come from today.
pub fn parse_fuzzy_datetime(input: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty date".into());
    }
    if s.len() > MAX_LEN {
        return Err("date text is too long".into());
    }
    let parsed = parse(s, Utc::now().date_naive()).map_err(|e| format!("'{s}' is not a date: {e}"))?;
    Ok(match parsed.offset {
        Some(off) => (parsed.wall - Duration::seconds(i64::from(off))).and_utc(),
        None => Zoned::localize(tz, parsed.wall).instant(),
    })
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
    fn tokens_are_cut_as_dateutil_cuts_them() {
        assert_eq!(tokens("Sep 25 2003"), ["Sep", " ", "25", " ", "2003"]);
        assert_eq!(tokens("01.01.2025 03:34"), ["01", ".", "01", ".", "2025", " ", "03", ":", "34"]);
        assert_eq!(tokens("12:00:00.5Z"), ["12", ":", "00", ":", "00.5", "Z"]);
        assert_eq!(tokens("Mar. 5"), ["Mar", ".", " ", "5"]);
    }

    #[test]
    fn forms_dateutil_reads() {
        let cases = [
            ("Sat Jul  4 19:07:00 2026", "2026-07-04T19:07:00Z"),
            ("Friday, June 9, 2028 00:00", "2028-06-09T00:00:00Z"),
            ("November 10 2027 7:26 AM", "2027-11-10T07:26:00Z"),
            ("04/12/2029", "2029-04-12T00:00:00Z"),
            ("29-04-17 14:05", "2017-04-29T14:05:00Z"),
            ("20310613", "2031-06-13T00:00:00Z"),
            ("2028-03-18T14:40:59-0530", "2028-03-18T20:10:59Z"),
            ("2026-01-01 10:00:00 GMT+2", "2026-01-01T12:00:00Z"),
            ("12:30 AM December 22, 2031", "2031-12-22T00:30:00Z"),
            ("08 AM April 22 2030", "2030-04-22T08:00:00Z"),
            ("26 July, 2027 at 09:26", "2027-07-26T09:26:00Z"),
            ("01th of February 2030 06:07", "2030-02-01T06:07:00Z"),
            ("2026-05-07T18:07:30.5Z", "2026-05-07T18:07:30.500Z"),
        ];
        for (text, want) in cases {
            assert_eq!(parse_fuzzy_datetime(text, Tz::UTC), Ok(utc(want)), "{text}");
        }
    }

    #[test]
    fn naive_times_are_read_in_the_schedule_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(parse_fuzzy_datetime("2024-07-01 12:00", berlin).unwrap(), utc("2024-07-01T10:00:00Z"));
    }

    #[test]
    fn unknown_zones_and_garbage_are_refused() {
        for bad in ["Fri Jul 11 03:08:57 XYZ 2014", "tomorrow-ish", "2014-02-30 10:00", "", "25:00 2026-01-01", "nan"] {
            assert!(parse_fuzzy_datetime(bad, Tz::UTC).is_err(), "{bad}");
        }
    }
}
