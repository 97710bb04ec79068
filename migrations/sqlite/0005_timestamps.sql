-- One timestamp form everywhere: UTC, RFC 3339, three decimals, `Z` (2026-11-24T09:11:15.123Z).
-- Stamps written before were to the second in some columns (2026-11-24T09:11:15Z); they are
-- rewritten so that every stamp of a column sorts as its instant does.

UPDATE users SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', created_at);
UPDATE slaves SET added_at = strftime('%Y-%m-%dT%H:%M:%fZ', added_at);
UPDATE slaves SET last_seen = strftime('%Y-%m-%dT%H:%M:%fZ', last_seen) WHERE last_seen IS NOT NULL;
UPDATE projects SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', created_at),
                    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', updated_at);
UPDATE projects SET last_fire_at = strftime('%Y-%m-%dT%H:%M:%fZ', last_fire_at) WHERE last_fire_at IS NOT NULL;
UPDATE runs SET scheduled_for = strftime('%Y-%m-%dT%H:%M:%fZ', scheduled_for) WHERE scheduled_for IS NOT NULL;
UPDATE runs SET queued_at = strftime('%Y-%m-%dT%H:%M:%fZ', queued_at);
UPDATE runs SET started_at = strftime('%Y-%m-%dT%H:%M:%fZ', started_at) WHERE started_at IS NOT NULL;
UPDATE runs SET ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', ended_at) WHERE ended_at IS NOT NULL;
UPDATE propagation SET notified_at = strftime('%Y-%m-%dT%H:%M:%fZ', notified_at);
UPDATE propagation SET started_at = strftime('%Y-%m-%dT%H:%M:%fZ', started_at) WHERE started_at IS NOT NULL;
UPDATE propagation SET ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', ended_at) WHERE ended_at IS NOT NULL;
