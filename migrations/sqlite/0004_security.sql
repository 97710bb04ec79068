-- Each slave holds a credential of its own, and tokens are bound to who their user is now.

-- The slave's own token (issued by /add_slave/ or /rotate_slave_token/). NULL: a slave added before
-- per-slave tokens; it is not notified until a token is issued for it.
ALTER TABLE slaves ADD COLUMN token TEXT;

-- Changes whenever the user is created, removed, or has its password or role changed: a token
-- carries the stamp it was issued under and stops working when the stamp moves on.
ALTER TABLE users ADD COLUMN token_stamp TEXT NOT NULL DEFAULT '';
UPDATE users SET token_stamp = lower(hex(randomblob(16)));
