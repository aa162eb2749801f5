//! The OpenAPI 3.1 document of the control plane, built from the route table: every route in
//! [`ROUTES`] appears with its request and response schemas, so the document cannot drift from
//! the router (a test also walks the table against it). Served at `/admin/v1/openapi.json`.

use serde_json::{Value, json};

use crate::routes::{ROUTES, RouteSpec};

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn list_of(name: &str) -> Value {
    json!({"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": r(name)}}})
}

fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}

const NAME: &str = "^[A-Za-z0-9._-]{1,64}$";

fn components() -> Value {
    let s = |t: &str| json!({"type": t});
    json!({
        "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer", "description": "an admin token (gtha_...)"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["message", "type", "param", "code"],
                "properties": {"message": s("string"), "type": s("string"), "param": nullable("string"), "code": s("string")}}}},
            "Org": {"type": "object", "required": ["id", "name", "created_at", "disabled_at"], "properties": {
                "id": s("string"), "name": s("string"), "created_at": s("integer"), "disabled_at": nullable("integer")}},
            "Project": {"type": "object", "required": ["id", "org_id", "name", "models", "default_limits", "cors_origins", "created_at", "disabled_at"], "properties": {
                "id": s("string"), "org_id": s("string"), "name": s("string"),
                "models": {"type": ["array", "null"], "items": s("string")},
                "default_limits": {"type": ["object", "null"]},
                "cors_origins": {"type": ["array", "null"], "items": s("string")},
                "created_at": s("integer"), "disabled_at": nullable("integer")}},
            "Member": {"type": "object", "required": ["user_id", "email", "name", "kind", "role", "created_at"], "properties": {
                "user_id": s("string"), "email": s("string"), "name": s("string"), "kind": s("string"),
                "role": s("string"), "created_at": s("integer")}},
            "Key": {"type": "object", "required": ["id", "name", "org_id", "project_id", "hint", "models", "created_at", "expires_at", "revoked_at", "last_used_at"],
                "properties": {"id": s("string"), "name": s("string"), "org_id": s("string"), "project_id": s("string"),
                "hint": s("string"), "models": {"type": ["array", "null"], "items": s("string")}, "created_at": s("integer"),
                "expires_at": nullable("integer"), "revoked_at": nullable("integer"), "last_used_at": nullable("integer")}},
            "KeyCreated": {"allOf": [r("Key"), {"type": "object", "required": ["key"], "properties": {"key": s("string")}}]},
            "KeyRotated": {"type": "object", "required": ["rotated_from", "grace_seconds", "key"], "properties": {
                "rotated_from": s("string"), "grace_seconds": s("integer"), "key": r("KeyCreated")}},
            "Token": {"type": "object", "required": ["id", "name", "role", "org_id", "user_id", "token"], "properties": {
                "id": s("string"), "name": s("string"), "role": s("string"), "org_id": nullable("string"),
                "user_id": nullable("string"), "token": s("string")}},
            "TokenInfo": {"type": "object", "required": ["id", "name", "role", "org_id", "user_id", "created_at", "revoked_at", "last_used_at"], "properties": {
                "id": s("string"), "name": s("string"), "role": s("string"), "org_id": nullable("string"),
                "user_id": nullable("string"), "created_at": s("integer"), "revoked_at": nullable("integer"),
                "last_used_at": nullable("integer")}},
            "SessionInfo": {"type": "object",
                "required": ["id", "method", "actor", "token_id", "role", "org_id", "user_id", "source", "created_at", "last_seen_at", "expires_at"],
                "properties": {"id": s("string"), "method": s("string"), "actor": s("string"), "token_id": nullable("string"), "role": s("string"),
                "org_id": nullable("string"), "user_id": nullable("string"), "source": nullable("string"),
                "created_at": s("integer"), "last_seen_at": s("integer"), "expires_at": s("integer")}},
            "AuditEvent": {"type": "object",
                "required": ["v", "seq", "chain", "id", "at", "action", "category", "outcome", "status", "code", "actor", "hash"],
                "properties": {"v": s("integer"), "seq": s("integer"), "chain": s("string"), "id": s("string"),
                "at": {"type": "string", "format": "date-time"}, "action": s("string"), "category": s("string"),
                "outcome": {"enum": ["allowed", "denied", "failed"]}, "status": s("integer"), "code": s("string"),
                "org_id": s("string"), "project_id": s("string"), "actor": s("string"), "target": s("string"),
                "request_id": s("string"), "source": s("string"), "endpoint": s("string"), "gate": s("string"),
                "model": s("string"), "stream_end": s("string"), "latency_us": s("integer"),
                "prompt_tokens": s("integer"), "completion_tokens": s("integer"), "hash": s("string"),
                "guardrails": {"type": "array", "items": {"type": "object", "required": ["dir", "action", "detector", "count"],
                    "properties": {"dir": {"enum": ["in", "out"]}, "action": {"enum": ["flag", "redact", "block"]},
                    "detector": s("string"), "count": s("integer")}}},
                "mcp": {"type": "object", "required": ["method", "server", "request_bytes", "response_bytes"], "properties": {
                    "method": s("string"), "server": s("string"), "name": s("string"),
                    "request_bytes": s("integer"), "response_bytes": s("integer")}}}},
            "Webhook": {"type": "object", "required": ["id", "org_id", "name", "kind", "url", "events", "outcomes", "created_at"], "properties": {
                "id": s("string"), "org_id": nullable("string"), "name": s("string"), "kind": {"enum": ["generic", "slack", "discord"]},
                "url": s("string"), "events": {"type": "array", "items": s("string")},
                "outcomes": {"type": ["array", "null"], "items": s("string")}, "created_at": s("integer")}},
            "WebhookCreated": {"allOf": [r("Webhook"), {"type": "object", "properties": {"secret": s("string")}}]},
            "NewCredential": {"type": "object", "additionalProperties": false, "required": ["provider", "secret"], "properties": {
                "provider": s("string"), "secret": {"type": "string", "minLength": 1, "maxLength": 8192},
                "org": s("string"), "project": s("string"), "platform": s("boolean"),
                "overlap_seconds": {"type": "integer", "minimum": 0, "maximum": 604_800}}},
            "Credential": {"type": "object", "required": ["id", "provider", "org_id", "project_id", "version", "hint", "created_at", "created_by", "retire_at"],
                "properties": {"id": s("string"), "provider": s("string"), "org_id": nullable("string"), "project_id": nullable("string"),
                "version": s("integer"), "hint": s("string"), "created_at": s("integer"), "created_by": s("string"),
                "retire_at": nullable("integer")}},
            "NewMcpServer": {"type": "object", "additionalProperties": false, "required": ["name", "url"], "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}, "url": {"type": "string", "maxLength": 2048},
                "org": s("string"), "project": s("string"), "platform": s("boolean"),
                "credential": {"type": "string", "minLength": 1, "maxLength": 8192}, "credential_header": s("string"),
                "timeout_ms": {"type": "integer", "minimum": 100}, "max_request_bytes": {"type": "integer", "minimum": 1024},
                "max_response_bytes": {"type": "integer", "minimum": 1024}}},
            "McpServer": {"type": "object", "required": ["id", "name", "url", "org_id", "project_id", "credential_header",
                "credential_hint", "timeout_ms", "max_request_bytes", "max_response_bytes", "created_at", "created_by"],
                "properties": {"id": s("string"), "name": s("string"), "url": s("string"), "org_id": nullable("string"),
                "project_id": nullable("string"), "credential_header": nullable("string"), "credential_hint": nullable("string"),
                "timeout_ms": s("integer"), "max_request_bytes": s("integer"), "max_response_bytes": s("integer"),
                "created_at": s("integer"), "created_by": s("string")}},
            "McpServerCreated": {"allOf": [r("McpServer"), {"type": "object", "required": ["identity_key_id", "identity_key"],
                "properties": {"identity_key_id": s("string"), "identity_key": s("string")}}]},
            "McpPolicy": {"type": "object", "additionalProperties": false, "properties": {
                "servers": {"type": "array", "maxItems": 128, "items": s("string")},
                "tools": r("McpPatterns"), "resources": r("McpPatterns"), "prompts": r("McpPatterns"),
                "roles": {"type": "array", "maxItems": 128, "items": {"type": "object", "additionalProperties": false,
                    "required": ["tools", "roles"], "properties": {"tools": s("string"),
                    "roles": {"type": "array", "minItems": 1, "maxItems": 32, "items": s("string")}}}},
                "max_argument_bytes": {"type": "integer", "minimum": 1},
                "timeouts": {"type": "array", "maxItems": 128, "items": {"type": "object", "additionalProperties": false,
                    "required": ["tools", "timeout_ms"], "properties": {"tools": s("string"),
                    "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 3_600_000}}}},
                "rates": {"type": "array", "maxItems": 128, "items": {"type": "object", "additionalProperties": false,
                    "required": ["tools", "rpm"], "properties": {"tools": s("string"),
                    "rpm": {"type": "integer", "minimum": 1, "maximum": 10_000_000},
                    "per": {"enum": ["key", "project", "org"]}}}},
                "prices": {"type": "array", "maxItems": 128, "items": {"type": "object", "additionalProperties": false,
                    "required": ["tools", "micro_usd"], "properties": {"tools": s("string"),
                    "micro_usd": {"type": "integer", "minimum": 0, "maximum": 1_000_000_000}}}}}},
            "McpPatterns": {"type": "object", "additionalProperties": false, "properties": {
                "allow": {"type": "array", "maxItems": 128, "items": s("string")},
                "deny": {"type": "array", "maxItems": 128, "items": s("string")}}},
            "McpPolicyView": {"type": "object",
                "required": ["org_id", "project_id", "policy", "effective", "updated_at", "updated_by"], "properties": {
                "org_id": s("string"), "project_id": nullable("string"),
                "policy": {"anyOf": [r("McpPolicy"), {"type": "null"}]},
                "effective": {"type": "object", "properties": {"org": {"anyOf": [r("McpPolicy"), {"type": "null"}]},
                    "project": {"anyOf": [r("McpPolicy"), {"type": "null"}]}}},
                "updated_at": nullable("integer"), "updated_by": nullable("string")}},
            "WebhookDeleted": {"type": "object", "required": ["id", "deleted"], "properties": {"id": s("string"), "deleted": s("boolean")}},
            "Delivery": {"type": "object", "required": ["id", "webhook_id", "event_id", "action", "status", "attempts", "next_at", "last_status", "last_error", "created_at", "updated_at"],
                "properties": {"id": s("string"), "webhook_id": s("string"), "event_id": s("string"), "action": s("string"),
                "status": {"enum": ["pending", "delivered", "failed", "blocked"]}, "attempts": s("integer"), "next_at": s("integer"),
                "last_status": nullable("integer"), "last_error": nullable("string"), "created_at": s("integer"), "updated_at": s("integer")}},
            "CreateWebhook": {"type": "object", "additionalProperties": false, "required": ["name", "kind", "url", "events"], "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9._ -]{1,64}$"}, "kind": {"enum": ["generic", "slack", "discord"]},
                "url": {"type": "string", "maxLength": 2048}, "events": {"type": "array", "minItems": 1, "maxItems": 32, "items": s("string")},
                "outcomes": {"type": "array", "items": {"enum": ["allowed", "denied", "failed"]}}, "org": s("string")}},
            "Deployment": {"type": "object", "required": ["model", "provider", "provider_model", "region", "priority", "weight", "breaker"],
                "properties": {"model": s("string"), "provider": s("string"), "provider_model": s("string"), "region": nullable("string"),
                "priority": s("integer"), "weight": s("integer"),
                "breaker": {"type": "object", "required": ["state", "failures", "open_until"], "properties": {
                    "state": {"enum": ["closed", "open", "half_open"]}, "failures": s("integer"), "open_until": nullable("integer")}}}},
            "AuditKey": {"type": "object", "required": ["key", "name", "origin_prefix", "algorithm"], "properties": {
                "key": s("string"), "name": s("string"), "origin_prefix": s("string"), "algorithm": s("string")}},
            "AuditVerification": {"type": "object", "required": ["object", "ok", "chains"], "properties": {
                "object": {"const": "audit.verification"}, "ok": s("boolean"), "chains": {"type": "array", "items": {
                "type": "object", "required": ["chain", "org_id", "checked_at", "ok", "records", "anchored_at", "last_seq",
                    "signed_through", "unsigned", "broken_at", "problem"],
                "properties": {"chain": s("string"), "org_id": nullable("string"), "checked_at": s("integer"), "ok": s("boolean"),
                    "records": s("integer"), "anchored_at": s("integer"), "last_seq": s("integer"),
                    "signed_through": s("integer"), "unsigned": s("integer"), "broken_at": nullable("integer"),
                    "problem": nullable("string")}}}}},
            "NameBody": {"type": "object", "additionalProperties": false, "required": ["name"],
                "properties": {"name": {"type": "string", "pattern": NAME}}},
            "ProjectBody": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
                "name": {"type": "string", "pattern": NAME}, "models": {"type": "array", "items": s("string")},
                "default_limits": {"type": "object", "additionalProperties": false, "properties": {
                    "rpm": {"type": "integer", "minimum": 1, "maximum": 100_000_000},
                    "tpm": {"type": "integer", "minimum": 1, "maximum": 100_000_000}}},
                "cors_origins": {"type": "array", "minItems": 1, "maxItems": 16, "items": {"type": "string", "maxLength": 256}}}},
            "AddMember": {"type": "object", "additionalProperties": false, "required": ["email", "name", "role"], "properties": {
                "email": {"type": "string", "format": "email"}, "name": {"type": "string", "minLength": 1, "maxLength": 128},
                "role": {"enum": ["viewer", "member", "org_admin"]}, "kind": {"enum": ["human", "service"]}}},
            "UpdateMember": {"type": "object", "additionalProperties": false, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 128},
                "role": {"enum": ["viewer", "member", "org_admin"]}}},
            "CreateToken": {"type": "object", "additionalProperties": false, "required": ["name", "role"], "properties": {
                "name": {"type": "string", "pattern": NAME},
                "role": {"enum": ["viewer", "member", "org_admin", "platform_admin"]},
                "org": s("string"), "user": s("string")}},
            "CreateKey": {"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9._ -]{1,64}$"}, "org": s("string"), "project": s("string"),
                "models": {"type": "array", "items": s("string")},
                "expires_in_seconds": {"type": "integer", "minimum": 1, "maximum": 315_360_000}}},
            "ProjectMemberBody": {"type": "object", "additionalProperties": false, "required": ["user_id"],
                "properties": {"user_id": s("string")}},
            "ProjectMember": {"type": "object", "required": ["project_id", "user_id"],
                "properties": {"project_id": s("string"), "user_id": s("string")}},
            "Rotate": {"type": "object", "additionalProperties": false, "properties": {
                "grace_seconds": {"type": "integer", "minimum": 0, "maximum": 86_400}}},
            "CreateCapability": {"type": "object", "additionalProperties": false,
                "required": ["name", "scopes", "expires_in_seconds"], "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9._ -]+$"},
                "org": s("string"), "project": s("string"),
                "scopes": {"type": "array", "minItems": 1, "maxItems": 64, "items": s("string")},
                "models": {"type": "array", "minItems": 1, "maxItems": 64, "items": s("string")},
                "expires_in_seconds": {"type": "integer", "minimum": 1, "maximum": 7_776_000},
                "budget_usd": {"type": ["string", "number"]},
                "rpm": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                "ips": {"type": "array", "minItems": 1, "maxItems": 64, "items": s("string")}}},
            "CapabilityMinted": {"type": "object",
                "required": ["id", "org_id", "project_id", "caveats", "expires_at", "token"], "properties": {
                "id": s("string"), "org_id": s("string"), "project_id": s("string"),
                "parent_id": {"type": ["string", "null"]},
                "caveats": {"type": "array", "items": s("string")},
                "expires_at": s("integer"), "token": s("string")}},
            "Capability": {"type": "object", "required": ["id", "name", "org_id", "project_id", "caveats"],
                "properties": {"id": s("string"), "name": s("string"), "org_id": s("string"),
                "project_id": s("string"), "parent_id": {"type": ["string", "null"]},
                "key_version": s("integer"), "caveats": {"type": "array", "items": s("string")},
                "minted_by": s("string"), "created_at": s("integer"), "expires_at": s("integer"),
                "revoked_at": {"type": ["integer", "null"]}}},
            "CapabilityRevoked": {"type": "object", "required": ["id", "revoked"],
                "properties": {"id": s("string"), "revoked": s("integer")}},
            "CapabilityKey": {"type": "object", "required": ["version", "created_at", "current"],
                "properties": {"version": s("integer"), "created_at": s("integer"), "current": s("boolean"),
                "superseded_at": {"type": ["integer", "null"]}, "retire_at": {"type": ["integer", "null"]}}},
            "RotateCapabilityKey": {"type": "object", "additionalProperties": false, "properties": {
                "org": s("string"), "retire": {"enum": ["at_expiry", "now"]}}},
            "CapabilityKeyRotated": {"type": "object", "required": ["version"],
                "properties": {"version": s("integer")}},
            "LimitSpec": {"type": "object", "additionalProperties": false, "properties": {
                "rpm": {"type": "integer", "minimum": 1, "maximum": gatehouse_limits::spec::MAX_RPM},
                "budgets": {"type": "array", "maxItems": gatehouse_limits::spec::MAX_BUDGETS, "items": {
                    "type": "object", "additionalProperties": false, "required": ["period"], "properties": {
                    "period": {"enum": ["daily", "monthly", "lifetime"]},
                    "usd": {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000_000},
                    "tokens": {"type": "integer", "minimum": 1},
                    "alert_at": {"type": "array", "maxItems": 4, "items": {"type": "integer", "minimum": 1, "maximum": 99}}}}}}},
            "LimitView": {"type": "object",
                "required": ["org_id", "project_id", "key_id", "limits", "standing", "updated_at", "updated_by"], "properties": {
                "org_id": s("string"), "project_id": nullable("string"), "key_id": nullable("string"),
                "limits": {"anyOf": [r("LimitSpec"), {"type": "null"}]},
                "standing": {"type": "array", "items": {"type": "object",
                    "required": ["period", "unit", "limit", "spent", "reserved"], "properties": {
                    "period": {"enum": ["daily", "monthly", "lifetime"]}, "unit": {"enum": ["usd", "tokens"]},
                    "limit": s("number"), "spent": s("number"), "reserved": s("number")}}},
                "updated_at": nullable("integer"), "updated_by": nullable("string")}},
            "UsageReport": {"type": "object", "required": ["object", "data", "total"], "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": {"type": "object", "required": ["day", "project_id", "credential", "model",
                    "provider", "requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_micro_usd"], "properties": {
                    "day": s("string"), "project_id": s("string"), "credential": s("string"), "model": s("string"),
                    "provider": s("string"), "requests": s("integer"), "prompt_tokens": s("integer"), "completion_tokens": s("integer"),
                    "cached_tokens": s("integer"), "cost_micro_usd": s("integer")}}},
                "total": {"type": "object", "required": ["requests", "prompt_tokens", "completion_tokens", "cost_micro_usd"],
                    "properties": {"requests": s("integer"), "prompt_tokens": s("integer"),
                    "completion_tokens": s("integer"), "cost_micro_usd": s("integer")}}}},
            "GuardrailPolicy": guardrail_policy(),
            "RoutingPolicy": {"type": "object", "additionalProperties": false, "properties": {
                "providers": {"type": "array", "minItems": 1, "maxItems": 64, "items": s("string")},
                "regions": {"type": "array", "minItems": 1, "maxItems": 64, "items": s("string")},
                "pins": {"type": "object", "maxProperties": 64, "additionalProperties": s("string")},
                "own_credentials_only": s("boolean"),
                "cache_ttl_seconds": {"type": "integer", "minimum": 0, "maximum": 604_800},
                "cache_honours_callers": s("boolean")}},
            "RoutingPolicyView": {"type": "object",
                "required": ["org_id", "project_id", "policy", "effective", "updated_at", "updated_by"], "properties": {
                "org_id": s("string"), "project_id": nullable("string"),
                "policy": {"anyOf": [r("RoutingPolicy"), {"type": "null"}]},
                "effective": {"type": "array", "items": {"type": "object", "required": ["model", "provider", "region"],
                    "properties": {"model": s("string"), "provider": s("string"), "region": nullable("string")}}},
                "updated_at": nullable("integer"), "updated_by": nullable("string")}},
            "GuardrailPolicyView": {"type": "object",
                "required": ["org_id", "project_id", "policy", "effective", "updated_at", "updated_by"], "properties": {
                "org_id": s("string"), "project_id": nullable("string"),
                "policy": {"anyOf": [r("GuardrailPolicy"), {"type": "null"}]}, "effective": r("GuardrailPolicy"),
                "updated_at": nullable("integer"), "updated_by": nullable("string")}},
        }
    })
}

