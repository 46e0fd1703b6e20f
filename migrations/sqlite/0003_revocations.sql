-- Revoked access tokens, by their jti, kept until the token would have
-- expired anyway.
CREATE TABLE revocations (
    jti        TEXT    NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL, -- unix ms
    revoked_at INTEGER NOT NULL  -- unix ms
) STRICT;
