-- Guardrail policies (issue #6): an org's own (project_id = '') or a project's, as the JSON
-- spec the admin API accepted (validated before it is written). Layered at load time over the
-- deployment default from the config file.
CREATE TABLE guardrail_policies (
    org_id      TEXT    NOT NULL,
    project_id  TEXT    NOT NULL DEFAULT '',
    spec        TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL,
    updated_by  TEXT    NOT NULL,
    PRIMARY KEY (org_id, project_id)
);
