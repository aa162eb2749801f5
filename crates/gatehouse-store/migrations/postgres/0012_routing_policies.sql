-- Routing policies (issue #18): which providers, regions and pinned deployments an org's or a
-- project's traffic may use (data residency), as the JSON spec the admin API accepted
-- (validated before it is written). Same shape as guardrail_policies.
CREATE TABLE routing_policies (
    org_id      TEXT    NOT NULL,
    project_id  TEXT    NOT NULL DEFAULT '',
    spec        TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL,
    updated_by  TEXT    NOT NULL,
    PRIMARY KEY (org_id, project_id)
);
