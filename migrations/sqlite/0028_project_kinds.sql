-- What a project mirrors with (issue 29): its kind (rsync, git, command), and for git and command
-- projects the upstream's URL, the provider and its parameters (JSON; '{}' for rsync).
ALTER TABLE projects ADD COLUMN source TEXT NOT NULL DEFAULT '{}';
-- A git run's count of references it created, moved or deleted.
ALTER TABLE runs ADD COLUMN refs_updated BIGINT;
