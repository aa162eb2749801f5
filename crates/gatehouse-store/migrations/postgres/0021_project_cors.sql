-- Data-plane CORS per project (issue #22): the exact browser origins (a JSON array of
-- `scheme://host[:port]`) whose pages may call the data plane with this project's
-- credentials. NULL: none, the default.
ALTER TABLE projects ADD COLUMN cors_origins TEXT;
