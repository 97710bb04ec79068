-- A project declared by a file of the master's `projects_dir`: the file's name. Such a project is
-- changed by editing its file and reloading; API writes to it are refused.
ALTER TABLE projects ADD COLUMN managed_file TEXT;
