-- Propagation to slaves: a generation per project (bumped by each successful master run), and
-- per (project, slave, generation) what the slave did with it.

ALTER TABLE projects ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE slaves ADD COLUMN last_seen TEXT;

CREATE TABLE propagation (
    project_id        TEXT NOT NULL REFERENCES projects (id) ON UPDATE CASCADE ON DELETE CASCADE,
    hostname          TEXT NOT NULL,
    port              INTEGER NOT NULL,
    generation        INTEGER NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('notified', 'running', 'success', 'failed')),
    notified_at       TEXT NOT NULL,
    notifications     INTEGER NOT NULL DEFAULT 1,
    started_at        TEXT,
    ended_at          TEXT,
    exit_code         INTEGER,
    message           TEXT,
    files_transferred INTEGER,
    bytes_transferred INTEGER,
    total_size        INTEGER,
    PRIMARY KEY (project_id, hostname, port, generation),
    FOREIGN KEY (hostname, port) REFERENCES slaves (hostname, port) ON DELETE CASCADE
);