/// A guardrail policy as the admin API accepts it (docs/GUARDRAILS.md).
fn guardrail_policy() -> Value {
    let action = json!({"enum": ["off", "flag", "redact", "block"]});
    let rule = json!({"type": "object", "additionalProperties": false,
        "properties": {"input": action, "output": action}});
    let mut keys: Vec<&str> = vec!["*", "pii", "secret", "prompt_injection"];
    keys.extend(gatehouse_guardrails::DETECTORS.iter().map(|d| d.id));
    keys.extend([
        "prompt_injection.instruction_hijacking",
        "prompt_injection.role_confusion",
        "prompt_injection.context_smuggling",
        "prompt_injection.delimiter_injection",
        "prompt_injection.classifier",
    ]);
    json!({"type": "object", "additionalProperties": false, "properties": {
        "detectors": {"type": "object", "propertyNames": {"enum": keys}, "additionalProperties": rule},
        "injection_threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "restore_placeholders": {"type": "boolean"},
        "stream_release": {"type": "string", "enum": ["buffered", "early"]},
        "custom": {"type": "array", "maxItems": gatehouse_guardrails::policy::MAX_CUSTOM_RULES, "items": {
            "type": "object", "required": ["name"], "additionalProperties": false, "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"},
                "regex": {"type": "string", "minLength": 1, "maxLength": gatehouse_guardrails::policy::MAX_PATTERN_BYTES},
                "keywords": {"type": "array", "minItems": 1, "maxItems": gatehouse_guardrails::policy::MAX_KEYWORDS,
                    "items": {"type": "string", "minLength": 1, "maxLength": gatehouse_guardrails::policy::MAX_KEYWORD_BYTES}},
                "input": action, "output": action}}}}})
}

