-- A project's staleness objective, and the alerts sent when a mirror fails, goes stale, or a slave
-- goes down or lags.

-- NULL: the master's `stale_after_secs`.
ALTER TABLE projects ADD COLUMN max_age_secs INTEGER;

-- What each watched subject was last seen as (`run:<project>` ok|failed, `age:<project>`
-- fresh|stale, `slave:<host:port>` up|down, `lag:<host:port>` current|lagging): an event is sent
-- only when it changes.
CREATE TABLE alert_states (
    subject TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    since TEXT NOT NULL
);

-- Every event for every webhook that wants it, delivered in id order per webhook, kept after
-- delivery (the newest are listed by GET /alerts) and pruned by age.
CREATE TABLE alert_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook TEXT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at TEXT,
    gave_up_at TEXT,
    last_error TEXT
);
CREATE INDEX alert_deliveries_pending ON alert_deliveries (webhook, id) WHERE delivered_at IS NULL AND gave_up_at IS NULL;
