//! `/admin/v1/keys`: create (the secret is shown once), list, get, revoke.

use gatehouse_core::{Denial, DenyCode, KeyId, OrgId};
use gatehouse_security::{KeyDigest, KeyHasher, KeyKind, generate_key};
use gatehouse_store::{KeyRow, NewKey, now_ms};
use http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AdminState;
use crate::rbac::{Operator, Permission, allows, check};
use crate::reply::{bad, page_limit, project_named, store_err};
use crate::service::{Call, Pending};

const MAX_NAME: usize = 64;
const MAX_MODELS: usize = 256;
/// Ten years: a longer-lived key is a mistake.
const MAX_EXPIRES_IN_SECS: u64 = 10 * 365 * 24 * 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    org: Option<String>,
    project: Option<String>,
    models: Option<Vec<String>>,
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
    /// When the key last authenticated a request (written behind: up to a few seconds late).
    last_used_at: Option<i64>,
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
            last_used_at: k.last_used_at,
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

/// The org an operator addresses: by name when given, else its own (platform admins
/// default to `default`). Another tenant's org is not found, exactly like a missing one.
pub(crate) async fn target_org(
    s: &AdminState,
    op: &Operator,
    name: Option<&str>,
    p: Permission,
) -> Result<OrgId, Denial> {
    let org = match (name, op.org) {
        (None, Some(own)) => own,
        (name, _) => match s.store.org_by_name(name.unwrap_or("default")).await {
            Ok(Some(o)) => o,
            Ok(None) => return Err(Denial::new(DenyCode::NotFound).with_param("org")),
            Err(e) => return Err(store_err(e)),
        },
    };
    check(op, p, Some(org))?;
    Ok(org)
}

pub fn create(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let req: CreateKey = c.body().await?;
        let (org, id, reply) = create_inner(&c.s, &c.op, req).await?;
        (c.org, c.target) = (Some(org), Some(id.to_string()));
        Ok(reply)
    })
}

async fn create_inner(
    s: &AdminState,
    op: &Operator,
    req: CreateKey,
) -> Result<(OrgId, KeyId, (StatusCode, Value)), Denial> {
    // Who may mint: `key.write_any` in any project of the org; `key.write_own` only in a
    // project the operator's member belongs to, and the key is then theirs.
    let org = target_org(s, op, req.org.as_deref(), Permission::KeyRead).await?;
    let may_own = allows(op.role, Permission::KeyWriteOwn) && op.user.is_some();
    if !allows(op.role, Permission::KeyWriteAny) && !may_own {
        return Err(Denial::new(DenyCode::PermissionDenied));
    }
    if !valid_name(&req.name) {
        return Err(bad("name"));
    }
    if let Some(models) = &req.models {
        // Every entry must be a model the gateway serves now: a typo would otherwise make
        // a key that silently works for nothing.
        if models.is_empty() || models.len() > MAX_MODELS || !s.control.serves_models(models) {
            return Err(bad("models"));
        }
    }
    let expires_at = match req.expires_in_seconds {
        None => None,
        Some(n) if (1..=MAX_EXPIRES_IN_SECS).contains(&n) => Some(now_ms() + i64::try_from(n).unwrap_or(0) * 1000),
        Some(_) => return Err(bad("expires_in_seconds")),
    };
    let project = project_named(&s.store, org, req.project.as_deref().unwrap_or("default")).await?;
    let owner = if allows(op.role, Permission::KeyWriteAny) {
        None
    } else if allows(op.role, Permission::KeyWriteOwn)
        && let Some(user) = op.user
        && s.store.is_project_member(org, project, user).await.map_err(store_err)?
    {
        Some(user)
    } else {
        return Err(Denial::new(DenyCode::PermissionDenied).with_param("project"));
    };
    // A key never reaches past its project's allow-list; asking for more is refused rather than
    // silently narrowed.
    let project_models = s.store.project(org, project).await.map_err(store_err)?.and_then(|p| p.allowed_models);
    if let (Some(allowed), Some(asked)) = (&project_models, &req.models)
        && !asked.iter().all(|m| allowed.contains(m))
    {
        return Err(Denial::new(DenyCode::PermissionDenied).with_param("models"));
    }
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
        user: owner,
    };
    s.store.insert_key(&new).await.map_err(store_err)?;
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
        last_used_at: None,
    };
    let body = serde_json::to_value(Created { view, key: secret.expose_secret().to_owned() }).unwrap_or(Value::Null);
    Ok((org, new.id, (StatusCode::CREATED, body)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    org: Option<String>,
    project: Option<String>,
    /// Keys older than this key id (the last id of the previous page).
    before: Option<String>,
    limit: Option<u32>,
}

pub fn list(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let q: ListQuery = c.query()?;
        let limit = page_limit(q.limit)?;
        let org = c.target_org(q.org.as_deref(), Permission::KeyRead).await?;
        let project = match q.project.as_deref() {
            None => None,
            Some(name) => Some(project_named(&c.s.store, org, name).await?),
        };
        let before = match q.before.as_deref() {
            None => None,
            Some(b) => Some(KeyId::parse(b).ok_or(bad("before"))?),
        };
        let rows = c.s.store.list_keys(org, project, before, limit).await.map_err(store_err)?;
        let data: Vec<KeyView> = rows.into_iter().map(KeyView::from).collect();
        Ok((StatusCode::OK, json!({"object": "list", "data": data})))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgQuery {
    pub(crate) org: Option<String>,
}

/// A key id within the addressed org; an id from elsewhere is 404 like a missing one.
pub(crate) async fn scoped_key(
    s: &AdminState,
    op: &Operator,
    org: Option<&str>,
    id: &str,
    p: Permission,
) -> Result<(OrgId, KeyId), Denial> {
    let org = target_org(s, op, org, p).await?;
    let id = KeyId::parse(id).ok_or(Denial::new(DenyCode::NotFound))?;
    Ok((org, id))
}

async fn key_view(s: &AdminState, org: OrgId, id: KeyId) -> Result<(StatusCode, Value), Denial> {
    let k = s.store.key(org, id).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
    Ok((StatusCode::OK, serde_json::to_value(KeyView::from(k)).unwrap_or(Value::Null)))
}

/// The `{id}` of a key route in the org the query addresses, checked for `p`; the key is the
/// audit row's target.
async fn key_in_org(c: &mut Call, p: Permission) -> Result<(OrgId, KeyId), Denial> {
    c.target_path("id");
    let q: OrgQuery = c.query()?;
    let id = c.path("id").to_owned();
    let (org, kid) = scoped_key(&c.s, &c.op, q.org.as_deref(), &id, p).await?;
    c.org = Some(org);
    Ok((org, kid))
}

pub fn get(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let (org, kid) = key_in_org(c, Permission::KeyRead).await?;
        key_view(&c.s, org, kid).await
    })
}

