//! `/admin/v1/keys`: create (the secret is shown once), list, get, revoke.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use gatehouse_core::{Denial, DenyCode, HasDenyCode, KeyId, OrgId};
use gatehouse_security::{KeyDigest, KeyHasher, KeyKind, generate_key};
use gatehouse_store::{KeyRow, NewKey, now_ms};
use http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::AdminState;
use crate::auth::Operator;
use crate::body::StrictJson;

const MAX_NAME: usize = 64;
const MAX_MODELS: usize = 256;
/// Ten years: a longer-lived key is a mistake.
const MAX_EXPIRES_IN_SECS: u64 = 10 * 365 * 24 * 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    expires_in_seconds: Option<u64>,
}

/// A key as the API shows it: never the digest, never the secret.
#[derive(Debug, Serialize)]
pub struct KeyView {
    id: String,
    name: String,
    org_id: String,
    project_id: String,
    hint: String,
    models: Option<Vec<String>>,
    created_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl From<KeyRow> for KeyView {
    fn from(k: KeyRow) -> Self {
        KeyView {
            id: k.id.to_string(),
            name: k.name,
            org_id: k.org.to_string(),
            project_id: k.project.to_string(),
            hint: k.hint,
            models: k.allowed_models,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Serialize)]
struct Created {
    #[serde(flatten)]
    view: KeyView,
    /// The secret, shown this once.
    key: String,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
}

fn bad(param: &'static str) -> Denial {
    Denial::new(DenyCode::InvalidRequest).with_param(param)
}

fn store_denial(e: &gatehouse_store::Error) -> Denial {
    tracing::warn!(error = %e, "admin store call failed");
    Denial::new(e.deny_code())
}

async fn org_named(s: &AdminState, name: &str) -> Result<OrgId, Denial> {
    match s.store.org_by_name(name).await {
        Ok(Some(o)) => Ok(o),
        Ok(None) => Err(Denial::new(DenyCode::NotFound).with_param("org")),
        Err(e) => Err(store_denial(&e)),
    }
}

pub async fn create(State(s): State<AdminState>, op: Operator, StrictJson(req): StrictJson<CreateKey>) -> Response {
    match create_inner(&s, &op, req).await {
        Ok(r) => r,
        Err(d) => d.into_response(),
    }
}

async fn create_inner(s: &AdminState, op: &Operator, req: CreateKey) -> Result<Response, Denial> {
    if !valid_name(&req.name) {
        return Err(bad("name"));
    }
    if let Some(models) = &req.models {
        // Every entry must be a model the gateway serves now: a typo would otherwise make
        // a key that silently works for nothing.
        let rt = s.app.runtime.load();
        if models.is_empty()
            || models.len() > MAX_MODELS
            || !models.iter().all(|m| rt.gates.table.resolve(m).is_some_and(|e| &*e.route.model == m))
        {
            return Err(bad("models"));
        }
    }
    let expires_at = match req.expires_in_seconds {
        None => None,
        Some(n) if (1..=MAX_EXPIRES_IN_SECS).contains(&n) => Some(now_ms() + i64::try_from(n).unwrap_or(0) * 1000),
        Some(_) => return Err(bad("expires_in_seconds")),
    };
    let org = org_named(s, req.org.as_deref().unwrap_or("default")).await?;
    let project = match s.store.project_by_name(org, req.project.as_deref().unwrap_or("default")).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(Denial::new(DenyCode::NotFound).with_param("project")),
        Err(e) => return Err(store_denial(&e)),
    };
    let secret = generate_key(KeyKind::Api);
    let new = NewKey {
        id: KeyId::generate(),
        org,
        project,
        name: req.name,
        digest: s.hasher.digest(KeyKind::Api, &secret).0,
        hint: KeyHasher::hint(KeyKind::Api, &secret),
        allowed_models: req.models,
        created_at: now_ms(),
        expires_at,
    };
    s.store.insert_key(&new).await.map_err(|e| store_denial(&e))?;
    tracing::info!(target: "gatehouse::audit", plane = "control", actor = %op.token_id, action = "key.create",
        target = %new.id, org = %org, outcome = "allowed", "api key created");
    let view = KeyView {
        id: new.id.to_string(),
        name: new.name,
        org_id: org.to_string(),
        project_id: project.to_string(),
        hint: new.hint,
        models: new.allowed_models,
        created_at: new.created_at,
        expires_at,
        revoked_at: None,
    };
    Ok((StatusCode::CREATED, Json(Created { view, key: secret.expose_secret().to_owned() })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

pub async fn list(
    State(s): State<AdminState>,
    _op: Operator,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return bad("query").into_response();
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return bad("limit").into_response();
    }
    let org = match org_named(&s, q.org.as_deref().unwrap_or("default")).await {
        Ok(o) => o,
        Err(d) => return d.into_response(),
    };
    let project = match q.project.as_deref() {
        None => None,
        Some(name) => match s.store.project_by_name(org, name).await {
            Ok(Some(p)) => Some(p),
            Ok(None) => return Denial::new(DenyCode::NotFound).with_param("project").into_response(),
            Err(e) => return store_denial(&e).into_response(),
        },
    };
    match s.store.list_keys(org, project, limit).await {
        Ok(rows) => {
            let data: Vec<KeyView> = rows.into_iter().map(KeyView::from).collect();
            Json(serde_json::json!({"object": "list", "data": data})).into_response()
        }
        Err(e) => store_denial(&e).into_response(),
    }
}

/// Keys are addressed by id within the default org for now; an id from elsewhere is 404.
async fn scoped_key(s: &AdminState, id: &str) -> Result<(OrgId, KeyId), Denial> {
    let id = KeyId::parse(id).ok_or(Denial::new(DenyCode::NotFound))?;
    let org = org_named(s, "default").await?;
    Ok((org, id))
}

pub async fn get(State(s): State<AdminState>, _op: Operator, Path(id): Path<String>) -> Response {
    let (org, id) = match scoped_key(&s, &id).await {
        Ok(x) => x,
        Err(d) => return d.into_response(),
    };
    match s.store.key(org, id).await {
        Ok(Some(k)) => Json(KeyView::from(k)).into_response(),
        Ok(None) => Denial::new(DenyCode::NotFound).into_response(),
        Err(e) => store_denial(&e).into_response(),
    }
}

pub async fn revoke(State(s): State<AdminState>, op: Operator, Path(id): Path<String>) -> Response {
    let (org, id) = match scoped_key(&s, &id).await {
        Ok(x) => x,
        Err(d) => return d.into_response(),
    };
    match s.store.revoke_key(org, id).await {
        Ok(Some(digest)) => {
            // This replica forgets the key now; others within their poll interval.
            s.verifier.evict(&KeyDigest(digest));
            tracing::info!(target: "gatehouse::audit", plane = "control", actor = %op.token_id, action = "key.revoke",
                target = %id, org = %org, outcome = "allowed", "api key revoked");
            match s.store.key(org, id).await {
                Ok(Some(k)) => Json(KeyView::from(k)).into_response(),
                _ => StatusCode::NO_CONTENT.into_response(),
            }
        }
        Ok(None) => Denial::new(DenyCode::NotFound).into_response(),
        Err(e) => store_denial(&e).into_response(),
    }
}
