-- The MCP gateway (issue #20). Upstream MCP servers registered by the platform (org_id ''), an
-- org (project_id '') or a project, by name; a caller reaches /mcp/{name} and the narrowest
-- scope's server of that name answers. The credential the gateway presents to the server is
-- sealed under the tenant's data key (as provider credentials are), bound to the row.
CREATE TABLE mcp_servers (
    id                  TEXT    PRIMARY KEY,
    org_id              TEXT    NOT NULL DEFAULT '',
    project_id          TEXT    NOT NULL DEFAULT '',
    name                TEXT    NOT NULL,
    url                 TEXT    NOT NULL,
    auth_header         TEXT    NOT NULL DEFAULT '',
    key_version         BIGINT  NOT NULL DEFAULT 0,
    sealed              TEXT    NOT NULL DEFAULT '',
    hint                TEXT    NOT NULL DEFAULT '',
    timeout_ms          BIGINT  NOT NULL,
    max_request_bytes   BIGINT  NOT NULL,
    max_response_bytes  BIGINT  NOT NULL,
    created_at          BIGINT  NOT NULL,
    created_by          TEXT    NOT NULL,
    UNIQUE (org_id, project_id, name)
);

-- Tool policies (issue #20): which tools, resources and prompts an org's or a project's callers
-- may use on MCP servers, as the JSON spec the admin API accepted. Same shape as
-- routing_policies.
CREATE TABLE mcp_policies (
    org_id      TEXT    NOT NULL,
    project_id  TEXT    NOT NULL DEFAULT '',
    spec        TEXT    NOT NULL,
    updated_at  BIGINT  NOT NULL,
    updated_by  TEXT    NOT NULL,
    PRIMARY KEY (org_id, project_id)
);
