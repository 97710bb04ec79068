-- Freshness files a project may ask for, written into its tree with each new generation: Arch's
-- `lastupdate` and `lastsync` (`freshness`), and a redirector's trace file (`trace_epoch_file`, a
-- path relative to the tree).
ALTER TABLE projects ADD COLUMN freshness INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN trace_epoch_file TEXT;