/// Request body schema, success status and success schema of one route.
fn shape(spec: &RouteSpec) -> Option<(Option<&'static str>, u16, Value)> {
    Some(match (spec.method, spec.path) {
        ("POST", "/admin/v1/orgs") => (Some("NameBody"), 201, r("Org")),
        ("GET", "/admin/v1/orgs") => (None, 200, list_of("Org")),
        ("GET", "/admin/v1/orgs/{org}") => (None, 200, r("Org")),
        ("PATCH", "/admin/v1/orgs/{org}") => (Some("NameBody"), 200, r("Org")),
        ("POST", "/admin/v1/orgs/{org}/disable") | ("POST", "/admin/v1/orgs/{org}/enable") => (None, 200, r("Org")),
        ("POST", "/admin/v1/orgs/{org}/members") => (Some("AddMember"), 201, r("Member")),
        ("GET", "/admin/v1/orgs/{org}/members") => (None, 200, list_of("Member")),
        ("GET", "/admin/v1/orgs/{org}/members/{user}") => (None, 200, r("Member")),
        ("PATCH", "/admin/v1/orgs/{org}/members/{user}") => (Some("UpdateMember"), 200, r("Member")),
        ("DELETE", "/admin/v1/orgs/{org}/members/{user}") => (None, 200, r("Member")),
        ("POST", "/admin/v1/orgs/{org}/projects") => (Some("ProjectBody"), 201, r("Project")),
        ("GET", "/admin/v1/orgs/{org}/projects") => (None, 200, list_of("Project")),
        ("GET", "/admin/v1/orgs/{org}/projects/{project}") => (None, 200, r("Project")),
        ("PATCH", "/admin/v1/orgs/{org}/projects/{project}") => (Some("ProjectBody"), 200, r("Project")),
        ("POST", "/admin/v1/orgs/{org}/projects/{project}/disable")
        | ("POST", "/admin/v1/orgs/{org}/projects/{project}/enable") => (None, 200, r("Project")),
        ("POST", "/admin/v1/orgs/{org}/projects/{project}/members") => {
            (Some("ProjectMemberBody"), 201, r("ProjectMember"))
        }
        ("POST", "/admin/v1/tokens") => (Some("CreateToken"), 201, r("Token")),
        ("GET", "/admin/v1/tokens") => (None, 200, list_of("TokenInfo")),
        ("POST", "/admin/v1/tokens/{id}/revoke") => (None, 200, r("TokenInfo")),
        ("GET", "/admin/v1/sessions") => (None, 200, list_of("SessionInfo")),
        ("POST", "/admin/v1/sessions/{id}/revoke") => (
            None,
            200,
            json!({"type": "object", "required": ["id", "revoked"], "properties": {
                "id": {"type": "string"}, "revoked": {"const": true}}}),
        ),
        ("POST", "/admin/v1/keys") => (Some("CreateKey"), 201, r("KeyCreated")),
        ("GET", "/admin/v1/keys") => (None, 200, list_of("Key")),
        ("GET", "/admin/v1/keys/{id}") => (None, 200, r("Key")),
        ("POST", "/admin/v1/keys/{id}/revoke") => (None, 200, r("Key")),
        ("POST", "/admin/v1/keys/{id}/rotate") => (Some("Rotate"), 201, r("KeyRotated")),
        ("POST", "/admin/v1/capabilities") => (Some("CreateCapability"), 201, r("CapabilityMinted")),
        ("GET", "/admin/v1/capabilities") => (None, 200, list_of("Capability")),
        ("POST", "/admin/v1/capabilities/{id}/revoke") => (None, 200, r("CapabilityRevoked")),
        ("GET", "/admin/v1/capability-keys") => (None, 200, list_of("CapabilityKey")),
        ("POST", "/admin/v1/capability-keys/rotate") => (Some("RotateCapabilityKey"), 200, r("CapabilityKeyRotated")),
        ("GET", "/admin/v1/audit") => (None, 200, list_of("AuditEvent")),
        ("GET", "/admin/v1/audit/export") => (None, 200, json!({"type": "string"})),
        ("GET", "/admin/v1/audit/key") => (None, 200, r("AuditKey")),
        ("POST", "/admin/v1/audit/verify") => (None, 200, r("AuditVerification")),
        ("POST", "/admin/v1/webhooks") => (Some("CreateWebhook"), 201, r("WebhookCreated")),
        ("GET", "/admin/v1/webhooks") => (None, 200, list_of("Webhook")),
        ("DELETE", "/admin/v1/webhooks/{id}") => (None, 200, r("WebhookDeleted")),
        ("POST", "/admin/v1/credentials") => (Some("NewCredential"), 201, r("Credential")),
        ("GET", "/admin/v1/credentials") => (None, 200, list_of("Credential")),
        ("DELETE", "/admin/v1/credentials/{id}") => (None, 200, r("WebhookDeleted")),
        ("POST", "/admin/v1/mcp/servers") => (Some("NewMcpServer"), 201, r("McpServerCreated")),
        ("GET", "/admin/v1/mcp/servers") => (None, 200, list_of("McpServer")),
        ("DELETE", "/admin/v1/mcp/servers/{id}") => (None, 200, r("WebhookDeleted")),
        ("GET", "/admin/v1/orgs/{org}/mcp")
        | ("DELETE", "/admin/v1/orgs/{org}/mcp")
        | ("GET", "/admin/v1/orgs/{org}/projects/{project}/mcp")
        | ("DELETE", "/admin/v1/orgs/{org}/projects/{project}/mcp") => (None, 200, r("McpPolicyView")),
        ("PUT", "/admin/v1/orgs/{org}/mcp") | ("PUT", "/admin/v1/orgs/{org}/projects/{project}/mcp") => {
            (Some("McpPolicy"), 200, r("McpPolicyView"))
        }
        ("GET", "/admin/v1/webhooks/{id}/deliveries") => (None, 200, list_of("Delivery")),
        ("GET", "/admin/v1/orgs/{org}/guardrails")
        | ("DELETE", "/admin/v1/orgs/{org}/guardrails")
        | ("GET", "/admin/v1/orgs/{org}/projects/{project}/guardrails")
        | ("DELETE", "/admin/v1/orgs/{org}/projects/{project}/guardrails") => (None, 200, r("GuardrailPolicyView")),
        ("PUT", "/admin/v1/orgs/{org}/guardrails") | ("PUT", "/admin/v1/orgs/{org}/projects/{project}/guardrails") => {
            (Some("GuardrailPolicy"), 200, r("GuardrailPolicyView"))
        }
        ("GET", "/admin/v1/orgs/{org}/routing")
        | ("DELETE", "/admin/v1/orgs/{org}/routing")
        | ("GET", "/admin/v1/orgs/{org}/projects/{project}/routing")
        | ("DELETE", "/admin/v1/orgs/{org}/projects/{project}/routing") => (None, 200, r("RoutingPolicyView")),
        ("PUT", "/admin/v1/orgs/{org}/routing") | ("PUT", "/admin/v1/orgs/{org}/projects/{project}/routing") => {
            (Some("RoutingPolicy"), 200, r("RoutingPolicyView"))
        }
        ("GET", "/admin/v1/orgs/{org}/limits")
        | ("DELETE", "/admin/v1/orgs/{org}/limits")
        | ("GET", "/admin/v1/orgs/{org}/projects/{project}/limits")
        | ("DELETE", "/admin/v1/orgs/{org}/projects/{project}/limits")
        | ("GET", "/admin/v1/keys/{id}/limits")
        | ("DELETE", "/admin/v1/keys/{id}/limits") => (None, 200, r("LimitView")),
        ("PUT", "/admin/v1/orgs/{org}/limits")
        | ("PUT", "/admin/v1/orgs/{org}/projects/{project}/limits")
        | ("PUT", "/admin/v1/keys/{id}/limits") => (Some("LimitSpec"), 200, r("LimitView")),
        ("GET", "/admin/v1/orgs/{org}/usage") => (None, 200, r("UsageReport")),
        ("GET", "/admin/v1/deployments") => (None, 200, list_of("Deployment")),
        _ => return None,
    })
}

