-- An org's keys newest first, a page at a time (the console's key list, GET /admin/v1/keys):
-- read in index order from where the last page stopped, instead of sorting all of the org's
-- keys for every page.
CREATE INDEX api_keys_org_id ON api_keys (org_id, id);
