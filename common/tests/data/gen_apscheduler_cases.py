"""Generates apscheduler_cases.json: for each case, the next fire times APScheduler 3.10.4 computes.

Run with `pip install apscheduler==3.10.4 pytz` and `python3 gen_apscheduler_cases.py > apscheduler_cases.json`.
The Rust test common/tests/apscheduler_table.rs checks our schedule against this file; CI does not need Python.
"""
import json
from datetime import datetime, timedelta

import pytz
from apscheduler.triggers.cron import CronTrigger

FIRES = 6

CASES = [
    ({"minute": "*"}, "2024-03-05T10:20:30Z"),
    ({"second": "*"}, "2024-03-05T10:20:30.250000Z"),
    ({"minute": "*/5"}, "2024-03-05T10:21:00Z"),
    ({"minute": "7/15"}, "2024-03-05T10:21:00Z"),
    ({"hour": "9-17", "minute": "0,30"}, "2024-03-05T16:45:00Z"),
    ({"hour": "9-17/4"}, "2024-03-05T00:00:00Z"),
    ({"day_of_week": "mon-fri", "hour": 8}, "2024-03-08T09:00:00Z"),
    ({"day_of_week": "sat,sun", "hour": "6", "minute": "15"}, "2024-03-05T00:00:00Z"),
    ({"day_of_week": "0", "hour": "1"}, "2024-03-05T00:00:00Z"),
    ({"day_of_week": "6"}, "2024-03-05T00:00:00Z"),
    ({"day": "last"}, "2024-01-15T00:00:00Z"),
    ({"day": "last fri"}, "2024-01-01T00:00:00Z"),
    ({"day": "2nd mon", "hour": "3"}, "2024-01-01T00:00:00Z"),
    ({"day": "5th fri"}, "2024-01-01T00:00:00Z"),
    ({"day": "1st sun,last sat"}, "2024-01-01T00:00:00Z"),
    ({"day": "31"}, "2024-01-31T12:00:00Z"),
    ({"month": "feb", "day": "29"}, "2024-03-01T00:00:00Z"),
    ({"month": "jan-mar", "day": "1"}, "2024-02-15T00:00:00Z"),
    ({"month": "*/4"}, "2024-02-15T00:00:00Z"),
    ({"week": "1"}, "2024-03-01T00:00:00Z"),
    ({"week": "*/10", "day_of_week": "mon"}, "2024-03-01T00:00:00Z"),
    ({"week": "53"}, "2024-03-01T00:00:00Z"),
    ({"week": "10", "hour": "12"}, "2024-03-01T00:00:00Z"),
    ({"year": "2026", "month": "7"}, "2024-03-01T00:00:00Z"),
    ({"year": "2025-2027", "month": "12", "day": "last"}, "2024-03-01T00:00:00Z"),
    ({"minute": "*", "start_date": "2024-05-07T18:00:00+00:00"}, "2024-03-01T00:00:00Z"),
    ({"minute": "*/20", "start_date": "2024-05-07T18:07:30+00:00"}, "2024-03-01T00:00:00Z"),
    ({"minute": "*", "end_date": "2024-03-01T00:03:00+00:00"}, "2024-03-01T00:00:00Z"),
    ({"hour": "*", "start_date": "2024-03-01T00:00:00+00:00", "end_date": "2024-03-01T02:30:00+00:00"}, "2024-02-01T00:00:00Z"),
    ({"hour": "9", "timezone": "Europe/Berlin"}, "2024-03-29T00:00:00Z"),
    ({"hour": "2", "minute": "30", "timezone": "Europe/Berlin"}, "2024-03-29T00:00:00Z"),
    ({"hour": "2", "minute": "30", "timezone": "Europe/Berlin"}, "2024-10-25T00:00:00Z"),
    ({"minute": "0", "timezone": "America/New_York"}, "2024-11-03T04:00:00Z"),
    ({"hour": "0", "timezone": "Asia/Kolkata"}, "2024-03-05T00:00:00Z"),
    ({"day": "last", "hour": "23", "minute": "59", "second": "59"}, "2024-02-29T23:59:59Z"),
    ({"second": "*/15", "minute": "59", "hour": "23", "day": "31", "month": "12"}, "2024-12-31T23:58:00Z"),
    ({"day_of_week": "fri", "day": "13"}, "2024-01-01T00:00:00Z"),
]


def parse_utc(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(pytz.utc)


def main():
    out = []
    for fields, now in CASES:
        kwargs = dict(fields)
        kwargs.setdefault("timezone", "UTC")
        trigger = CronTrigger(**kwargs)
        t = parse_utc(now)
        fires = []
        prev = None
        for _ in range(FIRES):
            nxt = trigger.get_next_fire_time(prev, t if prev is None else prev)
            if nxt is None:
                break
            fires.append(nxt.astimezone(pytz.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
            prev = nxt
        out.append({"fields": fields, "now": now, "fires": fires})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
