-- Passkeys (issue #22). A passkey stands for an account that lives on in the store: an admin
-- token (`token_id`; the passkey stops working when the token is revoked) or a member of an
-- org (`org_id`, `user_id`; it signs in with the member's role at that moment, and stops when
-- the membership ends). `actor` is who signs in, as the session records it. The public key is
-- the COSE_Key the authenticator sent at registration; `sign_count` only ever grows.
CREATE TABLE console_passkeys (
    id             TEXT    PRIMARY KEY,
    credential_id  BLOB   NOT NULL UNIQUE,
    user_handle    BLOB   NOT NULL,
    actor          TEXT    NOT NULL,
    token_id       TEXT    REFERENCES admin_tokens(id),
    org_id         TEXT    REFERENCES organizations(id),
    user_id        TEXT    REFERENCES users(id),
    name           TEXT    NOT NULL,
    public_key     BLOB   NOT NULL,
    alg            INTEGER NOT NULL,
    sign_count     INTEGER NOT NULL,
    backed_up      INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER
);
CREATE INDEX console_passkeys_actor ON console_passkeys (actor, id);

-- Passkey ceremonies under way: each challenge is taken (deleted) once. A registration or a
-- confirmation belongs to the session that asked for it; a sign-in to nobody yet.
CREATE TABLE console_challenges (
    challenge   BLOB   PRIMARY KEY,
    purpose     TEXT    NOT NULL,
    session_id  TEXT,
    created_at  INTEGER NOT NULL
);

-- When the session's operator last proved themselves again with a passkey (re-authentication
-- before sensitive actions).
ALTER TABLE console_sessions ADD COLUMN verified_at INTEGER;
