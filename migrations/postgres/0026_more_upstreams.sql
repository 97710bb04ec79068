-- Upstreams after the first, in order of preference (JSON: host, module, port, user), their
-- passwords beside them as the first one's is (JSON: a string or null each), and the upstream
-- each run pulled from (`rsync://host[:port]/module/`; NULL for runs before it was kept).
ALTER TABLE projects ADD COLUMN more_upstreams TEXT;
ALTER TABLE projects ADD COLUMN more_upstream_passwords TEXT;
ALTER TABLE runs ADD COLUMN upstream TEXT;
