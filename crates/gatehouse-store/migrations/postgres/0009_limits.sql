-- Limits and budgets per scope (issue #7): an org's own (project_id = '', key_id = ''), a
-- project's (key_id = '') or a key's, as the JSON spec the admin API accepted (validated
-- before it is written). Every replica keeps the table in memory and re-reads it each second.
CREATE TABLE limit_policies (
    org_id      TEXT    NOT NULL,
    project_id  TEXT    NOT NULL DEFAULT '',
    key_id      TEXT    NOT NULL DEFAULT '',
    spec        TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL,
    updated_by  TEXT    NOT NULL,
    PRIMARY KEY (org_id, project_id, key_id)
);

-- The in-process limits store's budget spend, written behind each settlement, so a restart of
-- a single-replica deployment does not hand every budget its money back. (Redis keeps its own.)
-- expires_at: when the budget's period is over (NULL: a lifetime budget).
CREATE TABLE budget_spend (
    budget      TEXT    PRIMARY KEY,
    spent       BIGINT  NOT NULL,
    expires_at  BIGINT
);
