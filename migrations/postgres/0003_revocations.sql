-- Revoked access tokens, by their jti, kept until the token would have
-- expired anyway.
CREATE TABLE revocations (
    jti        text        NOT NULL PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);
