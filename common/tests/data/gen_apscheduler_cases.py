"""Generates apscheduler_cases.json: what the 2014 service computed for thousands of schedules.

The 2014 service read `start_date`/`end_date` with `dateutil.parser.parse` (default mode), gave the
result to APScheduler 3's `CronTrigger` with the project's `timezone` (UTC by default, as its
scheduler's), and APScheduler localised a naive date with pytz (`is_dst=False`). This script does the
same for cases drawn from a fixed seed and records, for each, either the refusal or the next ten fire
times from a given `now` (the first with `get_next_fire_time(None, now)`, each next with
`get_next_fire_time(prev, prev)`, as APScheduler's scheduler does).

The time zone data must be the one chrono-tz was built from: chrono-tz 0.10.4 has tzdata 2025b, which
is pytz 2025.2. Reproduce with:

    python3 -m venv /tmp/aps
    /tmp/aps/bin/pip install apscheduler==3.10.4 pytz==2025.2 python-dateutil==2.9.0.post0
    /tmp/aps/bin/python gen_apscheduler_cases.py > apscheduler_cases.json

With the argument `interval` it writes apscheduler_interval_cases.json instead: the same for
APScheduler's `IntervalTrigger` (`interval_options`), fire times to the microsecond, from its own
seed; and with `jitter`, apscheduler_jitter_cases.json: schedules of either kind with a `jitter`
below their shortest gap, each with its fires without jitter (what a delayed fire must stay
within) and the check that APScheduler's own delayed first fire stays there too.

    /tmp/aps/bin/python gen_apscheduler_cases.py interval > apscheduler_interval_cases.json
    /tmp/aps/bin/python gen_apscheduler_cases.py jitter > apscheduler_jitter_cases.json

The Rust test (common/tests/apscheduler_table.rs) needs no Python.
"""
import json
import random
import sys
import warnings
from datetime import datetime, timedelta

import dateutil.parser
import pytz
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

assert pytz.OLSON_VERSION == "2025b", pytz.OLSON_VERSION

SEED = 20261124
FIRES = 10
# pytz knows transitions up to 2037 only; chrono-tz goes on. Fires after this year are not compared.
LAST_YEAR = 2036

ZONES = [
    "UTC", "Europe/Berlin", "Europe/London", "Europe/Helsinki", "Europe/Moscow", "America/New_York",
    "America/Los_Angeles", "America/St_Johns", "America/Havana", "America/Sao_Paulo", "America/Santiago",
    "America/Asuncion", "Australia/Sydney", "Australia/Lord_Howe", "Australia/Adelaide", "Pacific/Auckland",
    "Pacific/Chatham", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Tehran", "Asia/Tokyo", "Asia/Beirut",
    "Africa/Cairo", "Asia/Gaza", "Antarctica/Troll", "Pacific/Apia",
]
DST_ZONES = [z for z in ZONES if z not in ("UTC", "Asia/Kolkata", "Asia/Kathmandu", "Asia/Tokyo",
                                           "Europe/Moscow", "Asia/Tehran", "Pacific/Apia")]

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
POSITIONS = ["1st", "2nd", "3rd", "4th", "5th", "last"]

DATE_FORMATS = [
    "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d",
    "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S+02:00", "%Y-%m-%dT%H:%M:%S-0530", "%Y-%m-%d %H:%M:%S.%f",
    "%Y/%m/%d %H:%M", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%d.%m.%Y %H:%M", "%B %d, %Y %H:%M",
    "%b %d %Y %I:%M %p", "%B %d %Y %I:%M %p", "%A, %B %d, %Y %H:%M", "%a %b %d %H:%M:%S %Y",
    "%a %b %d %H:%M:%S UTC %Y", "%d %B %Y %H:%M", "%d %b %Y", "%Y%m%dT%H%M%S", "%Y%m%d",
    "%a, %d %b %Y %H:%M:%S +0000", "%a, %d %b %Y %H:%M:%S GMT", "%d-%b-%Y %H:%M:%S", "%Y.%m.%d %H:%M",
    "%b %d, %Y", "%Y-%m-%d %I:%M %p", "%I:%M %p %B %d, %Y", "%H:%M:%S %d/%m/%Y", "%Y-%m-%d %H",
    "%B %Y %d %H:%M", "%dth of %B %Y %H:%M", "%Y-%m-%dT%H:%M:%S.%fZ", "%d/%m/%Y %H:%M", "%A %d %B %Y %H:%M",
    "%Y-%m-%dT%H:%M:%S.%f+05:30", "%I %p %B %d %Y", "%b. %d, %Y %I:%M:%S %p", "%Y-%m-%d %H:%M:%S UTC",
    "%Y-%m-%d %H:%M:%S GMT+2", "%d %B, %Y at %H:%M", "%H:%M on %d %b %Y", "%Y-%b-%d %H:%M", "%y-%m-%d %H:%M",
    "%m-%d-%Y %H:%M:%S", "%Y-%m-%d %H.%M", "%B %d %Y",
]


