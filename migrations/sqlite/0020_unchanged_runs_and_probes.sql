-- Whether a successful run changed the tree (rsync's itemized changes): a run that changed nothing
-- makes no new generation. NULL for runs recorded before it was kept, and for runs that failed.
ALTER TABLE runs ADD COLUMN changed INTEGER;

-- A project's probe: a small upstream file fetched alone before each run (`probe`), and its
-- SHA-256 at the newest successful run (`probe_seen`); the same again: the run ends at once.
-- Each run says what the probe found (`runs.probe`).
ALTER TABLE projects ADD COLUMN probe TEXT;
ALTER TABLE projects ADD COLUMN probe_seen TEXT;
ALTER TABLE runs ADD COLUMN probe TEXT;
