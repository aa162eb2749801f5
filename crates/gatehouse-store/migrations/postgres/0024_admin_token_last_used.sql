-- When each admin token last authenticated a control-plane call (issue #23's doctor finding,
-- #25's hygiene): milliseconds since the epoch, moved forward at most once a minute per token.
-- NULL: not used since this column was added.
ALTER TABLE admin_tokens ADD COLUMN last_used_at BIGINT;
