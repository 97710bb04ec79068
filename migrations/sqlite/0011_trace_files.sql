-- A project may ask for a trace file in ftpsync's format after each successful run
-- (`project/trace/<mirror_name>` in its tree).
ALTER TABLE projects ADD COLUMN trace INTEGER NOT NULL DEFAULT 0;
