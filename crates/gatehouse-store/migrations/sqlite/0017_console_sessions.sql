-- Console sessions (issue #22). The cookie carries a random secret; only its digest is stored.
-- A session acts as `actor` (an admin token's id, or `oidc:<issuer>:<subject>`) with the
-- role, org and user it was granted at sign-in and, when it came from an admin token
-- (`token_id`), only while that token is unrevoked. `csrf` is the synchronizer token every
-- state-changing form carries (useless without the cookie).
CREATE TABLE console_sessions (
    id            TEXT    PRIMARY KEY,
    digest        BLOB    NOT NULL UNIQUE,
    csrf          TEXT    NOT NULL,
    method        TEXT    NOT NULL,
    actor         TEXT    NOT NULL,
    token_id      TEXT    REFERENCES admin_tokens(id),
    role          TEXT    NOT NULL,
    org_id        TEXT    REFERENCES organizations(id),
    user_id       TEXT    REFERENCES users(id),
    source        TEXT,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX console_sessions_org ON console_sessions (org_id, id);
CREATE INDEX console_sessions_actor ON console_sessions (actor);
CREATE INDEX console_sessions_token ON console_sessions (token_id);

-- When an admin token was exchanged for a console session (`console.token_sign_in = "once"`
-- lets each token do so once).
ALTER TABLE admin_tokens ADD COLUMN console_signed_in_at INTEGER;

-- OIDC sign-ins under way: the browser holds a random secret in a short-lived cookie, keyed
-- here by its digest, with the state, nonce and PKCE verifier of its one authorization
-- request. Taken (deleted) by the callback, so a replayed callback finds nothing.
CREATE TABLE console_logins (
    digest      BLOB    PRIMARY KEY,
    issuer      TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    nonce       TEXT    NOT NULL,
    verifier    TEXT    NOT NULL,
    next        TEXT    NOT NULL,
    source      TEXT,
    created_at  INTEGER NOT NULL
);
