-- A project's free-form `guardrail_policy` name was stored and echoed but never enforced;
-- guardrail policies are set per org and project under /guardrails. Dropped so no operator
-- mistakes it for a control.
ALTER TABLE projects DROP COLUMN guardrail_policy;
