-- Audit webhooks (issue #4): per-org subscriptions and their delivery log, which doubles as
-- the outbox (rows are written in the audit batch's transaction).
CREATE TABLE webhooks (
    id          TEXT    PRIMARY KEY,
    org_id      TEXT,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    url         TEXT    NOT NULL,
    secret      TEXT,
    events      TEXT    NOT NULL,
    outcomes    TEXT,
    created_at  BIGINT NOT NULL,
    deleted_at  BIGINT
);
CREATE INDEX webhooks_org ON webhooks (org_id);

CREATE TABLE webhook_deliveries (
    id            TEXT    PRIMARY KEY,
    webhook_id    TEXT    NOT NULL,
    org_id        TEXT,
    event_id      TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    attempts      BIGINT NOT NULL,
    next_at       BIGINT NOT NULL,
    claimed_until BIGINT,
    last_status   BIGINT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_at);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, created_at);
