-- What each run created and deleted (rsync's --stats "Number of created files" and "Number of
-- deleted files"), kept with the run; NULL for runs before this version.
ALTER TABLE runs ADD COLUMN files_created INTEGER;
ALTER TABLE runs ADD COLUMN files_deleted INTEGER;
