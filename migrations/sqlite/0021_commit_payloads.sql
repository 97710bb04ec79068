-- A project version committed through Rainer's API (`POST /rainer/projects/{key}/{version}`) keeps
-- the bytes it was sent, comments and whitespace included, to serve them back verbatim; versions
-- made by other paths have none (they are rendered as canonical YAML).
ALTER TABLE config_commits ADD COLUMN payload BLOB;
