-- Passkeys (issue #22). A passkey stands for an account that lives on in the store: an admin
-- token (`token_id`; the passkey stops working when the token is revoked) or a member of an
-- org (`org_id`, `user_id`; it signs in with the member's role at that moment, and stops when
-- the membership ends). `actor` is who signs in, as the session records it. The public key is
-- the COSE_Key the authenticator sent at registration; `sign_count` only ever grows.
CREATE TABLE console_passkeys (
    id             TEXT    PRIMARY KEY,
    credential_id  BYTEA   NOT NULL UNIQUE,
    user_handle    BYTEA   NOT NULL,
    actor          TEXT    NOT NULL,
    token_id       TEXT    REFERENCES admin_tokens(id),
    org_id         TEXT    REFERENCES organizations(id),
    user_id        TEXT    REFERENCES users(id),
    name           TEXT    NOT NULL,
    public_key     BYTEA   NOT NULL,
    alg            BIGINT  NOT NULL,
    sign_count     BIGINT  NOT NULL,
    backed_up      BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT
);
CREATE INDEX console_passkeys_actor ON console_passkeys (actor, id);

-- Passkey ceremonies under way: each challenge is taken (deleted) once. A registration or a
-- confirmation belongs to the session that asked for it; a sign-in to nobody yet.
CREATE TABLE console_challenges (
    challenge   BYTEA   PRIMARY KEY,
    purpose     TEXT    NOT NULL,
    session_id  TEXT,
    created_at  BIGINT NOT NULL
);

-- When the session's operator last proved themselves again with a passkey (re-authentication
-- before sensitive actions).
ALTER TABLE console_sessions ADD COLUMN verified_at BIGINT;
