-- A project's versions keep no password, only whether it had one (`rsync_password_set`): a
-- password changed because it leaked must not live on in the history. The versions written before
-- this one held the password itself; it is taken out of them here, the one time a commit is
-- rewritten.
UPDATE config_commits
SET content = json_set(
        json_remove(content, '$.rsync_password'),
        '$.rsync_password_set',
        json(CASE WHEN json_extract(content, '$.rsync_password') IS NULL THEN 'false' ELSE 'true' END)
    )
WHERE kind = 'project' AND content IS NOT NULL AND json_valid(content);