fn query_params(spec: &RouteSpec) -> Vec<Value> {
    let q = |name: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "schema": schema});
    let limit = q("limit", json!({"type": "integer", "minimum": 1, "maximum": 1000}));
    match (spec.method, spec.path) {
        ("GET", "/admin/v1/orgs") | ("GET", "/admin/v1/orgs/{org}/projects") => {
            vec![q("after", json!({"type": "string"})), limit]
        }
        ("GET", "/admin/v1/orgs/{org}/members") => vec![limit],
        ("GET", "/admin/v1/sessions") => vec![q("after", json!({"type": "string", "format": "uuid"})), limit],
        ("GET", "/admin/v1/orgs/{org}/usage") => vec![
            q("project", json!({"type": "string"})),
            q("key", json!({"type": "string"})),
            q("token", json!({"type": "string"})),
            q("model", json!({"type": "string", "maxLength": 256})),
            q("provider", json!({"type": "string", "maxLength": 128})),
            q("from", json!({"type": "string", "format": "date"})),
            q("to", json!({"type": "string", "format": "date"})),
        ],
        ("GET", "/admin/v1/audit") => vec![
            limit,
            q("after", json!({"type": "string", "maxLength": 128})),
            q("org", json!({"type": "string"})),
            q("action", json!({"type": "string"})),
            q("actor", json!({"type": "string", "maxLength": 128})),
        ],
        ("GET", "/admin/v1/audit/export") => vec![
            q("format", json!({"enum": ["ndjson", "csv"]})),
            q("from", json!({"type": "string", "format": "date-time"})),
            q("to", json!({"type": "string", "format": "date-time"})),
            q("org", json!({"type": "string"})),
            q("actor", json!({"type": "string", "maxLength": 128})),
            q("action", json!({"type": "string"})),
        ],
        ("GET", "/admin/v1/keys") => {
            vec![q("org", json!({"type": "string"})), q("project", json!({"type": "string"})), limit]
        }
        (_, p) if p.starts_with("/admin/v1/keys/") => vec![q("org", json!({"type": "string"}))],
        ("GET", "/admin/v1/capabilities") => vec![q("org", json!({"type": "string"})), limit],
        ("POST", "/admin/v1/capabilities/{id}/revoke") | ("GET", "/admin/v1/capability-keys") => {
            vec![q("org", json!({"type": "string"}))]
        }
        ("GET", "/admin/v1/credentials")
        | ("DELETE", "/admin/v1/credentials/{id}")
        | ("GET", "/admin/v1/mcp/servers")
        | ("DELETE", "/admin/v1/mcp/servers/{id}") => {
            vec![q("org", json!({"type": "string"})), q("platform", json!({"type": "boolean"}))]
        }
        ("GET", "/admin/v1/webhooks") | ("DELETE", "/admin/v1/webhooks/{id}") => {
            vec![q("org", json!({"type": "string"}))]
        }
        ("GET", "/admin/v1/webhooks/{id}/deliveries") => vec![q("org", json!({"type": "string"})), limit],
        _ => vec![],
    }
}

