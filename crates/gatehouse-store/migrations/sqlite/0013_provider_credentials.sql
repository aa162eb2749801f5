-- Stored provider credentials (issue #19), envelope-encrypted: each tenant (an org id, or
-- 'platform') has data keys, wrapped under the master key with the tenant and version as
-- associated data; each credential is sealed under its tenant's data key with its id, scope
-- and version as associated data. Values are never returned by the API, only the hint.
CREATE TABLE data_keys (
    tenant      TEXT    NOT NULL,
    version     INTEGER  NOT NULL,
    wrapped     TEXT    NOT NULL,
    created_at  INTEGER  NOT NULL,
    PRIMARY KEY (tenant, version)
);

-- org_id '' is the platform's; project_id '' an org's own. A newer version of the same
-- provider at the same scope sets retire_at on the older ones: the overlap window's end.
CREATE TABLE provider_credentials (
    id           TEXT    PRIMARY KEY,
    org_id       TEXT    NOT NULL DEFAULT '',
    project_id   TEXT    NOT NULL DEFAULT '',
    provider     TEXT    NOT NULL,
    version      INTEGER  NOT NULL,
    key_version  INTEGER  NOT NULL,
    sealed       TEXT    NOT NULL,
    hint         TEXT    NOT NULL,
    created_at   INTEGER  NOT NULL,
    created_by   TEXT    NOT NULL,
    retire_at    INTEGER,
    UNIQUE (org_id, project_id, provider, version)
);
CREATE INDEX provider_credentials_org ON provider_credentials (org_id, provider);
