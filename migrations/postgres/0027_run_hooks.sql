-- A project's hooks, by the names of the master's `[[hooks]]`: run after a run succeeded or
-- failed (JSON: on_success, on_failure).
ALTER TABLE projects ADD COLUMN hooks TEXT NOT NULL DEFAULT '{}';
