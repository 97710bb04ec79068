-- Issue 16: one flip on every slave. A project's `flip`, and per slave and generation when it was
-- staged and when the slave flipped to it (the slave's clock, as its answer to /publish/ says).
ALTER TABLE projects ADD COLUMN flip INTEGER NOT NULL DEFAULT 0;

CREATE TABLE flips (
    project_id   TEXT    NOT NULL REFERENCES projects (id) ON UPDATE CASCADE ON DELETE CASCADE,
    hostname     TEXT    NOT NULL,
    port         INTEGER NOT NULL,
    generation   INTEGER NOT NULL,
    staged_at    TEXT    NOT NULL,
    flipped_at   TEXT,
    PRIMARY KEY (project_id, hostname, port, generation),
    FOREIGN KEY (hostname, port) REFERENCES slaves (hostname, port) ON DELETE CASCADE
);
