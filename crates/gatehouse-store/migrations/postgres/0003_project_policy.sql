-- Per-project policy references (issue #3): default limits (JSON, enforced by the limits
-- issue #7) and the name of a guardrail policy (applied by the guardrails issue #6).
ALTER TABLE projects ADD COLUMN default_limits TEXT;
ALTER TABLE projects ADD COLUMN guardrail_policy TEXT;
