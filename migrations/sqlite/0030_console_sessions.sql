-- The web console's logins (issue 30). A row is one browser's session: the SHA-256 of the random
-- value its cookie holds (the cookie itself is never stored), the user, the user's token stamp when
-- it logged in (a password or role change moves the stamp on, and the session ends with the API's
-- tokens), and when it ends (the API's token lifetime from the login). Logging out deletes it.
CREATE TABLE console_sessions (
    id_hash    TEXT PRIMARY KEY NOT NULL,
    username   TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    stamp      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_user ON console_sessions (username);
