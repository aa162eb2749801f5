-- Routing (issue #18): the provider of the deployment that served each request, so usage can
-- be read per provider when a model has several. Rows written before it read as ''.
ALTER TABLE usage_ledger ADD COLUMN provider TEXT NOT NULL DEFAULT '';
