-- Migration 0006 made the runs table again without carrying AUTOINCREMENT's high-water mark
-- (0016 did): on a master that had deleted its newest runs before it (runs_keep, a removed
-- project), the next run could take the id of one deleted, which its log file, its events and its
-- alerts still name. The mark is set again from every trace a run id leaves in the database: the
-- runs kept and the event log's run events (`{"project": .., "run": N, ..}`). Never lowered.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'runs', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'runs');
UPDATE sqlite_sequence
SET seq = MAX(
    seq,
    (SELECT COALESCE(MAX(id), 0) FROM runs),
    (SELECT COALESCE(MAX(CAST(json_extract(data, '$.run') AS INTEGER)), 0) FROM event_log WHERE kind = 'run')
)
WHERE name = 'runs';
