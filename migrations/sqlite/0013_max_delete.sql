-- Issue 16: a project's own deletion limit (JSON text: "1000", "10%", "off"); NULL: the master's.
ALTER TABLE projects ADD COLUMN max_delete TEXT;
