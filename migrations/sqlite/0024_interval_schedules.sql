-- A project's other kind of schedule: `interval_options` (APScheduler's IntervalTrigger), as JSON
-- in its stored form; NULL for a project with `cron_options` or none. Jitter is kept inside
-- either schedule's JSON.
ALTER TABLE projects ADD COLUMN interval_options TEXT;