pub fn revoke(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let (org, kid) = key_in_org(c, Permission::KeyRead).await?;
        let (s, op) = (&c.s, &c.op);
        // `key.write_any` revokes any key of the org; `key.write_own` only the operator's own.
        if !allows(op.role, Permission::KeyWriteAny) {
            let key = s.store.key(org, kid).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
            let own = allows(op.role, Permission::KeyWriteOwn) && op.user.is_some() && key.user == op.user;
            if !own {
                return Err(Denial::new(DenyCode::PermissionDenied));
            }
        }
        match s.store.revoke_key(org, kid).await {
            Ok(Some(digest)) => {
                // This replica forgets the key now; others within their poll interval.
                s.control.evict_key(&KeyDigest(digest));
                key_view(s, org, kid).await
            }
            Ok(None) => Err(Denial::new(DenyCode::NotFound)),
            Err(e) => Err(store_err(e)),
        }
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// How long the old secret keeps working (0 = revoked at once; at most a day).
    grace_seconds: Option<u64>,
}

const MAX_GRACE_SECS: u64 = 24 * 3600;

/// A new secret with the same name, project, models and expiry; the old secret is revoked, or
/// expires after the grace period so clients can switch without downtime.
pub fn rotate(c: &mut Call) -> Pending<'_> {
    Box::pin(async move {
        let (org, kid) = key_in_org(c, Permission::KeyWriteAny).await?;
        let id = c.path("id").to_owned();
        // an empty body is the same as `{}`
        let grace = match c.body::<Rotate>().await {
            Ok(b) => b.grace_seconds.unwrap_or(0),
            Err(d) if d.code == DenyCode::UnsupportedMediaType => 0,
            Err(d) => return Err(d),
        };
        let s = &c.s;
        if grace > MAX_GRACE_SECS {
            return Err(bad("grace_seconds"));
        }
        let old = s.store.key(org, kid).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::NotFound))?;
        if old.revoked_at.is_some() {
            return Err(Denial::new(DenyCode::NotFound));
        }
        let secret = generate_key(KeyKind::Api);
        let new = NewKey {
            id: KeyId::generate(),
            org,
            project: old.project,
            name: old.name.clone(),
            digest: s.hasher.digest(KeyKind::Api, &secret).0,
            hint: KeyHasher::hint(KeyKind::Api, &secret),
            allowed_models: old.allowed_models.clone(),
            created_at: now_ms(),
            expires_at: old.expires_at,
            user: None,
        };
        s.store.insert_key(&new).await.map_err(store_err)?;
        let retired = if grace == 0 {
            s.store.revoke_key(org, kid).await
        } else {
            s.store.expire_key_at(org, kid, now_ms() + i64::try_from(grace).unwrap_or(0) * 1000).await
        }
        .map_err(store_err)?;
        if let Some(digest) = retired {
            s.control.evict_key(&KeyDigest(digest));
        }
        let view =
            KeyView::from(s.store.key(org, new.id).await.map_err(store_err)?.ok_or(Denial::new(DenyCode::Internal))?);
        let body =
            serde_json::to_value(Created { view, key: secret.expose_secret().to_owned() }).unwrap_or(Value::Null);
        Ok((StatusCode::CREATED, json!({"rotated_from": id, "grace_seconds": grace, "key": body})))
    })
}
