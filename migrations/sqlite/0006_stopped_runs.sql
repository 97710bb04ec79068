-- A run an operator stops (POST /runs/{id}/stop) is recorded as `stopped`, apart from one
-- `interrupted` by a shutdown or a removed project. SQLite cannot change a CHECK constraint in
-- place: the table is made again with the same columns and rows.

CREATE TABLE runs_new (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id        TEXT NOT NULL REFERENCES projects (id) ON UPDATE CASCADE ON DELETE CASCADE,
    trigger           TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual', 'catch_up')),
    status            TEXT NOT NULL
                      CHECK (status IN ('queued', 'running', 'success', 'failed', 'timeout', 'interrupted', 'stopped')),
    scheduled_for     TEXT,
    queued_at         TEXT NOT NULL,
    started_at        TEXT,
    ended_at          TEXT,
    exit_code         INTEGER,
    attempts          INTEGER NOT NULL DEFAULT 0,
    message           TEXT,
    warning           INTEGER NOT NULL DEFAULT 0,
    files_total       INTEGER,
    files_transferred INTEGER,
    total_size        INTEGER,
    bytes_transferred INTEGER,
    bytes_received    INTEGER,
    log_tail          TEXT,
    log_file          TEXT,
    pid               INTEGER
);

INSERT INTO runs_new (id, project_id, trigger, status, scheduled_for, queued_at, started_at, ended_at, exit_code,
                      attempts, message, warning, files_total, files_transferred, total_size, bytes_transferred,
                      bytes_received, log_tail, log_file, pid)
SELECT id, project_id, trigger, status, scheduled_for, queued_at, started_at, ended_at, exit_code, attempts, message,
       warning, files_total, files_transferred, total_size, bytes_transferred, bytes_received, log_tail, log_file, pid
FROM runs;

DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE INDEX runs_by_project ON runs (project_id, id DESC);
CREATE INDEX runs_unfinished ON runs (status) WHERE status IN ('queued', 'running');
