-- Tenancy (issue #3): users, org memberships with a role, project membership, reversible
-- disabling of orgs and projects, key ownership, scoped admin tokens, and the audit store.

ALTER TABLE organizations ADD COLUMN disabled_at BIGINT;
ALTER TABLE projects ADD COLUMN disabled_at BIGINT;
-- JSON array of canonical model names; NULL = every model the gateway serves.
ALTER TABLE projects ADD COLUMN allowed_models TEXT;

-- Every change that can invalidate a cached key (revoke, disable of its org or project)
-- bumps updated_at, so replicas evict from one change feed.
ALTER TABLE api_keys ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN user_id TEXT;
UPDATE api_keys SET updated_at = COALESCE(revoked_at, created_at);
CREATE INDEX api_keys_updated ON api_keys (updated_at);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL DEFAULT 'human',
    created_at  BIGINT NOT NULL,
    disabled_at BIGINT
);

CREATE TABLE memberships (
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE project_members (
    project_id  TEXT NOT NULL REFERENCES projects(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);

-- Admin tokens act for a user with a role, inside one org (NULL org = platform scope).
ALTER TABLE admin_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'platform_admin';
ALTER TABLE admin_tokens ADD COLUMN org_id TEXT REFERENCES organizations(id);
ALTER TABLE admin_tokens ADD COLUMN user_id TEXT REFERENCES users(id);

CREATE TABLE audit_events (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    org_id      TEXT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT,
    outcome     TEXT NOT NULL,
    status      BIGINT NOT NULL,
    request_id  TEXT,
    source      TEXT
);
CREATE INDEX audit_events_org_at ON audit_events (org_id, at);