def ctime_padded(d):
    """`Sat Jul  4 19:07:00 2026`: the day padded with a space, as ctime and date(1) print it."""
    return d.strftime("%a %b ") + ("%2d" % d.day) + d.strftime(" %H:%M:%S %Y")


def rnd_date(r):
    base = datetime(2025, 1, 1) + timedelta(seconds=r.randrange(0, 7 * 365 * 86400))
    if r.random() < 0.3:
        base = base.replace(second=0)
    if r.random() < 0.2:
        base = base.replace(microsecond=r.choice([0, 250000, 500000, 999999, 123456]))
    return base


def rnd_date_text(r, d=None):
    d = d or rnd_date(r)
    if r.random() < 0.05:
        return ctime_padded(d)
    fmt = r.choice(DATE_FORMATS)
    text = d.strftime(fmt)
    if "%d" in fmt and "th of" in fmt:
        text = text.replace("%dth" % d.day, "%dth" % d.day)
    return text


def num_expr(r, lo, hi):
    kind = r.random()
    a = r.randint(lo, hi)
    b = r.randint(a, hi)
    step = r.randint(1, max(1, (hi - lo) // 2))
    if kind < 0.25:
        return str(a)
    if kind < 0.4:
        return "%d-%d" % (a, b)
    if kind < 0.55:
        return "*/%d" % step
    if kind < 0.65:
        return "%d/%d" % (a, step)
    if kind < 0.75:
        return "%d-%d/%d" % (a, b, r.randint(1, max(1, b - a)))
    if kind < 0.85:
        return "*"
    return ",".join(sorted({str(r.randint(lo, hi)) for _ in range(r.randint(2, 4))}, key=int))


def month_expr(r):
    k = r.random()
    if k < 0.5:
        return num_expr(r, 1, 12)
    a = r.randrange(12)
    b = r.randrange(a, 12)
    return r.choice([MONTHS[a], "%s-%s" % (MONTHS[a], MONTHS[b]), MONTHS[a].upper(),
                     "%s,%s" % (MONTHS[a], MONTHS[b]), "%s-%d" % (MONTHS[a], b + 1),
                     "%s/2" % MONTHS[a], "%s-%s/2" % (MONTHS[a], MONTHS[b])])


def dow_expr(r):
    k = r.random()
    if k < 0.4:
        return num_expr(r, 0, 6)
    a = r.randrange(7)
    b = r.randrange(a, 7)
    return r.choice([WEEKDAYS[a], "%s-%s" % (WEEKDAYS[a], WEEKDAYS[b]), WEEKDAYS[a].capitalize(),
                     "%s,%s" % (WEEKDAYS[a], WEEKDAYS[b]), "%s-%d" % (WEEKDAYS[a], b),
                     "%s-%s/2" % (WEEKDAYS[a], WEEKDAYS[b]), "mon-fri", "sat,sun"])


def day_expr(r):
    k = r.random()
    if k < 0.6:
        return num_expr(r, 1, 31)
    if k < 0.7:
        return "last"
    if k < 0.9:
        return "%s %s" % (r.choice(POSITIONS), r.choice(WEEKDAYS))
    return "%s,%s %s" % (r.randint(1, 28), r.choice(POSITIONS), r.choice(WEEKDAYS))


def year_expr(r):
    k = r.random()
    a = r.randint(2025, 2032)
    if k < 0.5:
        return str(a)
    if k < 0.8:
        return "%d-%d" % (a, r.randint(a, 2033))
    return "*/%d" % r.randint(1, 3)


FIELD_MAKERS = {
    "year": year_expr, "month": month_expr, "day": day_expr,
    "week": lambda r: num_expr(r, 1, 53), "day_of_week": dow_expr,
    "hour": lambda r: num_expr(r, 0, 23), "minute": lambda r: num_expr(r, 0, 59),
    "second": lambda r: num_expr(r, 0, 59),
}
ORDER = ["year", "month", "day", "week", "day_of_week", "hour", "minute", "second"]


def rnd_fields(r):
    fields = {}
    weights = {"year": 0.1, "month": 0.3, "day": 0.35, "week": 0.08, "day_of_week": 0.3,
               "hour": 0.6, "minute": 0.7, "second": 0.25}
    for name in ORDER:
        if r.random() < weights[name]:
            v = FIELD_MAKERS[name](r)
            fields[name] = int(v) if v.isdigit() and r.random() < 0.3 else v
    if not fields:
        fields["minute"] = FIELD_MAKERS["minute"](r)
    return fields


INVALID_FIELDS = [
    ("day_of_week", "0-fri"), ("day_of_week", "fri-mon"), ("hour", "24"), ("minute", "60"), ("minute", "*/0"),
    ("minute", "*/60"), ("second", "5-3"), ("day", "32"), ("day", "0"), ("month", "13"), ("month", "dec-jan"),
    ("week", "54"), ("year", "1969"), ("hour", "foo"), ("day", "6th fri"), ("day", "last xyz"), ("month", "jun-foo"),
    ("minute", "1,,2"), ("minute", ""), ("hour", "-1"), ("minute", "1-"), ("minute", "a-b"), ("day_of_week", "7"),
    ("month", "0"), ("minute", "0/60"), ("hour", "3-5/3"), ("day_of_week", "mon/2/3"), ("minute", "*/"),
]
INVALID_DATES = ["yesterday", "2026-02-30 10:00", "2026-13-01", "not a date", "31/31/2026", "25:00 2026-01-01",
                 "2026-01-01 10:61"]
INVALID_ZONES = ["Mars/Base", "Europe/Berlinn", "CEST+1", "Nowhere"]


def localize_text(tz, naive):
    return naive.strftime("%Y-%m-%d %H:%M:%S")


def transitions(zone):
    """(utc instant, offset before, offset after) of the zone's transitions in 2026-2031."""
    tz = pytz.timezone(zone)
    out = []
    times = getattr(tz, "_utc_transition_times", [])
    infos = getattr(tz, "_transition_info", [])
    for i in range(1, len(times)):
        if 2026 <= times[i].year <= 2031:
            out.append((times[i], infos[i - 1][0], infos[i][0]))
    return out


def dst_cases(r):
    """Start dates, schedules and `now`s in and next to every gap and fold of the coming years."""
    cases = []
    for zone in DST_ZONES:
        for (utc, before, after) in transitions(zone):
            local_before = utc + before  # wall clock just before the change
            jump = after - before
            if jump > timedelta(0):  # a gap: [local_before, local_before + jump) does not exist
                inside = local_before + jump / 2
            else:  # a fold: [local_before + jump, local_before) happens twice
                inside = local_before + jump / 2
            inside = inside.replace(microsecond=0)
            for text in (inside.strftime("%Y-%m-%d %H:%M:%S"), inside.strftime("%Y-%m-%d %H:%M"),
                         (local_before - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S"),
                         local_before.strftime("%Y-%m-%d %H:%M:%S")):
                cases.append({"fields": {"minute": r.choice(["*/7", "0", "*", "15,45"])}, "start_date": text,
                              "timezone": zone, "now": (utc - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")})
            cases.append({"fields": {"minute": "*/10"}, "end_date": inside.strftime("%Y-%m-%d %H:%M:%S"),
                          "timezone": zone, "now": (utc - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")})
            # Pinned wall times inside the change, and every minute / hour across it.
            cases.append({"fields": {"hour": inside.hour, "minute": inside.minute}, "timezone": zone,
                          "now": (utc - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")})
            cases.append({"fields": {"day": inside.day, "hour": inside.hour}, "timezone": zone,
                          "now": (utc - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")})
            cases.append({"fields": {"month": inside.month, "day": inside.day}, "timezone": zone,
                          "now": (utc - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%SZ")})
            cases.append({"fields": {"minute": "*/15"}, "timezone": zone,
                          "now": (utc - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")})
            cases.append({"fields": {"hour": "*"}, "timezone": zone,
                          "now": (utc - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")})
            cases.append({"fields": {"minute": "30", "hour": "*/2"}, "timezone": zone,
                          "now": (utc - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")})
    return cases


def rnd_case(r):
    case = {"fields": rnd_fields(r)}
    zone = r.choice(ZONES) if r.random() < 0.6 else None
    if zone:
        case["timezone"] = zone if r.random() < 0.9 else zone.lower()
    if r.random() < 0.3:
        case["start_date"] = rnd_date_text(r)
    if r.random() < 0.15:
        case["end_date"] = rnd_date_text(r)
    case["now"] = rnd_date(r).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return case


def invalid_case(r):
    case = {"fields": rnd_fields(r), "now": "2026-06-01T00:00:00Z"}
    k = r.random()
    if k < 0.6:
        name, value = r.choice(INVALID_FIELDS)
        case["fields"][name] = value
    elif k < 0.8:
        case[r.choice(["start_date", "end_date"])] = r.choice(INVALID_DATES)
    else:
        case["timezone"] = r.choice(INVALID_ZONES)
    return case


def run(case):
    fields = dict(case["fields"])
    zone = case.get("timezone", "UTC")
    kwargs = dict(fields)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for key in ("start_date", "end_date"):
                if key in case:
                    kwargs[key] = dateutil.parser.parse(case[key])
        trigger = CronTrigger(timezone=zone, **kwargs)
    except Exception as e:  # noqa: BLE001 - the refusal is the result
        return {"error": "%s: %s" % (type(e).__name__, e)}
    now = datetime.fromisoformat(case["now"].replace("Z", "+00:00"))
    dates = {}
    for key in ("start_date", "end_date"):
        d = getattr(trigger, key)
        if d is not None:
            dates["parsed_" + key[:-5]] = d.astimezone(pytz.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fires, prev = [], None
    for _ in range(FIRES):
        try:
            nxt = trigger.get_next_fire_time(prev, now if prev is None else prev)
        except OverflowError:  # a schedule that never fires walks past year 9999 and crashes
            return {"loops": True}
        if nxt is None:
            break
        if prev is not None and nxt <= prev:
            return {"loops": True}
        if nxt.year > LAST_YEAR:
            return dict(dates, fires=fires, truncated=True)
        fires.append(nxt.astimezone(pytz.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        prev = nxt
    return dict(dates, fires=fires)


UNITS = ["weeks", "days", "hours", "minutes", "seconds"]


def rnd_interval(r):
    """Units as operators write them: one or two of them, small, now and then larger."""
    units = {}
    weights = {"weeks": 0.08, "days": 0.2, "hours": 0.45, "minutes": 0.45, "seconds": 0.25}
    highs = {"weeks": 4, "days": 14, "hours": 48, "minutes": 180, "seconds": 7200}
    for name in UNITS:
        if r.random() < weights[name]:
            units[name] = r.randint(0, highs[name]) if r.random() < 0.9 else r.randint(0, highs[name] * 50)
    return units


def rnd_interval_case(r):
    case = {"fields": rnd_interval(r)}
    zone = r.choice(ZONES) if r.random() < 0.6 else None
    if zone:
        case["timezone"] = zone if r.random() < 0.9 else zone.lower()
    start = rnd_date(r)
    case["start_date"] = rnd_date_text(r, start)
    if r.random() < 0.2:
        case["end_date"] = rnd_date_text(r, start + timedelta(seconds=r.randrange(0, 90 * 86400)))
    # Before the start, at it, or some intervals after it.
    offset = r.choice([-r.randrange(1, 86400 * 30), 0, r.randrange(1, 86400 * 400)])
    case["now"] = (start + timedelta(seconds=offset, microseconds=r.choice([0, 0, 1, 500000]))).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")
    return case


def invalid_interval_case(r):
    case = {"fields": rnd_interval(r) or {"hours": 1}, "now": "2026-06-01T00:00:00Z",
            "start_date": "2026-06-01 00:00"}
    if r.random() < 0.6:
        case[r.choice(["start_date", "end_date"])] = r.choice(INVALID_DATES)
    else:
        case["timezone"] = r.choice(INVALID_ZONES)
    return case


def run_interval(case):
    zone = case.get("timezone", "UTC")
    kwargs = dict(case["fields"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for key in ("start_date", "end_date"):
                if key in case:
                    kwargs[key] = dateutil.parser.parse(case[key])
        trigger = IntervalTrigger(timezone=zone, **kwargs)
    except Exception as e:  # noqa: BLE001 - the refusal is the result
        return {"error": "%s: %s" % (type(e).__name__, e)}
    now = datetime.fromisoformat(case["now"].replace("Z", "+00:00"))
    dates = {"parsed_start": trigger.start_date.astimezone(pytz.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    if trigger.end_date is not None:
        dates["parsed_end"] = trigger.end_date.astimezone(pytz.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fires, prev = [], None
    for _ in range(FIRES):
        nxt = trigger.get_next_fire_time(prev, now if prev is None else prev)
        if nxt is None:
            break
        fires.append(nxt.astimezone(pytz.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        prev = nxt
    return dict(dates, fires=fires)


def jitter_case(r, kind):
    """A schedule, its fires without jitter, and a jitter below its shortest gap."""
    while True:
        case = rnd_case(r) if kind == "cron" else rnd_interval_case(r)
        case.pop("end_date", None)
        base = run(case) if kind == "cron" else run_interval(case)
        fires = [datetime.fromisoformat(f.replace("Z", "+00:00")) for f in base.get("fires", [])]
        if len(fires) < 3 or base.get("truncated"):
            continue
        gap = min((b - a).total_seconds() for a, b in zip(fires, fires[1:]))
        if gap < 2:
            continue
        jitter = r.randint(1, int(min(gap - 1, 86400)))
        # APScheduler's own delayed first fire lies within [fire, fire + jitter].
        kwargs = dict(case["fields"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kwargs["start_date"] = dateutil.parser.parse(case["start_date"]) if "start_date" in case else None
        zone = case.get("timezone", "UTC")
        trigger = (CronTrigger if kind == "cron" else IntervalTrigger)(timezone=zone, jitter=jitter, **kwargs)
        now = datetime.fromisoformat(case["now"].replace("Z", "+00:00"))
        delayed = trigger.get_next_fire_time(None, now)
        assert fires[0] <= delayed <= fires[0] + timedelta(seconds=jitter), (case, delayed)
        return dict(case, kind=kind, jitter=jitter, fires=base["fires"])


def main_interval():
    r = random.Random(SEED + 1)
    cases = [rnd_interval_case(r) for _ in range(1500)] + [invalid_interval_case(r) for _ in range(100)]
    out = [dict(case, **run_interval(case)) for case in cases]
    sys.stdout.write(json.dumps(out, indent=0, sort_keys=True) + "\n")


def main_jitter():
    r = random.Random(SEED + 2)
    out = [jitter_case(r, kind) for kind in ["cron"] * 300 + ["interval"] * 300]
    sys.stdout.write(json.dumps(out, indent=0, sort_keys=True) + "\n")


def main():
    if sys.argv[1:] == ["interval"]:
        return main_interval()
    if sys.argv[1:] == ["jitter"]:
        return main_jitter()
    r = random.Random(SEED)
    cases = [rnd_case(r) for _ in range(1700)]
    cases += dst_cases(r)
    cases += [invalid_case(r) for _ in range(250)]
    out = []
    for case in cases:
        result = run(case)
        if result.get("loops"):
            continue
        out.append(dict(case, **result))
    sys.stdout.write(json.dumps(out, indent=0, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
