-- Pushes from upstreams: `POST /trigger/{project}` with the project's own trigger token (kept as
-- its SHA-256; NULL: none issued), and runs they start, with the trigger `push`. SQLite cannot
-- change the runs table's CHECK in place: it is made again with the same columns and rows (as in
-- 0016).
ALTER TABLE projects ADD COLUMN trigger_token TEXT;

CREATE TABLE runs_new (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id        TEXT NOT NULL REFERENCES projects (id) ON UPDATE CASCADE ON DELETE CASCADE,
    trigger           TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual', 'catch_up', 'dependency', 'push')),
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
    pid               INTEGER,
    files_created     INTEGER,
    files_deleted     INTEGER,
    changed           INTEGER,
    probe             TEXT,
    node              TEXT
);

INSERT INTO runs_new (id, project_id, trigger, status, scheduled_for, queued_at, started_at, ended_at, exit_code,
                      attempts, message, warning, files_total, files_transferred, total_size, bytes_transferred,
                      bytes_received, log_tail, log_file, pid, files_created, files_deleted, changed, probe,
                      node)
SELECT id, project_id, trigger, status, scheduled_for, queued_at, started_at, ended_at, exit_code, attempts, message,
       warning, files_total, files_transferred, total_size, bytes_transferred, bytes_received, log_tail, log_file, pid,
       files_created, files_deleted, changed, probe, node
FROM runs;

-- AUTOINCREMENT's high-water mark goes with the rows: the id of a run deleted earlier is never
-- given again.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'runs_new', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'runs_new');
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'runs'))
WHERE name = 'runs_new';

DROP TABLE runs;
ALTER TABLE runs_new RENAME TO runs;
CREATE INDEX runs_by_project ON runs (project_id, id DESC);
CREATE INDEX runs_unfinished ON runs (status) WHERE status IN ('queued', 'running');
CREATE UNIQUE INDEX runs_one_per_fire ON runs (project_id, scheduled_for) WHERE scheduled_for IS NOT NULL;
