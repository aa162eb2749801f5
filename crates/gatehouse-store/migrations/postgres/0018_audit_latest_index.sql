-- The audit listing, newest first, a page at a time (the console's audit page, GET
-- /admin/v1/audit): each page seeks to where the last one stopped in one of these indexes and
-- reads the next segments in order, for every chain or for one, instead of sorting them all.
CREATE INDEX audit_log_latest ON audit_log (last_at, chain, first_seq);
CREATE INDEX audit_log_chain_last_at ON audit_log (chain, last_at, first_seq);
