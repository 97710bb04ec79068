-- What `GET /events` streams: configuration commits and run states, each with an id a watcher
-- resumes from (`Last-Event-ID`). The newest events are kept; older ones are pruned.
CREATE TABLE event_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL
);
