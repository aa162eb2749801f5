-- When each API key last authenticated a request (issue #22's key pages, #25's hygiene):
-- milliseconds since the epoch, written behind in batches by each replica (never on the
-- request path), only ever moved forward. NULL: not used since this column was added.
-- Deliberately not `updated_at`, which is the revocation change feed every replica polls.
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