/// The export streams NDJSON or CSV; everything else answers JSON.
fn success_content(spec: &RouteSpec, schema: Value) -> Value {
    if spec.path == "/admin/v1/audit/export" {
        json!({"application/x-ndjson": {"schema": schema}, "text/csv": {"schema": schema}})
    } else {
        json!({"application/json": {"schema": schema}})
    }
}

fn operation(spec: &RouteSpec) -> Option<Value> {
    let (body, status, success) = shape(spec)?;
    let mut params: Vec<Value> = spec
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    params.extend(query_params(spec));
    let mut op = json!({
        "operationId": spec.action.as_str().replace('.', "_"),
        "summary": spec.action.as_str(),
        "description": format!("Needs `{}`.", spec.permission.as_str()),
        "security": [{"adminToken": []}],
        "parameters": params,
        "responses": {
            status.to_string(): {"description": "success", "content": success_content(spec, success)},
            "default": {"description": "a refusal", "content": {"application/json": {"schema": r("Error")}}},
        },
    });
    if let Some(b) = body {
        op["requestBody"] = json!({"required": !matches!(b, "Rotate" | "RotateCapabilityKey"), "content": {"application/json": {"schema": r(b)}}});
    }
    Some(op)
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for spec in ROUTES {
        if let Some(op) = operation(spec) {
            let item = paths.entry(spec.path.to_owned()).or_insert_with(|| json!({}));
            item[spec.method.to_ascii_lowercase()] = op;
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Gatehouse control plane", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Admin API. Every route needs an admin token; see docs/ADMIN-API.md for roles."},
        "paths": paths,
        "components": components(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document() {
        let doc = document();
        for spec in ROUTES {
            let op = &doc["paths"][spec.path][spec.method.to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} is missing from the OpenAPI document", spec.method, spec.path);
            assert_eq!(op["summary"], spec.action.as_str());
        }
        let ops: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(ops, ROUTES.len(), "no operation without a route");
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for (i, _) in text.match_indices("#/components/schemas/") {
            let name: String = text[i + 21..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            assert!(doc["components"]["schemas"][&name].is_object(), "dangling $ref {name}");
        }
    }
}
