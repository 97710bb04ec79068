-- Object-store targets (issue 15): a project's targets and watch flag, each push's record, and
-- what the master knows of every object it put (its size, ETag and the content hash it stored in
-- the object's metadata), so that an unchanged tree is re-pushed without a request per object.
ALTER TABLE projects ADD COLUMN targets TEXT NOT NULL DEFAULT '[]';
ALTER TABLE projects ADD COLUMN watch INTEGER NOT NULL DEFAULT 0;

CREATE TABLE target_pushes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id     TEXT    NOT NULL,
    target         TEXT    NOT NULL,
    trigger        TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    started_at     TEXT    NOT NULL,
    finished_at    TEXT,
    files          INTEGER NOT NULL DEFAULT 0,
    uploaded       INTEGER NOT NULL DEFAULT 0,
    deleted        INTEGER NOT NULL DEFAULT 0,
    unchanged      INTEGER NOT NULL DEFAULT 0,
    skipped        INTEGER NOT NULL DEFAULT 0,
    bytes_uploaded INTEGER NOT NULL DEFAULT 0,
    errors         INTEGER NOT NULL DEFAULT 0,
    message        TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX target_pushes_by_target ON target_pushes (project_id, target, id);

-- Keyed by the target's identity (endpoint, bucket, full key), not its name: renaming a target or
-- moving it to another bucket never reuses a stale entry.
CREATE TABLE target_objects (
    store       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    etag        TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    -- size:inode:ctime of the local file when sha256 was computed: a file whose stamp is the
    -- same is not hashed again (any write changes its ctime).
    local_stamp TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (store, key)
) WITHOUT ROWID;
