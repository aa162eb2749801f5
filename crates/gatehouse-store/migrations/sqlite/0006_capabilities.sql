-- Capability tokens (issue #5). Macaroons are not stored (they are bearer tokens the holder
-- keeps); what is stored is what verification needs: each org's root keys (sealed under the
-- master key, versioned for rotation) and one row per registered token (root or delegated
-- child) so that revocation, the delegation tree and expiry are known to every replica.
CREATE TABLE capability_root_keys (
    org_id      TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    sealed      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    -- NULL while current or in grace without an end; after this instant the key verifies nothing.
    retire_at   BIGINT,
    -- Set when a newer version became current.
    superseded_at BIGINT,
    PRIMARY KEY (org_id, version)
);

CREATE TABLE capability_tokens (
    id          TEXT    PRIMARY KEY,
    org_id      TEXT    NOT NULL,
    project_id  TEXT    NOT NULL,
    parent_id   TEXT,
    key_version BIGINT  NOT NULL,
    name        TEXT    NOT NULL,
    -- JSON array of the canonical caveats this token was registered with (parent's included).
    caveats     TEXT    NOT NULL,
    -- Who it was minted for: an operator, a token holder (delegation) or a workload subject.
    minted_by   TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    revoked_at  BIGINT,
    -- Bumped on every change that matters to verifiers (the revocation feed).
    changed_at  BIGINT  NOT NULL
);
CREATE INDEX capability_tokens_org ON capability_tokens (org_id, created_at);
CREATE INDEX capability_tokens_parent ON capability_tokens (parent_id);
CREATE INDEX capability_tokens_changed ON capability_tokens (changed_at);
