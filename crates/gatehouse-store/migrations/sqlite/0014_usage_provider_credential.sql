-- Stored provider credentials (issue #19): which one was presented for each request, as
-- `<credential id>:v<version>` (never the value); '' when the provider's configured key was.
ALTER TABLE usage_ledger ADD COLUMN provider_credential TEXT NOT NULL DEFAULT '';
