-- The usage ledger (issue #7): one row per metered request, written when the request is
-- settled (also for cancelled and failed streams), idempotent by request id. Queried per
-- org/project/credential/model and UTC day; pruned after the retention period.
CREATE TABLE usage_ledger (
    request_id         TEXT    PRIMARY KEY,
    at                 INTEGER  NOT NULL,
    day                TEXT    NOT NULL,
    org_id             TEXT    NOT NULL,
    project_id         TEXT    NOT NULL,
    credential         TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    prompt_tokens      INTEGER  NOT NULL,
    completion_tokens  INTEGER  NOT NULL,
    cached_tokens      INTEGER  NOT NULL,
    cost_micro_usd     INTEGER  NOT NULL
);
CREATE INDEX usage_ledger_org_day ON usage_ledger (org_id, day);
CREATE INDEX usage_ledger_at ON usage_ledger (at);
