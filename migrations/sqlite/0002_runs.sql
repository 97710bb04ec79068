-- Scheduled and manual rsync runs, and the per-project settings they need.

ALTER TABLE projects ADD COLUMN rsync_user TEXT;            -- NULL: the project name when a password is set
ALTER TABLE projects ADD COLUMN rsync_port INTEGER;         -- NULL: host::module; set: rsync://host:port/module
ALTER TABLE projects ADD COLUMN timeout_secs INTEGER;       -- NULL: the master's run_timeout_secs
ALTER TABLE projects ADD COLUMN catch_up INTEGER NOT NULL DEFAULT 0;  -- 1: one run at start if a fire was missed
ALTER TABLE projects ADD COLUMN last_fire_at TEXT;          -- the last scheduled fire handled (for catch-up)

CREATE TABLE runs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id        TEXT NOT NULL REFERENCES projects (id) ON UPDATE CASCADE ON DELETE CASCADE,
    trigger           TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual', 'catch_up')),
    status            TEXT NOT NULL CHECK (status IN ('queued', 'running', 'success', 'failed', 'timeout', 'interrupted')),
    scheduled_for     TEXT,                 -- the fire time, for scheduled runs
    queued_at         TEXT NOT NULL,        -- RFC 3339 with milliseconds
    started_at        TEXT,
    ended_at          TEXT,
    exit_code         INTEGER,
    attempts          INTEGER NOT NULL DEFAULT 0,
    message           TEXT,                 -- rsync's meaning of the exit code, and its own error line
    warning           INTEGER NOT NULL DEFAULT 0,  -- success with a warning (exit 24)
    files_total       INTEGER,
    files_transferred INTEGER,
    total_size        INTEGER,
    bytes_transferred INTEGER,
    bytes_received    INTEGER,
    log_tail          TEXT,                 -- the last 64 KiB of output
    log_file          TEXT,                 -- the full output
    pid               INTEGER               -- the rsync process while it runs (to clean up after a crash)
);

CREATE INDEX runs_by_project ON runs (project_id, id DESC);
CREATE INDEX runs_unfinished ON runs (status) WHERE status IN ('queued', 'running');
