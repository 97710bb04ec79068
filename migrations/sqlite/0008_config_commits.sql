-- Every change to a project's configuration is a commit (Rainer): its key, its own version (1, 2,
-- 3 ... per key), who made it, why, when, and the whole configuration that resulted. A removal is
-- a tombstone (content NULL). Commits are never edited or deleted.
CREATE TABLE config_commits (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    author TEXT,
    comment TEXT,
    created_at TEXT NOT NULL,
    content TEXT,
    UNIQUE (kind, key, version)
);

-- The version of the project's current configuration (its newest commit).
ALTER TABLE projects ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
