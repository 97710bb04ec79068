-- Several master nodes on one database (PostgreSQL; on SQLite the one master is the one node):
-- who they are and when each was last alive, which one leads, and which node ran each run.
CREATE TABLE nodes (
    name           TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    api_url        TEXT COLLATE "C" NOT NULL,
    rsyncd         TEXT COLLATE "C" NOT NULL,
    started_at     TEXT COLLATE "C" NOT NULL,
    last_heartbeat TEXT COLLATE "C" NOT NULL
);

-- The leader's lease: one row. A node takes it when it has expired (or is its own), with the
-- next term; the term fences what an old leader might still try to write.
CREATE TABLE leader (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    node       TEXT COLLATE "C" NOT NULL,
    term       BIGINT NOT NULL,
    expires_at TEXT COLLATE "C" NOT NULL
);
INSERT INTO leader (id, node, term, expires_at) VALUES (1, '', 0, '');

-- The node a run belongs to (NULL: from before nodes; the one master's).
ALTER TABLE runs ADD COLUMN node TEXT COLLATE "C";

-- One run per scheduled fire of a project, whichever node fires it: a fire handled twice (two
-- leaders in a handover) is refused by the database. Older duplicates, if any, keep the first.
UPDATE runs SET scheduled_for = NULL WHERE scheduled_for IS NOT NULL
    AND id NOT IN (SELECT MIN(id) FROM runs WHERE scheduled_for IS NOT NULL GROUP BY project_id, scheduled_for);
CREATE UNIQUE INDEX runs_one_per_fire ON runs (project_id, scheduled_for) WHERE scheduled_for IS NOT NULL;

-- The node each event of the log comes from: the others pass it on to their own watchers.
ALTER TABLE event_log ADD COLUMN node TEXT COLLATE "C";

-- The nodes that may run a project (JSON: one name, or a list sharing one mirror root); NULL: any.
ALTER TABLE projects ADD COLUMN node TEXT COLLATE "C";
