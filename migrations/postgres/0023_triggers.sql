-- Pushes from upstreams: `POST /trigger/{project}` with the project's own trigger token, kept as
-- its SHA-256 (NULL: none issued), and runs they start, with the trigger `push`.
ALTER TABLE projects ADD COLUMN trigger_token TEXT;

ALTER TABLE runs DROP CONSTRAINT runs_trigger_check;
ALTER TABLE runs ADD CONSTRAINT runs_trigger_check
    CHECK (trigger IN ('schedule', 'manual', 'catch_up', 'dependency', 'push'));
