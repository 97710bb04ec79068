-- The master's data: API users, slaves, projects, and settings generated once (the JWT key).
-- Times are RFC 3339 text in UTC.

CREATE TABLE users (
    username      TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,             -- argon2id PHC string
    role          TEXT NOT NULL CHECK (role IN ('root', 'user')),
    created_at    TEXT NOT NULL
);

CREATE TABLE slaves (
    hostname TEXT NOT NULL,
    port     INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    added_at TEXT NOT NULL,
    PRIMARY KEY (hostname, port)
);

CREATE TABLE projects (
    id             TEXT PRIMARY KEY NOT NULL,
    project        TEXT NOT NULL,
    id_derived     INTEGER NOT NULL,         -- 1: id was taken from `project`, and follows it on rename
    rsync_host     TEXT NOT NULL,
    rsync_module   TEXT NOT NULL,
    dest           TEXT NOT NULL UNIQUE,     -- absolute, normalised, under the mirror root
    rsync_password TEXT,
    schedule       TEXT,                     -- JSON ScheduleSpec; NULL: manual runs only
    rsync_options  TEXT NOT NULL,            -- JSON RsyncOptions
    enabled        INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
